"""Residual CNNs for Fashion-MNIST, built by name. No I/O, no flags: just Keras layers.

Every model takes (N, H, W, C) float32 pixels already scaled to [0, 1] (pixel / 255: the
normalization travels in the exported .tflite's metadata; Fashion-MNIST's (N, 28, 28, 1) by
default) and returns (N, classes) softmax probabilities in float32, also under mixed precision.
"""

from __future__ import annotations

import keras
from keras import layers, regularizers

from fmnist_edge.common.errors import UsageError
from fmnist_edge.common.labels import IMAGE_SHAPE, NUM_CLASSES

from .archs import ARCHS


def _conv(filters: int, kernel: int, stride: int, l2: float, name: str) -> layers.Conv2D:
    reg = regularizers.l2(l2) if l2 else None
    return layers.Conv2D(
        filters, kernel, strides=stride, padding="same", kernel_regularizer=reg, name=name
    )


def _block(x, filters: int, stride: int, l2: float, name: str):
    """Two 3x3 conv+BN, with a 1x1 conv+BN projection when the shape changes."""
    shortcut = x
    y = _conv(filters, 3, stride, l2, f"{name}_conv1")(x)
    y = layers.BatchNormalization(name=f"{name}_bn1")(y)
    y = layers.Activation("relu", name=f"{name}_relu1")(y)
    y = _conv(filters, 3, 1, l2, f"{name}_conv2")(y)
    y = layers.BatchNormalization(name=f"{name}_bn2")(y)
    if x.shape[-1] != filters or stride != 1:
        shortcut = _conv(filters, 1, stride, 0.0, f"{name}_proj")(x)
        shortcut = layers.BatchNormalization(name=f"{name}_proj_bn")(shortcut)
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.Activation("relu", name=f"{name}_out")(y)


def build_model(
    arch: str,
    num_classes: int = NUM_CLASSES,
    input_shape: tuple[int, int, int] = IMAGE_SHAPE,
) -> keras.Model:
    """A fresh, uncompiled model of architecture ``arch`` (a key of ARCHS) for images of
    ``input_shape`` (height, width, channels)."""
    if arch not in ARCHS:
        raise UsageError(f"unknown --arch {arch!r}; choose from {', '.join(ARCHS)}")
    spec = ARCHS[arch]
    inputs = keras.Input(shape=input_shape, name="image")  # (N, H, W, C) float in [0, 1]
    x = _conv(spec.stem, 3, 1, 0.0, "stem_conv")(inputs)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.Activation("relu", name="stem_relu")(x)
    for s, stage in enumerate(spec.stages, start=1):
        for b in range(stage.blocks):
            stride = stage.stride if b == 0 else 1
            x = _block(x, stage.filters, stride, spec.l2, f"stage{s}_block{b + 1}")
        if stage.pool:
            x = layers.MaxPooling2D(name=f"stage{s}_pool")(x)
        if stage.dropout:
            x = layers.Dropout(stage.dropout, name=f"stage{s}_drop")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    if spec.head_dropout:
        x = layers.Dropout(spec.head_dropout, name="gap_drop")(x)
    for i, (units, rate) in enumerate(spec.head, start=1):
        x = layers.Dense(units, name=f"fc{i}")(x)
        x = layers.BatchNormalization(name=f"fc{i}_bn")(x)
        x = layers.Activation("relu", name=f"fc{i}_relu")(x)
        x = layers.Dropout(rate, name=f"fc{i}_drop")(x)
    x = layers.Dense(num_classes, name="logits")(x)
    # float32 softmax even under mixed_float16, for a numerically sound loss
    outputs = layers.Activation("softmax", dtype="float32", name="probs")(x)
    return keras.Model(inputs, outputs, name=arch)


def count_macs(model: keras.Model) -> int:
    """Multiply-accumulates for one image: convolutions and dense layers (BN, pooling, adds and
    activations are negligible and not counted, the usual convention)."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, layers.DepthwiseConv2D):
            _, h, w, c = layer.output.shape
            kh, kw = layer.kernel_size
            total += h * w * kh * kw * c
        elif isinstance(layer, layers.Conv2D):
            _, h, w, cout = layer.output.shape
            kh, kw = layer.kernel_size
            cin = layer.input.shape[-1]
            total += h * w * kh * kw * cin * cout // layer.groups
        elif isinstance(layer, layers.Dense):
            total += layer.input.shape[-1] * layer.units
    return int(total)


def describe(model: keras.Model) -> dict[str, int]:
    """Parameters (all, trainable) and MACs: the numbers every model reports."""
    trainable = sum(int(w.numpy().size) for w in model.trainable_weights)
    return {
        "params": int(model.count_params()),
        "trainable_params": trainable,
        "macs": count_macs(model),
    }
