"""The MediaPipe variant of an exported .tflite: the same network behind an RGB uint8 input and
ahead of a float softmax, which MediaPipe Tasks' ImageClassifier and the TFLite Task Library
run unmodified (they refuse int8 tensors and 1-channel images, and apply no softmax).

It is made by editing the validated file's graph, not by converting the Keras model again (a
second calibration would round int8 differently). In front: QUANTIZE (uint8 -> int8) and a
fixed 1x1 CONV_2D taking ITU-R 601 luma, as Pillow's convert("L") and fmnist_edge's runtime do;
then a QUANTIZE or DEQUANTIZE into the original input when its type differs. Behind: DEQUANTIZE
(for an 8-bit output) and SOFTMAX (for logits), so the output is float32 probabilities. The
original ops and weights are untouched: a gray image (R = G = B) reaches the original input
exactly as fmnist_edge's Classifier would feed it, and the logits are the same, bit for bit.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fmnist_edge.common.errors import ModelError
from fmnist_edge.common.pixels import PIXEL_SCALE

# Luma weights as int8 codes over a shared scale 1/213: within 0.0015 of ITU-R 601's
# (0.299, 0.587, 0.114), and summing to exactly 1, so that a gray pixel comes out unchanged.
LUMA_CODES, LUMA_DENOMINATOR = (64, 125, 24), 213
MIN_RUNTIME = (1, 14, 0)  # int8 CONV_2D (version 3) and DEQUANTIZE (version 2) need TFLite 1.14
_ZERO_POINT = -128  # the int8 image holds pixel - 128, at scale 1/255


def mediapipe_model(tflite: bytes, logits: bool, name: str = "<model>") -> bytes:
    """``tflite`` (a (1, H, W, 1 or 3) classifier of pixel / 255) behind a (1, H, W, 3) uint8
    RGB input (made gray inside for a gray model), its output turned into float32
    probabilities (softmax applied when ``logits``).
    Needs ai-edge-litert's schema and flatbuffers: export time only."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(tflite), 0)
    if len(model.subgraphs) != 1:
        raise ModelError(f"{name}: {len(model.subgraphs)} subgraphs; expected one")
    graph = _Graph(model, schema)
    if len(graph.g.inputs) != 1 or len(graph.g.outputs) != 1:
        raise ModelError(f"{name}: {len(graph.g.inputs)} inputs, {len(graph.g.outputs)} outputs")
    (old_in,), (old_out,) = graph.g.inputs, graph.g.outputs
    original = graph.g.tensors[old_in]
    channels = list(original.shape)[-1]
    if len(original.shape) != 4 or channels not in (1, 3):
        raise ModelError(f"{name}: input shape {list(original.shape)} is not (1, H, W, 1 or 3)")
    types = schema.TensorType
    scale = float(np.float32(PIXEL_SCALE))
    rgb = graph.tensor("image", types.UINT8, original, 3, (scale, 0))
    same = original.type == types.INT8 and _quant(original) == (scale, _ZERO_POINT)
    if channels == 3:  # an RGB model: only the uint8 -> int8 step in front
        quant = (scale, _ZERO_POINT)
        int8 = old_in if same else graph.tensor("image_int8", types.INT8, original, 3, quant)
        front = [graph.op("QUANTIZE", 1, [rgb], [int8])]
    else:
        front, int8 = _luma(graph, schema, rgb, original, old_in if same else None, scale)
    if not same:  # into the original input's own type and quantization
        into = ("DEQUANTIZE", 2) if original.type == types.FLOAT32 else ("QUANTIZE", 1)
        front.append(graph.op(*into, [int8], [old_in]))
    back, out = [], old_out
    if graph.g.tensors[out].type in (types.INT8, types.UINT8):
        version = 2 if graph.g.tensors[out].type == types.INT8 else 1
        values = graph.tensor("scores_float", types.FLOAT32, graph.g.tensors[out], None, None)
        back.append(graph.op("DEQUANTIZE", version, [out], [values]))
        out = values
    elif graph.g.tensors[out].type != types.FLOAT32:
        raise ModelError(f"{name}: unsupported output type {graph.g.tensors[out].type}")
    if logits:
        probabilities = graph.tensor(
            "probabilities", types.FLOAT32, graph.g.tensors[out], None, None
        )
        softmax = schema.SoftmaxOptionsT()
        softmax.beta = 1.0
        back.append(graph.op("SOFTMAX", 1, [out], [probabilities], "SoftmaxOptions", softmax))
        out = probabilities
    graph.g.operators = [*front, *graph.g.operators, *back]
    graph.rewire(old_in, rgb, old_out, out)
    graph.raise_min_runtime(MIN_RUNTIME)
    builder = flatbuffers.Builder(len(tflite) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _luma(
    graph: _Graph, schema: Any, rgb: int, like: Any, gray: int | None, scale: float
) -> tuple[list, int]:
    """QUANTIZE (uint8 -> int8 RGB) and a fixed 1x1 CONV_2D taking ITU-R 601 luma into
    ``gray`` (int8, pixel - 128; a new tensor when None): the ops and the gray tensor."""
    types = schema.TensorType
    rgb_i8 = graph.tensor("image_int8", types.INT8, like, 3, (scale, _ZERO_POINT))
    weights = graph.constant(
        "luma_weights",
        types.INT8,
        [1, 1, 1, 3],
        np.array(LUMA_CODES, np.int8),
        1 / LUMA_DENOMINATOR,
    )
    bias = graph.constant(
        "luma_bias", types.INT32, [1], np.zeros(1, np.int32), scale / LUMA_DENOMINATOR
    )
    if gray is None:
        gray = graph.tensor("gray", types.INT8, like, 1, (scale, _ZERO_POINT))
    conv = schema.Conv2DOptionsT()
    conv.padding, conv.strideW, conv.strideH = schema.Padding.VALID, 1, 1
    conv.dilationWFactor = conv.dilationHFactor = 1
    ops = [
        graph.op("QUANTIZE", 1, [rgb], [rgb_i8]),
        graph.op("CONV_2D", 3, [rgb_i8, weights, bias], [gray], "Conv2DOptions", conv),
    ]
    return ops, gray


def _quant(tensor: Any) -> tuple[float, int] | None:
    q = tensor.quantization
    if q is None or q.scale is None or len(q.scale) != 1:
        return None
    return float(q.scale[0]), int(q.zeroPoint[0])


class _Graph:
    """Adds tensors, constants and operators to a ModelT's only subgraph."""

    def __init__(self, model: Any, schema: Any):
        self.model, self.schema, self.g = model, schema, model.subgraphs[0]

    def tensor(
        self, name: str, dtype: int, like: Any, channels: int | None, quant: tuple | None
    ) -> int:
        """A new activation tensor shaped like ``like`` (with ``channels`` last, if given)."""
        t = self.schema.TensorT()
        t.name, t.type, t.buffer = name, dtype, 0  # buffer 0: the empty one, not a constant
        shape = list(like.shape)
        signature = list(like.shapeSignature) if like.shapeSignature is not None else None
        if channels is not None:
            shape[-1] = channels
            if signature is not None:
                signature[-1] = channels
        t.shape = np.array(shape, np.int32)
        t.shapeSignature = None if signature is None else np.array(signature, np.int32)
        if quant is not None:
            t.quantization = self._quantization([quant[0]], [quant[1]])
        self.g.tensors.append(t)
        return len(self.g.tensors) - 1

    def _quantization(self, scales: list[float], zero_points: list[int]) -> Any:
        q = self.schema.QuantizationParametersT()
        q.scale = np.array(scales, np.float32)
        q.zeroPoint = np.array(zero_points, np.int64)
        q.quantizedDimension = 0
        return q

    def constant(self, name: str, dtype: int, shape: list[int], data: np.ndarray, scale: float):
        buffer = self.schema.BufferT()
        buffer.data = np.frombuffer(data.tobytes(), np.uint8)
        self.model.buffers.append(buffer)
        t = self.schema.TensorT()
        t.name, t.type, t.buffer = name, dtype, len(self.model.buffers) - 1
        t.shape = np.array(shape, np.int32)
        t.quantization = self._quantization([scale], [0])
        self.g.tensors.append(t)
        return len(self.g.tensors) - 1

    def _opcode(self, op: str, version: int) -> int:
        code = getattr(self.schema.BuiltinOperator, op)
        for i, c in enumerate(self.model.operatorCodes):  # the original ops keep their codes
            if max(c.builtinCode, c.deprecatedBuiltinCode) == code and c.version == version:
                return i
        c = self.schema.OperatorCodeT()
        c.builtinCode, c.deprecatedBuiltinCode, c.version = code, min(code, 127), version
        self.model.operatorCodes.append(c)
        return len(self.model.operatorCodes) - 1

    def op(
        self,
        op: str,
        version: int,
        inputs: list[int],
        outputs: list[int],
        options: str | None = None,
        value: Any = None,
    ) -> Any:
        o = self.schema.OperatorT()
        o.opcodeIndex = self._opcode(op, version)
        o.inputs, o.outputs = np.array(inputs, np.int32), np.array(outputs, np.int32)
        if options is not None:
            o.builtinOptionsType = getattr(self.schema.BuiltinOptions, options)
            o.builtinOptions = value
        return o

    def rewire(self, old_in: int, new_in: int, old_out: int, new_out: int) -> None:
        """The subgraph's and the signatures' input and output point at the new tensors."""
        self.g.inputs = np.array([new_in], np.int32)
        self.g.outputs = np.array([new_out], np.int32)
        for signature in self.model.signatureDefs or ():
            for entry in signature.inputs or ():
                if entry.tensorIndex == old_in:
                    entry.tensorIndex = new_in
            for entry in signature.outputs or ():
                if entry.tensorIndex == old_out:
                    entry.tensorIndex = new_out

    def raise_min_runtime(self, version: tuple[int, int, int]) -> None:
        """The ``min_runtime_version`` entry (a NUL-padded string), raised to ``version``."""
        for entry in self.model.metadata or ():
            if entry.name in (b"min_runtime_version", "min_runtime_version"):
                buffer = self.model.buffers[entry.buffer]
                old = bytes(buffer.data).rstrip(b"\0").decode() if buffer.data is not None else ""
                parts = tuple(int(p) for p in old.split(".") if p.isdigit())
                if parts < version:
                    text = ".".join(map(str, version)).encode().ljust(16, b"\0")
                    buffer.data = np.frombuffer(text, np.uint8)
