"""Which runtime fmnist-bench measured fastest for a model on this CPU, kept for
``fmnist-infer --verbose``: a measurement takes a minute, so the command never measures; it
reads the line the last benchmark of the same file (by SHA-256) on the same CPU left here.

The file is ``$FMNIST_EDGE_CACHE/runtime-hints.json`` (default: ``$XDG_CACHE_HOME/fmnist-edge``,
else ``~/.cache/fmnist-edge``), written atomically by fmnist-bench; a missing, unreadable or
foreign file means "nothing measured". Standard library only: cheap to import.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from fmnist_edge.common.fileio import atomic_write_json
from fmnist_edge.common.machine import cpu_model, usable_cores

CACHE_ENV = "FMNIST_EDGE_CACHE"
FILE = "runtime-hints.json"
FORMAT = "fmnist-edge-runtime-hints/1"  # bump when an entry's meaning changes


@dataclass(frozen=True)
class RuntimeHint:
    """One model on one machine: the runtime measured fastest, and the line that says so."""

    model_sha256: str
    machine: str  # machine_key(): the CPU and the cores this process could use
    runtime: str | None  # the faster runtime; None: the default (LiteRT) was the fastest
    ratio: float  # its batched images/s over LiteRT's (median of interleaved rounds)
    agreement: float  # its top-1 agreement with LiteRT on the test images
    line: str  # what fmnist-bench printed
    measured: str  # when, ISO 8601

    @property
    def key(self) -> str:
        return f"{self.model_sha256}|{self.machine}"


def cache_dir() -> Path:
    """Where the hints live (the folder need not exist)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "fmnist-edge"


def machine_key() -> str:
    return f"{cpu_model()}, {usable_cores()} cores"


def model_sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def _entries(path: Path) -> dict[str, dict]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    ok = isinstance(data, dict) and data.get("format") == FORMAT
    return data.get("hints", {}) if ok and isinstance(data.get("hints"), dict) else {}


def save_hint(hint: RuntimeHint) -> Path:
    """Record ``hint``, replacing the entry of the same model and machine; returns the file."""
    path = cache_dir() / FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    entries = _entries(path)
    entries[hint.key] = asdict(hint)
    atomic_write_json(path, {"format": FORMAT, "hints": entries})
    return path


def find_hint(content: bytes) -> RuntimeHint | None:
    """The hint measured for the model ``content`` on this machine, if any."""
    key = f"{model_sha256(content)}|{machine_key()}"
    entry = _entries(cache_dir() / FILE).get(key)
    try:
        return RuntimeHint(**entry) if entry else None
    except TypeError:  # an entry of another shape
        return None
