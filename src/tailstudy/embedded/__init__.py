"""The embedded synthetic world: ImageNet concepts rendered from visual attributes.

Stands in, offline and at laptop scale, for ImageNet-Captions, web corpora with open-world
concepts, pre-training corpora and ImageNet val, so that the study's mechanisms can operate:
class imbalance, language that describes pixels and is shared across classes, open-world
concepts, intra-class diversity and web-vs-curated shift.
"""

from tailstudy.embedded.world import World, build_dataset, class_counts

__all__ = ["World", "build_dataset", "class_counts"]
