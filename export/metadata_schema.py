"""TFLite Support's metadata schema (metadata_schema.fbs, version 1.5.0) as plain data, with an
encoder and a decoder between its flatbuffers and dicts, and its ``min_parser_version`` rule.

The dicts use the field names of the .fbs and flatc's JSON convention for unions (a field
``content_properties_type: "ImageProperties"`` beside ``content_properties: {...}``), which is
also what TFLite Support's MetadataDisplayer prints. Absent fields and fields at their default
are left out, as flatc does. Encoding uses the ``flatbuffers`` package's Builder alone;
decoding only ``struct``. tflite-support cannot be installed beside TensorFlow 2.21 and
MediaPipe's own metadata writer does not import, so neither is needed here.
"""

from __future__ import annotations

import struct
from typing import Any

FILE_IDENTIFIER = b"M001"  # metadata_schema.fbs: file_identifier "M001"
ROOT = "ModelMetadata"

ENUMS: dict[str, tuple[str, ...]] = {  # each `enum X : byte`, values 0, 1, ... in order
    "AssociatedFileType": (
        "UNKNOWN",
        "DESCRIPTIONS",
        "TENSOR_AXIS_LABELS",
        "TENSOR_VALUE_LABELS",
        "TENSOR_AXIS_SCORE_CALIBRATION",
        "VOCABULARY",
        "SCANN_INDEX_FILE",
    ),
    "ColorSpaceType": ("UNKNOWN", "RGB", "GRAYSCALE"),
    "BoundingBoxType": ("UNKNOWN", "BOUNDARIES", "UPPER_LEFT", "CENTER"),
    "CoordinateType": ("RATIO", "PIXEL"),
    "ScoreTransformationType": ("IDENTITY", "LOG", "INVERSE_LOGISTIC"),
}
UNIONS: dict[str, tuple[str, ...]] = {  # member 0 is NONE
    "ContentProperties": (
        "NONE",
        "FeatureProperties",
        "ImageProperties",
        "BoundingBoxProperties",
        "AudioProperties",
    ),
    "ProcessUnitOptions": (
        "NONE",
        "NormalizationOptions",
        "ScoreCalibrationOptions",
        "ScoreThresholdingOptions",
        "BertTokenizerOptions",
        "SentencePieceTokenizerOptions",
        "RegexTokenizerOptions",
    ),
}
# Every table, its fields in declaration order (a field's order fixes its vtable slot; a union
# takes two slots, its type then its value).
_TABLES_TEXT = {
    "AssociatedFile": "name:string description:string type:AssociatedFileType locale:string "
    "version:string",
    "FeatureProperties": "",
    "ImageSize": "width:uint height:uint",
    "ImageProperties": "color_space:ColorSpaceType default_size:ImageSize",
    "BoundingBoxProperties": "index:[uint] type:BoundingBoxType coordinate_type:CoordinateType",
    "AudioProperties": "sample_rate:uint channels:uint",
    "ValueRange": "min:int max:int",
    "Content": "content_properties:ContentProperties range:ValueRange",
    "NormalizationOptions": "mean:[float] std:[float]",
    "ScoreCalibrationOptions": "score_transformation:ScoreTransformationType default_score:float",
    "ScoreThresholdingOptions": "global_score_threshold:float",
    "BertTokenizerOptions": "vocab_file:[AssociatedFile]",
    "SentencePieceTokenizerOptions": "sentencePiece_model:[AssociatedFile] "
    "vocab_file:[AssociatedFile]",
    "RegexTokenizerOptions": "delim_regex_pattern:string vocab_file:[AssociatedFile]",
    "ProcessUnit": "options:ProcessUnitOptions",
    "Stats": "max:[float] min:[float]",
    "TensorGroup": "name:string tensor_names:[string]",
    "TensorMetadata": "name:string description:string dimension_names:[string] content:Content "
    "process_units:[ProcessUnit] stats:Stats associated_files:[AssociatedFile]",
    "CustomMetadata": "name:string data:[ubyte]",
    "SubGraphMetadata": "name:string description:string "
    "input_tensor_metadata:[TensorMetadata] output_tensor_metadata:[TensorMetadata] "
    "associated_files:[AssociatedFile] input_process_units:[ProcessUnit] "
    "output_process_units:[ProcessUnit] input_tensor_groups:[TensorGroup] "
    "output_tensor_groups:[TensorGroup] custom_metadata:[CustomMetadata]",
    "ModelMetadata": "name:string description:string version:string "
    "subgraph_metadata:[SubGraphMetadata] author:string license:string "
    "associated_files:[AssociatedFile] min_parser_version:string",
}
TABLES: dict[str, tuple[tuple[str, str], ...]] = {
    table: tuple(tuple(field.split(":")) for field in text.split())
    for table, text in _TABLES_TEXT.items()
}
_SCALARS = {"uint": "<I", "int": "<i", "float": "<f", "ubyte": "<B"}  # (enums: "<b")


