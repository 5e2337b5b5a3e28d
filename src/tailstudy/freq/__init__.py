"""Class frequencies in caption corpora by bag-of-words matching (METHODS §2).

* :mod:`~tailstudy.freq.reference`: the authors' semantics (§2.2–2.5), caption by caption.
* :mod:`~tailstudy.freq.engine`: :class:`Matcher`, the fast batch engine with the same counts.
* :mod:`~tailstudy.freq.conceptsets`: class queries (phrases, negatives) of the concept sets.
* :mod:`~tailstudy.freq.count`: shards and datacards -> per-class counts, in parallel.
* :mod:`~tailstudy.freq.sources`: caption shards, datacards and frequency tables on disk.
* :mod:`~tailstudy.freq.correlate`: Spearman matrix of frequency tables, aligned by name.
* :mod:`~tailstudy.freq.wordnet`: WordNet 3.0 for NLTK, offline.
* :mod:`~tailstudy.freq.cli`: ``tailstudy freq count|merge|correlate|wordnet``.

Everything heavy (NLTK, WordNet, scipy) is imported on first use.
"""

from tailstudy.freq.conceptsets import ClassQuery, ConceptSet, load_concept_set
from tailstudy.freq.count import CountResult, count_captions, count_datacard, make_matcher
from tailstudy.freq.engine import Matcher
from tailstudy.freq.reference import norm, reference_counts
from tailstudy.freq.sources import read_table, sorted_sibling, write_count_tables
from tailstudy.freq.wordnet import ensure_wordnet, load_lemmatizer

__all__ = [
    "ClassQuery",
    "ConceptSet",
    "CountResult",
    "Matcher",
    "count_captions",
    "count_datacard",
    "ensure_wordnet",
    "load_concept_set",
    "load_lemmatizer",
    "make_matcher",
    "norm",
    "read_table",
    "reference_counts",
    "sorted_sibling",
    "write_count_tables",
]
