"""The standard TFLite metadata of our files, the one MediaPipe Tasks, the TFLite Task Library,
Android Studio's ML Model Binding and Netron read (none of them reads our fmnist_edge record).

As TFLite Support's MetadataPopulator does it: a ModelMetadata flatbuffer (metadata_schema.py)
in the model's ``TFLITE_METADATA`` entry, and the files it names (labels.txt) in an uncompressed
zip appended after the model's flatbuffer. Its content is derived from the fmnist_edge record,
so both readers are told the same thing. Any later re-serialization of the model drops the zip:
call ``write_standard_metadata`` last, and hash the file after it.
"""

from __future__ import annotations

import io
import os
import zipfile
from typing import Any

import numpy as np

from fmnist_edge.common.errors import ModelError
from fmnist_edge.edge_runtime.metadata import check_tflite, metadata_entries, write_entry
from fmnist_edge.edge_runtime.record import ModelRecord

from .metadata_schema import SchemaError, decode, encode, min_parser_version

METADATA_NAME = "TFLITE_METADATA"  # the entry TFLite Support's readers look for
LABELS_FILE = "labels.txt"
AUTHOR = "fmnist-edge (fmnist-export)"
LICENSE = "MIT (fmnist-edge); trained on Fashion-MNIST, MIT (Zalando Research)"
LICENSE_OWN_DATA = "MIT (fmnist-edge); trained on the user's own images (their licence applies)"
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # a fixed date: the same model gives the same bytes
_COLOR_SPACES = {"grayscale": "GRAYSCALE", "rgb": "RGB"}


def _quantized(values: list[float], q: dict[str, Any]) -> list[float]:
    """``values`` as a tensor of ``q`` (dtype, scale, zero_point) holds them."""
    if q.get("dtype") not in ("int8", "uint8") or not q.get("scale"):
        return [float(v) for v in values]
    info = np.iinfo(q["dtype"])
    codes = np.clip(np.round(np.asarray(values) / q["scale"]) + q["zero_point"], info.min, info.max)
    return [float(c) for c in codes]


def describe(record: ModelRecord) -> dict[str, Any]:
    """The standard metadata (a ModelMetadata dict, min_parser_version aside) saying what the
    fmnist_edge ``record`` says: labels, input image and normalization, output values."""
    prov, quant, inp = record.provenance, record.quantization, record.input
    color = inp.color
    height, width = inp.size
    scale, offset = record.normalization_scale, record.normalization_offset
    x_range = [0 * scale + offset, 255 * scale + offset]  # pixel 0 and 255, normalized
    logits = record.output_values == "logits"
    names = list(record.class_names)
    accuracy = (record.validation or {}).get("tflite_accuracy")
    measured = f" Validation top-1 {100 * accuracy:.2f}%." if accuracy is not None else ""
    rgb = " (converted to grayscale inside the model)" if inp.grayscale else ""
    polarity = f", {inp.polarity} as in Fashion-MNIST" if inp.polarity else ""
    image = {
        "name": "image",
        "description": f"A {width}x{height} {color} image{rgb}{polarity}; "
        f"normalized as (pixel - mean) / std = pixel / {1 / scale:g}, then quantized as the "
        "tensor's scale and zero point say.",
        "content": {
            "content_properties_type": "ImageProperties",
            "content_properties": {
                "color_space": _COLOR_SPACES[color],
                "default_size": {"width": width, "height": height},
            },
        },
        "process_units": [
            {
                "options_type": "NormalizationOptions",
                "options": {"mean": [(0.0 - offset) / scale], "std": [1 / scale]},
            }
        ],
    }
    lo, hi = _quantized(x_range, quant.get("input") or {})
    image["stats"] = {"max": [hi], "min": [lo]}
    scores = {
        "name": "logits" if logits else "probabilities",
        "description": f"The {len(names)} classes' "
        + ("logits (apply softmax for probabilities)" if logits else "probabilities")
        + f", in the order of {LABELS_FILE}.",
        "content": {"content_properties_type": "FeatureProperties", "content_properties": {}},
        "associated_files": [
            {
                "name": LABELS_FILE,
                "description": "Labels for categories that the model can recognize.",
                "type": "TENSOR_AXIS_LABELS",
            }
        ],
    }
    if not logits:  # probabilities lie in [0, 1]; logits have no fixed range
        lo, hi = _quantized([0.0, 1.0], quant.get("output") or {})
        scores["stats"] = {"max": [hi], "min": [lo]}
    arch, mode = prov.get("arch", "model"), quant.get("mode", "")
    if record.is_fashion_mnist:
        what = f"Fashion-MNIST: classifies a {width}x{height} image of one article of clothing"
    else:
        source = (record.dataset or {}).get("source", "the user's images")
        what = f"Classifies a {width}x{height} {color} image (trained on {source})"
    return {
        "name": f"fmnist-edge {arch} {mode}".strip() + (" RGB" if color == "rgb" else ""),
        "description": f"{what} into {len(names)} classes ({LABELS_FILE}).{measured}",
        "version": f"{str(prov.get('created', ''))[:10]} {prov.get('source_model', '')} sha256 "
        f"{str(prov.get('source_sha256', ''))[:12]}".strip(),
        "subgraph_metadata": [
            {"input_tensor_metadata": [image], "output_tensor_metadata": [scores]}
        ],
        "author": AUTHOR,
        "license": LICENSE if record.is_fashion_mnist else LICENSE_OWN_DATA,
    }


def write_standard_metadata(model: bytes, record: ModelRecord | None = None) -> bytes:
    """A copy of the .tflite ``model`` carrying the standard metadata and its labels.txt,
    derived from ``record`` (default: the model's own fmnist_edge record). Writing it again
    replaces both; the model's ops, weights and other metadata entries are kept as they are."""
    check_tflite(model)
    if record is None:
        record = ModelRecord.from_model(model)
        if record is None:
            raise ModelError("<model>: no fmnist_edge record to derive the standard metadata from")
    meta = describe(record)
    # As the populator does: encode, read the buffer back, compute its version, encode again.
    meta["min_parser_version"] = min_parser_version(decode(encode(meta)))
    labels = "".join(f"{name}\n" for name in record.class_names).encode("utf-8")
    out = io.BytesIO()
    out.write(write_entry(model, METADATA_NAME, encode(meta)))  # (drops any earlier zip)
    with zipfile.ZipFile(out, "a") as archive:  # not a zip yet: appended after the model
        info = zipfile.ZipInfo(LABELS_FILE, date_time=_ZIP_DATE)
        info.compress_type = zipfile.ZIP_STORED  # the Task Library reads files in place
        info.external_attr = 0o644 << 16
        archive.writestr(info, labels)
    return out.getvalue()


def read_standard_metadata(model: bytes | str | os.PathLike) -> dict[str, Any] | None:
    """The ModelMetadata of a .tflite as a dict, or None if it has no TFLITE_METADATA entry."""
    raw = metadata_entries(model).get(METADATA_NAME)
    if raw is None:
        return None
    try:
        return decode(raw)
    except SchemaError as exc:
        raise ModelError(f"{METADATA_NAME}: {exc}") from None


def associated_files(model: bytes) -> dict[str, bytes]:
    """The files packed into a .tflite's trailing zip, by name; empty when there is none."""
    try:
        with zipfile.ZipFile(io.BytesIO(model)) as archive:
            return {info.filename: archive.read(info) for info in archive.infolist()}
    except zipfile.BadZipFile:
        return {}
