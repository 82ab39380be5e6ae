"""The Open Inference Protocol (KServe V2 REST, Triton's HTTP API): requests in, answers out.

    inputs   pixels        UINT8 [N, H, W, C]  raw pixels in the model's size and colour
             image         BYTES [N]           encoded files (PNG, JPEG...), decoded as /v1/classify
    outputs  probabilities FP32  [N, K]
             label         BYTES [N]
             index         INT32 [N]

A request names one input. Tensors travel as JSON (``data``, flat or nested, row-major; BYTES
as base64 strings, since an image file is not UTF-8 text) or with the binary tensor data
extension: the JSON header is the first ``Inference-Header-Content-Length`` bytes of the body,
each binary input's ``binary_data_size`` bytes follow in order (BYTES: each element a 4-byte
little-endian length, then its bytes), and outputs asked for with ``binary_data`` (or all, with
``binary_data_output``) come back the same way. tritonclient sends binary by default.

Nothing here touches the network or a Classifier: ``parse_request`` checks a body against the
model's ``Contract`` (Problem 4xx, one line, on anything wrong) and ``encode_response`` turns
probabilities into the answer's bytes.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from .uploads import Problem

PLATFORM = "tflite"
VERSION = "1"  # a served file has one version
PIXELS, IMAGE = "pixels", "image"  # the inputs
OUTPUTS = ("probabilities", "label", "index")
HEADER_LENGTH = "inference-header-content-length"
EXTENSIONS = ("binary_tensor_data",)
# Every datatype of the protocol, so that a tensor of any of them is refused for what it is
DATATYPES = (
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "BF16", "FP32", "FP64", "BYTES",
)  # fmt: skip
_LENGTH = struct.Struct("<I")  # a BYTES element's length prefix
_MAX_ID = 256  # characters of a request id echoed back


@dataclass(frozen=True)
class Contract:
    """What the served model takes and gives, as the protocol describes it."""

    name: str  # the model file's stem: the {name} of /v2/models/{name}
    height: int
    width: int
    channels: int  # of the pixels input: 1 gray, 3 RGB
    class_names: tuple[str, ...]
    modes: tuple[str, ...]  # preprocessing modes for the image input

    def metadata(self, sha256: str) -> dict[str, Any]:
        """GET /v2/models/{name}: the protocol's model metadata (-1: any N)."""
        k = len(self.class_names)
        return {
            "name": self.name,
            "versions": [VERSION],
            "platform": PLATFORM,
            "inputs": [
                tensor_meta(PIXELS, "UINT8", [-1, self.height, self.width, self.channels]),
                tensor_meta(IMAGE, "BYTES", [-1]),
            ],
            "outputs": [
                tensor_meta("probabilities", "FP32", [-1, k]),
                tensor_meta("label", "BYTES", [-1]),
                tensor_meta("index", "INT32", [-1]),
            ],
            "parameters": {
                "class_names": list(self.class_names),
                "modes": list(self.modes),
                "sha256": sha256,
            },
        }


def tensor_meta(name: str, datatype: str, shape: list[int]) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": shape}


@dataclass(frozen=True)
class InferRequest:
    """A checked request: exactly one of ``pixels`` and ``files`` is set."""

    id: str | None
    pixels: np.ndarray | None  # (N, H, W, C) uint8
    files: list[tuple[str, bytes]] | None  # (name for messages, encoded bytes)
    mode: str  # for files
    outputs: tuple[tuple[str, bool], ...]  # (output, as binary data), in the order asked

    @property
    def count(self) -> int:
        return len(self.pixels) if self.pixels is not None else len(self.files or ())


def _bad(message: str, kind: str = "bad_request", status: int = 400) -> Problem:
    return Problem(status, kind, message)


def _header(body: bytes, header_length: str | None) -> tuple[dict, bytes]:
    """The JSON header (a dict) and the binary data after it."""
    if header_length is None:
        json_part, rest = body, b""
    else:
        text = header_length.strip()
        if not text.isdigit() or int(text) > len(body):
            raise _bad(
                f"Inference-Header-Content-Length {header_length[:20]!r} is not a length within "
                f"the {len(body):,}-byte body"
            )
        json_part, rest = body[: int(text)], body[int(text) :]
    try:
        header = json.loads(json_part)
    except (ValueError, RecursionError):
        raise _bad("the inference request is not valid JSON") from None
    if not isinstance(header, dict):
        raise _bad("the inference request must be a JSON object")
    return header, rest


def _params(obj: dict, where: str) -> dict:
    params = obj.get("parameters", {})
    if not isinstance(params, dict):
        raise _bad(f"{where}: parameters must be an object")
    return params