class SchemaError(ValueError):
    """A dict that does not fit the schema, or bytes that are not a metadata flatbuffer."""


# --- encoding: dict -> flatbuffer ---------------------------------------------------------------


def encode(meta: dict[str, Any]) -> bytes:
    """A ModelMetadata dict -> its flatbuffer, with the "M001" file identifier."""
    import flatbuffers

    builder = flatbuffers.Builder(1024)
    builder.Finish(_encode_table(builder, ROOT, meta), file_identifier=FILE_IDENTIFIER)
    return bytes(builder.Output())


def _encode_table(b: Any, table: str, obj: dict[str, Any]) -> int:
    fields = TABLES[table]
    names = {name for name, _ in fields}
    names |= {f"{name}_type" for name, kind in fields if kind in UNIONS}
    unknown = sorted(set(obj) - names)
    if unknown:
        raise SchemaError(f"{table} has no field {unknown[0]!r}")
    offsets, scalars, slot = {}, {}, 0  # children are built before the table starts
    for name, kind in fields:
        value = obj.get(name)
        if kind in UNIONS:
            member = obj.get(f"{name}_type", "NONE")
            if member not in UNIONS[kind]:
                raise SchemaError(f"{table}.{name}_type: {member!r} is not in {kind}")
            if member != "NONE":
                scalars[slot] = ("<B", UNIONS[kind].index(member))
                offsets[slot + 1] = _encode_table(b, member, value or {})
            slot += 2
            continue
        if value is not None:
            if kind in ENUMS:
                if value not in ENUMS[kind]:
                    raise SchemaError(f"{table}.{name}: {value!r} is not a {kind}")
                if value != ENUMS[kind][0]:
                    scalars[slot] = ("<b", ENUMS[kind].index(value))
            elif kind in _SCALARS:
                if value != 0:
                    scalars[slot] = (_SCALARS[kind], value)
            else:
                offsets[slot] = _encode_value(b, kind, value)
        slot += 1
    b.StartObject(slot)
    for at, off in offsets.items():
        b.PrependUOffsetTRelativeSlot(at, off, 0)
    for at, (fmt, value) in scalars.items():
        prepend = {
            "<I": b.PrependUint32Slot,
            "<i": b.PrependInt32Slot,
            "<f": b.PrependFloat32Slot,
            "<B": b.PrependUint8Slot,
            "<b": b.PrependInt8Slot,
        }[fmt]
        prepend(at, value, 0)
    return b.EndObject()


def _encode_value(b: Any, kind: str, value: Any) -> int:
    if kind == "string":
        return b.CreateString(str(value))
    if kind in TABLES:
        return _encode_table(b, kind, value)
    item = kind[1:-1]  # a vector
    if item == "ubyte":
        return b.CreateByteVector(bytes(value))
    if item in _SCALARS:
        prepend = {"uint": b.PrependUint32, "int": b.PrependInt32, "float": b.PrependFloat32}[item]
        b.StartVector(4, len(value), 4)
        for v in reversed(list(value)):
            prepend(v)
        return b.EndVector()
    children = [_encode_value(b, item, v) for v in value]  # strings or tables
    b.StartVector(4, len(children), 4)
    for child in reversed(children):
        b.PrependUOffsetTRelative(child)
    return b.EndVector()


# --- decoding: flatbuffer -> dict ---------------------------------------------------------------


def decode(buf: bytes) -> dict[str, Any]:
    """A ModelMetadata flatbuffer -> a dict (SchemaError when it is not one)."""
    buf = bytes(buf)
    if len(buf) < 8 or buf[4:8] != FILE_IDENTIFIER:
        raise SchemaError(f"not a TFLite metadata flatbuffer (no {FILE_IDENTIFIER.decode()})")
    try:
        return _decode_table(buf, ROOT, _u32(buf, 0))
    except (struct.error, IndexError, KeyError, UnicodeDecodeError) as exc:
        raise SchemaError(f"corrupt TFLite metadata flatbuffer ({exc})") from None


