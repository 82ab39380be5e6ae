"""One exception tree for the whole toolkit.

Library code raises these; only the command-line layer turns them into one line on stderr and
an exit code (2 for usage errors, 1 for inputs that failed).
"""

from __future__ import annotations


class FmnistError(Exception):
    """Base class. ``exit_code`` is what a command exits with when this reaches it."""

    exit_code = 1


class UsageError(FmnistError):
    """An option or argument makes no sense (``--epochs 0``, unknown ``--arch``, ...)."""

    exit_code = 2


class Interrupted(FmnistError):
    """The user pressed Ctrl-C; the message says what was kept and how to continue."""

    exit_code = 130


class DataError(FmnistError):
    """Fashion-MNIST is missing, truncated, corrupt or fails its checksum."""

    exit_code = 2


class DownloadError(DataError):
    """The dataset could not be fetched from any mirror."""


class ModelError(FmnistError):
    """A model file is missing, unreadable, or not a 28x28x1 classifier."""

    exit_code = 2


class RuntimeUnavailable(FmnistError):
    """No usable TFLite interpreter (ai-edge-litert or tflite-runtime) could be loaded."""

    exit_code = 2


class ImageError(FmnistError):
    """One input image could not be read or decoded."""

    exit_code = 1


class OutputError(FmnistError):
    """A result could not be written to the file the user named (disk full, permissions)."""

    exit_code = 1

class NotAnImageError(ImageError):
    """The bytes are in no image format we recognise (or are empty)."""


class UnsupportedFormatError(ImageError):
    """An image, in a format the caller does not take (an upload in ICO or AVIF, say)."""


class CorruptImageError(ImageError):
    """A recognised format whose data is corrupt or cut short."""


class ImageBombError(ImageError):
    """Crafted to cost far more to decode than its bytes suggest: metadata that inflates past
    its limit, too many progressive-JPEG scans or header segments, Pillow's pixel guard."""


class TooManyPixelsError(ImageError):
    """More pixels to decode than the budget allows: ``what`` the image is ("9000x9000 PNG"),
    the ``pixels`` it counts as, and the ``limit``; ``spent``: the pixels of the images before
    it, where several share one budget (a request to fmnist-serve)."""

    def __init__(self, name: str, what: str, pixels: int, limit: int, spent: int = 0):
        before = f", and the images before it {spent:,}" if spent else ""
        super().__init__(
            f"{name}: {what} is {pixels:,} pixels to decode{before}, over the "
            f"{limit:,}-pixel limit{' of a request' if spent else ''} (--max-pixels)"
        )
        self.name, self.what, self.pixels, self.limit = name, what, pixels, limit


class ImageMemoryError(ImageError):
    """Memory ran out while an image was decoded or converted."""


class QualityError(FmnistError):
    """A result exists but misses a goal the user set (``--max-drop``)."""

    exit_code = 1