def _shape(tensor: dict, name: str) -> tuple[int, ...]:
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**31 for d in shape
    ):
        raise _bad(f"input {name!r}: shape must be a list of non-negative integers")
    return tuple(shape)


def _check_shape(name: str, shape: tuple[int, ...], want: tuple[int, ...], max_n: int) -> int:
    """N of ``shape``, which must be [N, *want] with 1 <= N <= max_n."""
    text = ", ".join(["N", *map(str, want)])
    if len(shape) != len(want) + 1 or shape[1:] != want:
        raise _bad(f"input {name!r}: shape {list(shape)} is not [{text}]")
    if shape[0] < 1:
        raise _bad(f"input {name!r}: shape {list(shape)} holds no image (N must be >= 1)")
    if shape[0] > max_n:
        raise _bad(
            f"input {name!r}: {shape[0]} images in one request; the limit is {max_n}",
            "too_many_images",
            413,
        )
    return shape[0]


def _binary_slices(inputs: list[dict], rest: bytes) -> list[bytes | None]:
    """Each input's binary data (None: it has JSON ``data``), cut from ``rest`` in order."""
    out: list[bytes | None] = []
    offset = 0
    for tensor in inputs:
        size = _params(tensor, f"input {tensor.get('name')!r}").get("binary_data_size")
        if size is None:
            out.append(None)
            continue
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise _bad(f"input {tensor.get('name')!r}: binary_data_size must be an integer >= 0")
        if offset + size > len(rest):
            raise _bad(
                f"input {tensor.get('name')!r}: binary_data_size {size:,} runs past the body's "
                f"{len(rest) - offset:,} bytes of binary data"
            )
        out.append(rest[offset : offset + size])
        offset += size
    if offset != len(rest):
        raise _bad(f"{len(rest) - offset:,} bytes of binary data after the last input's")
    return out


def _pixels(data: Any, raw: bytes | None, shape: tuple[int, ...]) -> np.ndarray:
    """UINT8 data (binary, or JSON numbers 0-255) -> an array of ``shape``."""
    count = math.prod(shape)
    if raw is not None:
        if len(raw) != count:
            raise _bad(
                f"input 'pixels': {len(raw):,} bytes of binary data for shape "
                f"{list(shape)}, which holds {count:,}"
            )
        return np.frombuffer(raw, np.uint8).reshape(shape)
    try:
        values = np.asarray(data)
    except (ValueError, TypeError, OverflowError, RecursionError):
        raise _bad(
            "input 'pixels': data must be a list of numbers, flat or nested evenly"
        ) from None
    if values.size != count:
        raise _bad(
            f"input 'pixels': data holds {values.size:,} values, "
            f"shape {list(shape)} needs {count:,}"
        )
    if values.dtype.kind not in "iu":
        raise _bad(
            "input 'pixels': UINT8 data must be whole numbers 0-255 (not "
            f"{'true/false' if values.dtype.kind == 'b' else 'fractions or text'})"
        )
    if count and (values.min() < 0 or values.max() > 255):
        raise _bad("input 'pixels': UINT8 data must be 0-255")
    return values.astype(np.uint8).reshape(shape)


def _files(data: Any, raw: bytes | None, n: int) -> list[tuple[str, bytes]]:
    """BYTES elements (binary length-prefixed, or JSON base64 strings) -> ``n`` files."""
    files = []
    if raw is not None:
        offset = 0
        while offset < len(raw):
            if offset + 4 > len(raw):
                raise _bad("input 'image': binary data ends inside an element's length")
            (size,) = _LENGTH.unpack_from(raw, offset)
            if offset + 4 + size > len(raw):
                raise _bad(f"input 'image': element {len(files) + 1} runs past its binary data")
            files.append(raw[offset + 4 : offset + 4 + size])
            offset += 4 + size
    else:
        if not isinstance(data, list) or not all(isinstance(s, str) for s in data):
            raise _bad("input 'image': JSON data must be a list of base64 strings")
        for i, text in enumerate(data, 1):
            try:
                files.append(base64.b64decode(text, validate=True))
            except (binascii.Error, ValueError):
                raise _bad(f"input 'image': element {i} is not base64") from None
    if len(files) != n:
        raise _bad(f"input 'image': {len(files)} elements for shape [{n}]")
    return [(f"image {i}", content) for i, content in enumerate(files, 1)]


