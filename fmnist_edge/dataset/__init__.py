"""Fashion-MNIST for every command: the IDX files found, verified and split (files), and fetched
when missing (download). numpy and the standard library only: a Pi can read the test set too.
"""

from .files import SHA256, SPLITS, Split, load_split, locate, train_val_split

__all__ = ["SHA256", "SPLITS", "Split", "load_split", "locate", "train_val_split"]
