"""Opening a Keras model file, for every stage that reads one: training's --resume, export and
the benchmarks. A file that is not a model is one line naming it, not Keras' own message (which
says "File not found" for a file that exists but is not a zip archive).

Keras is imported on the first call, never at import: edge_runtime shares this package.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

from .errors import ModelError
from .nativelog import native_stderr_captured

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")


def load_keras(path: Path, *, compile: bool = False) -> Any:
    """The Keras model in ``path``, or ModelError saying in one line why not. ``compile=True``
    restores the optimizer and its state too (what --resume continues from)."""
    path = Path(path)
    with native_stderr_captured():
        import keras

        try:
            return keras.models.load_model(path, compile=compile)
        except Exception as exc:  # Keras raises ValueError, OSError, zipfile errors, ...
            error = exc
    if path.suffix not in KERAS_SUFFIXES:
        reason = f"expected a .keras file, not {path.suffix or 'a file without extension'}"
    elif not path.is_file():
        reason = "no such file"
    elif path.suffix == ".keras" and not zipfile.is_zipfile(path):
        reason = "not a zip archive"
    else:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:160]
    raise ModelError(f"{path}: not a Keras model ({reason})")