def _outputs(header: dict, binary_default: bool) -> tuple[tuple[str, bool], ...]:
    asked = header.get("outputs")
    if asked is None:
        return tuple((name, binary_default) for name in OUTPUTS)
    if not isinstance(asked, list) or not asked:
        raise _bad("outputs must be a non-empty list (or left out: all of them)")
    out: dict[str, bool] = {}
    for item in asked:
        name = item.get("name") if isinstance(item, dict) else None
        if name not in OUTPUTS:
            raise _bad(f"output {str(name)[:40]!r} is unknown: ask for {', '.join(OUTPUTS)}")
        params = _params(item, f"output {name!r}")
        if params.get("classification"):
            raise _bad("the classification extension is not supported: ask for label or index")
        binary = params.get("binary_data", binary_default)
        if not isinstance(binary, bool):
            raise _bad(f"output {name!r}: binary_data must be true or false")
        if name in out:
            raise _bad(f"output {name!r} is asked for twice")
        out[name] = binary
    return tuple(out.items())


def parse_request(
    body: bytes, header_length: str | None, contract: Contract, max_images: int
) -> InferRequest:
    """A POST .../infer body -> an InferRequest, or Problem (400, 413) naming what is wrong."""
    header, rest = _header(body, header_length)
    params = _params(header, "the request")
    mode = params.get("mode", "auto")
    if mode not in contract.modes:
        raise _bad(
            f"parameter mode {str(mode)[:40]!r}: this model takes {', '.join(contract.modes)}",
            "bad_mode",
        )
    binary_default = params.get("binary_data_output", False)
    if not isinstance(binary_default, bool):
        raise _bad("parameter binary_data_output must be true or false")
    request_id = header.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise _bad("id must be a string")
    inputs = header.get("inputs")
    if not isinstance(inputs, list) or not inputs or not all(isinstance(t, dict) for t in inputs):
        raise _bad(f"inputs must be a list of one tensor object: {PIXELS!r} or {IMAGE!r}")
    raws = _binary_slices(inputs, rest)
    if len(inputs) != 1:
        raise _bad(f"{len(inputs)} inputs: send one, {PIXELS!r} or {IMAGE!r}")
    (tensor,), (raw,) = inputs, raws
    name, datatype = tensor.get("name"), tensor.get("datatype")
    want = {PIXELS: "UINT8", IMAGE: "BYTES"}.get(name) if isinstance(name, str) else None
    if want is None:
        raise _bad(f"input {str(name)[:40]!r} is unknown: send {PIXELS!r} or {IMAGE!r}")
    if datatype != want:
        what = f"{datatype}" if datatype in DATATYPES else f"{str(datatype)[:20]!r}"
        raise _bad(f"input {name!r} takes {want} data, got {what}")
    if raw is None and "data" not in tensor:
        raise _bad(f"input {name!r} has neither data nor parameters.binary_data_size")
    shape = _shape(tensor, name)
    pixels = files = None
    if name == PIXELS:
        n = _check_shape(
            name, shape, (contract.height, contract.width, contract.channels), max_images
        )
        pixels = _pixels(tensor.get("data"), raw, shape)
    else:
        n = _check_shape(name, shape, (), max_images)
        files = _files(tensor.get("data"), raw, n)
    outputs = _outputs(header, binary_default)
    return InferRequest(request_id and request_id[:_MAX_ID], pixels, files, mode, outputs)


def _bytes_tensor(values: list[str]) -> bytes:
    return b"".join(_LENGTH.pack(len(v)) + v for v in (s.encode() for s in values))


def encode_response(
    request: InferRequest, contract: Contract, probs: np.ndarray
) -> tuple[bytes, int | None]:
    """(N, K) probabilities -> the answer's body and, when it carries binary data, the length
    of its JSON header (for Inference-Header-Content-Length)."""
    index = probs.argmax(axis=1).astype("<i4")
    labels = [contract.class_names[i] for i in index]
    n, k = probs.shape
    tensors = {
        "probabilities": (
            "FP32",
            [n, k],
            lambda: probs.astype("<f4").tobytes(),
            lambda: probs.ravel().tolist(),
        ),
        "label": ("BYTES", [n], lambda: _bytes_tensor(labels), lambda: labels),
        "index": ("INT32", [n], index.tobytes, index.tolist),
    }
    outputs, blobs = [], []
    for name, binary in request.outputs:
        datatype, shape, as_bytes, as_list = tensors[name]
        out = tensor_meta(name, datatype, shape)
        if binary:
            blobs.append(as_bytes())
            out["parameters"] = {"binary_data_size": len(blobs[-1])}
        else:
            out["data"] = as_list()
        outputs.append(out)
    answer: dict[str, Any] = {"model_name": contract.name, "model_version": VERSION}
    if request.id is not None:
        answer["id"] = request.id
    answer["outputs"] = outputs
    head = json.dumps(answer, separators=(",", ":")).encode()
    return (head + b"".join(blobs), len(head)) if blobs else (head, None)
