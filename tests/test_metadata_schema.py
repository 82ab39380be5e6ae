"""export/metadata_schema.py: TFLite Support's metadata flatbuffer, encoded and decoded without
tflite-support, and its min_parser_version rule. No model and no TensorFlow needed."""

from __future__ import annotations

import struct

import pytest

from fmnist_edge.export.metadata_schema import (
    FILE_IDENTIFIER,
    TABLES,
    SchemaError,
    decode,
    encode,
    min_parser_version,
)


def _file(name="labels.txt", **extra):
    return {"name": name, "description": "labels", "type": "TENSOR_AXIS_LABELS", **extra}


def _image_tensor(**extra):
    return {
        "name": "image",
        "description": "input",
        "content": {
            "content_properties_type": "ImageProperties",
            "content_properties": {
                "color_space": "GRAYSCALE",
                "default_size": {"width": 28, "height": 28},
            },
        },
        "process_units": [
            {
                "options_type": "NormalizationOptions",
                "options": {"mean": [0.0], "std": [255.0]},
            }
        ],
        "stats": {"max": [127.0], "min": [-128.0]},
        **extra,
    }


def _model(graph_extra=None, output_extra=None, **extra):
    output = {
        "name": "logits",
        "content": {"content_properties_type": "FeatureProperties", "content_properties": {}},
        "associated_files": [_file()],
        **(output_extra or {}),
    }
    return {
        "name": "m",
        "description": "d",
        "version": "1",
        "subgraph_metadata": [
            {
                "input_tensor_metadata": [_image_tensor()],
                "output_tensor_metadata": [output],
                **(graph_extra or {}),
            }
        ],
        "author": "a",
        "license": "MIT",
        **extra,
    }


def test_round_trip_keeps_every_field():
    meta = _model(min_parser_version="1.0.0")
    buf = encode(meta)
    assert buf[4:8] == FILE_IDENTIFIER
    assert decode(buf) == meta


def test_field_slots_follow_the_schema():
    """ModelMetadata.min_parser_version is field 7 (vtable slot 4 + 2 * 7): checked on the
    bytes, not through our own decoder."""
    buf = encode({"min_parser_version": "1.0.0"})
    root = struct.unpack_from("<I", buf, 0)[0]
    vtable = root - struct.unpack_from("<i", buf, root)[0]
    assert struct.unpack_from("<H", buf, vtable)[0] == 4 + 2 * 8  # 8 fields, the last one set
    at = root + struct.unpack_from("<H", buf, vtable + 4 + 2 * 7)[0]
    at += struct.unpack_from("<I", buf, at)[0]
    n = struct.unpack_from("<I", buf, at)[0]
    assert buf[at + 4 : at + 4 + n] == b"1.0.0"
    assert [name for name, _ in TABLES["ModelMetadata"]][7] == "min_parser_version"


def test_unions_and_vectors_of_every_kind():
    meta = {
        "subgraph_metadata": [
            {
                "input_tensor_metadata": [
                    {
                        "dimension_names": ["batch", "box"],
                        "content": {
                            "content_properties_type": "BoundingBoxProperties",
                            "content_properties": {"index": [1, 0, 3, 2], "type": "BOUNDARIES"},
                            "range": {"min": 2, "max": -1},
                        },
                    }
                ],
                "custom_metadata": [{"name": "blob", "data": b"\x00\x01\xff"}],
                "input_tensor_groups": [{"name": "g", "tensor_names": ["a", "b"]}],
            }
        ],
    }
    assert decode(encode(meta)) == meta


@pytest.mark.parametrize(
    "meta, version",
    [
        (_model(), "1.0.0"),
        (_model(output_extra={"associated_files": [_file(type="VOCABULARY")]}), "1.0.1"),
        (_model(graph_extra={"input_process_units": []}), "1.1.0"),
        (_model(graph_extra={"output_tensor_groups": [{"name": "g"}]}), "1.2.0"),
        (
            _model(
                graph_extra={
                    "output_process_units": [
                        {"options_type": "RegexTokenizerOptions", "options": {}}
                    ]
                }
            ),
            "1.2.1",
        ),
        (_model(associated_files=[_file(type="SCANN_INDEX_FILE")]), "1.4.0"),
        (_model(output_extra={"associated_files": [_file(version="2")]}), "1.4.1"),
        (_model(graph_extra={"custom_metadata": [{"name": "x"}]}), "1.5.0"),
    ],
    ids=[
        "base",
        "vocabulary",
        "process-units",
        "tensor-groups",
        "regex",
        "scann",
        "file-version",
        "custom",
    ],
)
def test_min_parser_version_follows_tflite_support(meta, version):
    assert min_parser_version(decode(encode(meta))) == version


def test_audio_properties_need_1_3():
    tensor = {"content": {"content_properties_type": "AudioProperties", "content_properties": {}}}
    meta = {"subgraph_metadata": [{"input_tensor_metadata": [tensor]}]}
    assert min_parser_version(decode(encode(meta))) == "1.3.0"


def test_bad_input_is_refused():
    with pytest.raises(SchemaError, match="no field 'colour'"):
        encode({"colour": "red"})
    with pytest.raises(SchemaError, match="not a ColorSpaceType"):
        encode(
            _model(
                subgraph_metadata=[
                    {
                        "input_tensor_metadata": [
                            {
                                "content": {
                                    "content_properties_type": "ImageProperties",
                                    "content_properties": {"color_space": "CMYK"},
                                }
                            }
                        ]
                    }
                ]
            )
        )
    with pytest.raises(SchemaError, match="M001"):
        decode(b"\x10\x00\x00\x00TFL3" + bytes(16))
    with pytest.raises(SchemaError, match="corrupt"):
        decode(encode(_model())[:40])