def _u32(buf: bytes, at: int) -> int:
    return struct.unpack_from("<I", buf, at)[0]


def _decode_table(buf: bytes, table: str, pos: int) -> dict[str, Any]:
    vtable = pos - struct.unpack_from("<i", buf, pos)[0]
    vsize = struct.unpack_from("<H", buf, vtable)[0]

    def field(slot: int) -> int | None:  # where the field's value is, None when absent
        if 4 + 2 * slot >= vsize:
            return None
        off = struct.unpack_from("<H", buf, vtable + 4 + 2 * slot)[0]
        return pos + off if off else None

    out: dict[str, Any] = {}
    slot = 0
    for name, kind in TABLES[table]:
        if kind in UNIONS:
            at_type, at = field(slot), field(slot + 1)
            member = UNIONS[kind][buf[at_type]] if at_type is not None else "NONE"
            if member != "NONE" and at is not None:
                out[f"{name}_type"] = member
                out[name] = _decode_table(buf, member, at + _u32(buf, at))
            slot += 2
            continue
        at = field(slot)
        slot += 1
        if at is None:
            continue
        if kind in ENUMS:
            out[name] = ENUMS[kind][struct.unpack_from("<b", buf, at)[0]]
        elif kind in _SCALARS:
            out[name] = struct.unpack_from(_SCALARS[kind], buf, at)[0]
        else:
            out[name] = _decode_value(buf, kind, at + _u32(buf, at))
    return out


def _decode_value(buf: bytes, kind: str, at: int) -> Any:
    if kind in TABLES:
        return _decode_table(buf, kind, at)
    n, start = _u32(buf, at), at + 4
    if kind == "string":
        return buf[start : start + n].decode("utf-8")
    item = kind[1:-1]
    if item == "ubyte":
        return buf[start : start + n]
    if item in _SCALARS:
        return list(struct.unpack_from(f"<{n}{_SCALARS[item][1]}", buf, start))
    return [_decode_value(buf, item, start + 4 * i + _u32(buf, start + 4 * i)) for i in range(n)]


# --- min_parser_version -------------------------------------------------------------------------


def min_parser_version(meta: dict[str, Any]) -> str:
    """The oldest metadata parser that understands every field of ``meta``, by TFLite Support's
    rule (metadata/cc/metadata_version.cc): 1.0.0, raised to the schema version that added each
    populated member (VOCABULARY 1.0.1; subgraph input/output process units and the Bert and
    SentencePiece tokenizers 1.1.0; tensor groups 1.2.0; the regex tokenizer 1.2.1;
    AudioProperties 1.3.0; SCANN_INDEX_FILE 1.4.0; AssociatedFile.version 1.4.1;
    CustomMetadata 1.5.0). Fields of 1.0.0, whatever their values, leave it at 1.0.0."""
    found = [(1, 0, 0)]

    def files(items: list[dict[str, Any]] | None) -> None:
        for f in items or ():
            found.append(
                {"VOCABULARY": (1, 0, 1), "SCANN_INDEX_FILE": (1, 4, 0)}.get(
                    f.get("type", "UNKNOWN"), (1, 0, 0)
                )
            )
            if f.get("version") is not None:
                found.append((1, 4, 1))

    def units(items: list[dict[str, Any]] | None) -> None:
        for unit in items or ():
            found.append(
                {
                    "BertTokenizerOptions": (1, 1, 0),
                    "SentencePieceTokenizerOptions": (1, 1, 0),
                    "RegexTokenizerOptions": (1, 2, 1),
                }.get(unit.get("options_type", "NONE"), (1, 0, 0))
            )

    for graph in meta.get("subgraph_metadata") or ():
        for tensor in [
            *graph.get("input_tensor_metadata", ()),
            *graph.get("output_tensor_metadata", ()),
        ]:
            files(tensor.get("associated_files"))
            units(tensor.get("process_units"))
            if (tensor.get("content") or {}).get("content_properties_type") == "AudioProperties":
                found.append((1, 3, 0))
        files(graph.get("associated_files"))
        for key, since in (
            ("input_process_units", (1, 1, 0)),
            ("output_process_units", (1, 1, 0)),
            ("input_tensor_groups", (1, 2, 0)),
            ("output_tensor_groups", (1, 2, 0)),
            ("custom_metadata", (1, 5, 0)),
        ):
            if graph.get(key) is not None:
                found.append(since)
        units(graph.get("input_process_units"))
        units(graph.get("output_process_units"))
    files(meta.get("associated_files"))
    return ".".join(str(n) for n in max(found))
