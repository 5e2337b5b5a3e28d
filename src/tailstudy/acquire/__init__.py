"""Real data acquisition (METHODS §1): the builders that turn local ImageNet folders, the
ImageNet-Captions JSON, LAION-400M / CC-12M / YFCC-15M metadata and img2dataset downloads into
the project's on-disk dataset format (``tailstudy.data.format``).

Steps, each a ``python -m tailstudy acquire ...`` command that the workflow runs as one rule:

* ``laionet.py``: LAIONet (§1.2): unique-lemma table, substring labelling per metadata part,
  single-label filter, caption-to-definition similarity, NSFW filter and threshold.
* ``cls.py``: YFCC-15M-Cls / CC-12M-Cls (§3.7): WordNet-lemma regex matching per metadata file.
* ``download.py``: img2dataset over one URL-list shard, with resume and success accounting.
* ``build.py``: the dataset builders (ImageNet-Captions, image folders, downloaded sets).
* ``metadata.py``: reading caption/URL metadata (Parquet or TSV) with clear errors.
"""
