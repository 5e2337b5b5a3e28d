"""tailstudy: a controlled study of why CLIP is robust to pre-training data imbalance."""

__version__ = "0.1.0"
