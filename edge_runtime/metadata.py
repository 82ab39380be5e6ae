"""Self-describing .tflite files: a JSON record stored inside the flatbuffer.

TFLite's convention for extra data is the Model table's ``metadata`` list: named entries that
point at a buffer. We add one entry, ``fmnist_edge``, whose buffer is UTF-8 JSON (class names,
input contract, normalization, quantization, provenance). Reading it needs no TensorFlow and no
schema module: the few flatbuffer fields involved are decoded here by hand. Writing uses LiteRT's
generated schema (``ai_edge_litert.schema_py_generated``) and happens only at export time.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

from fmnist_edge.common.errors import ModelError

METADATA_NAME = "fmnist_edge"
FORMAT = "fmnist-edge/1"  # bump when the JSON's meaning changes
_FILE_ID = b"TFL3"

# Field indices in TFLite's schema.fbs
_MODEL_BUFFERS, _MODEL_METADATA = 4, 6
_BUFFER_DATA, _BUFFER_OFFSET, _BUFFER_SIZE = 0, 1, 2
_METADATA_NAME, _METADATA_BUFFER = 0, 1


class _Table:
    """Just enough of the flatbuffer wire format to follow a few fields."""

    def __init__(self, buf: bytes, pos: int):
        self.buf, self.pos = buf, pos
        self.vtable = pos - struct.unpack_from("<i", buf, pos)[0]
        self.vsize = struct.unpack_from("<H", buf, self.vtable)[0]

    def _field(self, index: int) -> int | None:
        slot = 4 + 2 * index
        if slot >= self.vsize:
            return None
        off = struct.unpack_from("<H", self.buf, self.vtable + slot)[0]
        return self.pos + off if off else None

    def scalar(self, index: int, fmt: str, default: int = 0) -> int:
        at = self._field(index)
        return default if at is None else struct.unpack_from(fmt, self.buf, at)[0]

    def _target(self, index: int) -> int | None:
        at = self._field(index)
        return None if at is None else at + struct.unpack_from("<I", self.buf, at)[0]

    def vector(self, index: int) -> tuple[int, int]:
        """(start of elements, length); (0, 0) when absent."""
        at = self._target(index)
        if at is None:
            return 0, 0
        return at + 4, struct.unpack_from("<I", self.buf, at)[0]

    def tables(self, index: int) -> list[_Table]:
        start, n = self.vector(index)
        out = []
        for i in range(n):
            elem = start + 4 * i
            out.append(_Table(self.buf, elem + struct.unpack_from("<I", self.buf, elem)[0]))
        return out

    def bytes_(self, index: int) -> bytes:
        start, n = self.vector(index)
        return bytes(self.buf[start : start + n])


def _model_bytes(model: bytes | str | os.PathLike) -> bytes:
    if _is_bytes(model):
        return bytes(model)
    try:
        return Path(model).read_bytes()
    except OSError as exc:
        raise ModelError(f"{model}: cannot read model ({exc.strerror or exc})") from None


def check_tflite(buf: bytes, name: str = "<model>") -> None:
    """Raise ModelError unless ``buf`` looks like a TFLite flatbuffer."""
    if len(buf) < 8 or buf[4:8] != _FILE_ID:
        raise ModelError(f"{name}: not a TFLite model (no TFL3 identifier)")


def _is_bytes(model: object) -> bool:
    return isinstance(model, bytes | bytearray | memoryview)


def metadata_entries(model: bytes | str | os.PathLike, name: str | None = None) -> dict[str, bytes]:
    """Every named metadata entry of a .tflite, as raw bytes. ``name`` is what errors call the
    model (default: its path, or "<model>" for bytes)."""
    buf = _model_bytes(model)
    name = name or ("<model>" if _is_bytes(model) else str(model))
    check_tflite(buf, name)
    try:
        root = _Table(buf, struct.unpack_from("<I", buf, 0)[0])
        buffers = root.tables(_MODEL_BUFFERS)
        out = {}
        for entry in root.tables(_MODEL_METADATA):
            key = entry.bytes_(_METADATA_NAME).decode("utf-8", "replace")
            buffer = buffers[entry.scalar(_METADATA_BUFFER, "<I")]
            offset = buffer.scalar(_BUFFER_OFFSET, "<Q")
            if offset > 1:  # large models keep buffers after the flatbuffer
                out[key] = bytes(buf[offset : offset + buffer.scalar(_BUFFER_SIZE, "<Q")])
            else:
                out[key] = buffer.bytes_(_BUFFER_DATA)
        return out
    except (struct.error, IndexError) as exc:
        raise ModelError(f"{name}: corrupt TFLite flatbuffer ({exc})") from None


def read_metadata(
    model: bytes | str | os.PathLike, name: str | None = None
) -> dict[str, Any] | None:
    """The fmnist-edge JSON record of a .tflite, or None if the file has none."""
    name = name or ("<model>" if _is_bytes(model) else str(model))
    raw = metadata_entries(model, name).get(METADATA_NAME)
    if raw is None:
        return None
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{name}: unreadable {METADATA_NAME} metadata ({exc})") from None
    if not isinstance(meta, dict):
        raise ModelError(f"{name}: {METADATA_NAME} metadata is not a JSON object")
    return meta


def write_metadata(model: bytes, meta: dict[str, Any]) -> bytes:
    """A copy of the .tflite ``model`` with ``meta`` stored as its fmnist_edge entry (replacing
    any earlier one). Needs ai-edge-litert (for the schema) and flatbuffers: export time only."""
    payload = json.dumps({"format": FORMAT, **meta}, sort_keys=True, default=str).encode()
    return write_entry(model, METADATA_NAME, payload)


def write_entry(model: bytes, name: str, payload: bytes) -> bytes:
    """A copy of the .tflite ``model`` whose metadata entry ``name`` holds ``payload`` (an
    earlier entry of that name is overwritten in place). The flatbuffer is written anew, so
    whatever followed it in ``model`` (the zip of TFLite Support's associated files) is gone.
    Needs ai-edge-litert (for the schema) and flatbuffers: export time only."""
    import flatbuffers
    import numpy as np
    from ai_edge_litert import schema_py_generated as schema

    check_tflite(model)
    obj = schema.ModelT.InitFromPackedBuf(bytearray(model), 0)
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(payload, dtype=np.uint8)
    entries = [m for m in (obj.metadata or []) if _name(m) == name]
    if entries:
        obj.buffers[entries[0].buffer] = buffer
        obj.metadata = [m for m in obj.metadata if _name(m) != name or m is entries[0]]
    else:
        obj.buffers.append(buffer)
        entry = schema.MetadataT()
        entry.name = name
        entry.buffer = len(obj.buffers) - 1
        obj.metadata = [*(obj.metadata or []), entry]
    builder = flatbuffers.Builder(len(model) + len(payload) + 1024)
    builder.Finish(obj.Pack(builder), file_identifier=_FILE_ID)
    return bytes(builder.Output())


def _name(entry: Any) -> str:
    name = entry.name
    return name.decode() if isinstance(name, bytes) else str(name)
