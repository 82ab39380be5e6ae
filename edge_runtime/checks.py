"""The Classifier's argument checks, shared with fmnist-infer. Free of numpy and Pillow, so the
command runs the library's own checks before it imports them (usage errors stay instant on a
Raspberry Pi) and the two can never disagree."""

from __future__ import annotations

import operator

from fmnist_edge.common.errors import UsageError

MODES = ("auto", "raw", "photo")  # how an image is brought to Fashion-MNIST form (preprocess)
TTA = ("none", "flip")  # test-time augmentation: flip also classifies the mirror image


def check_mode(mode: str, name: str = "mode") -> str:
    """``mode`` if it is one of MODES, else UsageError naming ``name``."""
    if mode not in MODES:
        raise UsageError(f"{name} must be one of {', '.join(MODES)} (got {mode!r})")
    return mode


def check_tta(tta: str | None, name: str = "tta") -> str:
    """``tta`` if it is one of TTA ("none" for None), else UsageError naming ``name``."""
    tta = "none" if tta is None else tta
    if tta not in TTA:
        raise UsageError(f"{name} must be one of {', '.join(TTA)} (got {tta!r})")
    return tta


def check_top_k(top_k: int, name: str = "top_k") -> int:
    """How many classes to report: an integer >= 1 (more than the model has means all of
    them), else UsageError naming ``name`` ("--top-k" for the command)."""
    try:
        k = operator.index(top_k)  # ints and numpy integers; not 2.5, "3" or True
    except TypeError:
        k = None
    if k is None or isinstance(top_k, bool):
        raise UsageError(f"{name} must be an integer >= 1 (got {top_k!r})")
    if k < 1:
        raise UsageError(f"{name} must be >= 1 (got {k})")
    return k
