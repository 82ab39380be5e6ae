"""The model record: what a .tflite says about itself, as one type that export writes and every
reader (the Classifier, fmnist-serve, the benchmarks, the standard metadata, the Pi probe) reads.

It travels as JSON in the file's ``fmnist_edge`` metadata entry (metadata.py). Format 1 files
(every file before own data: Fashion-MNIST, 28x28 gray) carry no ``dataset`` and may lack
fields; the defaults below are exactly what those files meant, so they keep working. A file with
no record at all is described from its tensors (``ModelRecord.assumed``).

    record = ModelRecord.from_model(content)      # None: the file has no record
    record.input.size, record.input.color         # (28, 28), "grayscale"
    record.class_names                            # ("T-shirt/top", ...)
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from fmnist_edge.common.errors import ModelError
from fmnist_edge.common.labels import CLASS_NAMES
from fmnist_edge.common.pixels import PIXEL_OFFSET, PIXEL_SCALE

from .metadata import METADATA_NAME, read_metadata, write_entry

FORMAT = "fmnist-edge/2"  # 2: input size and colour, dataset; 1: Fashion-MNIST implied
FORMATS = ("fmnist-edge/1", FORMAT)
COLORS = ("grayscale", "rgb")
CHANNELS = {"grayscale": 1, "rgb": 3}
OUTPUT_VALUES = ("logits", "probabilities", "scores")
FASHION_MNIST_POLARITY = "light object on dark background"


@dataclass(frozen=True)
class InputSpec:
    """The image the model takes: (height, width) pixels of ``color``, NHWC."""

    height: int = 28
    width: int = 28
    color: str = "grayscale"  # "grayscale" (1 channel) or "rgb" (3 channels)
    polarity: str | None = FASHION_MNIST_POLARITY  # None: the data's own look, no convention
    # set for a file that takes RGB but converts to gray inside (--target mediapipe)
    grayscale: str | None = None

    @property
    def size(self) -> tuple[int, int]:
        return self.height, self.width

    @property
    def channels(self) -> int:
        """Channels of the tensor the file takes (3 for a gray model's MediaPipe variant)."""
        return CHANNELS[self.color]

    @property
    def pixel_color(self) -> str:
        """The colour images are converted to before they reach the file: "grayscale" also for
        a MediaPipe variant, whose RGB input is gray repeated three times."""
        return "grayscale" if self.grayscale else self.color

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "shape": [1, self.height, self.width, self.channels],
            "layout": "NHWC",
            "color": self.color,
        }
        if self.polarity is not None:
            out["polarity"] = self.polarity
        if self.grayscale is not None:
            out["grayscale"] = self.grayscale
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any], name: str) -> InputSpec:
        shape = d.get("shape", [1, 28, 28, 1])
        color = d.get("color", "grayscale")
        if color not in COLORS:
            raise ModelError(f"{name}: metadata input color {color!r} is not one of {COLORS}")
        try:
            _, height, width, _ = (int(n) for n in shape)
        except (TypeError, ValueError):
            bad = f"{name}: metadata input shape {shape!r} is not [1, H, W, C]"
            raise ModelError(bad) from None
        return cls(height, width, color, d.get("polarity"), d.get("grayscale"))


@dataclass(frozen=True)
class ModelRecord:
    """Everything a runtime needs to use a file correctly, and where the file came from."""

    class_names: tuple[str, ...] = CLASS_NAMES
    input: InputSpec = field(default_factory=InputSpec)
    output_values: str = "probabilities"  # "logits": the runtime applies softmax
    normalization_scale: float = PIXEL_SCALE  # x = pixel * scale + offset
    normalization_offset: float = PIXEL_OFFSET
    quantization: dict[str, Any] = field(default_factory=dict)  # mode, weights, I/O tensors
    provenance: dict[str, Any] = field(default_factory=dict)  # arch, source, versions, config
    validation: dict[str, Any] | None = None  # scored on held-out images at export
    dataset: dict[str, Any] | None = None  # the training data: kind, source, counts, hashes
    format: str = FORMAT

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def is_fashion_mnist(self) -> bool:
        """Trained on Fashion-MNIST's classes and images (28x28 gray, light on dark): the
        models for which photo mode (the dataset's own conversion) means something."""
        return (
            self.class_names == CLASS_NAMES
            and self.input.size == (28, 28)
            and self.input.pixel_color == "grayscale"
            and self.input.polarity == FASHION_MNIST_POLARITY
        )

    @property
    def mode(self) -> str | None:
        """The quantization mode: float32, float16, dynamic or int8 (None: unknown)."""
        return self.quantization.get("mode")

    def replace(self, **changes: Any) -> ModelRecord:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The JSON layout of the file's record (docs/DESIGN.md)."""
        out: dict[str, Any] = {
            "format": self.format,
            "class_names": list(self.class_names),
            "input": self.input.to_dict(),
            "output": {"shape": [1, self.num_classes], "values": self.output_values},
            "normalization": {
                "scale": self.normalization_scale,
                "offset": self.normalization_offset,
                "formula": f"x = pixel * scale + offset (pixel / {1 / self.normalization_scale:g})"
                if self.normalization_offset == 0
                else "x = pixel * scale + offset",
            },
            "quantization": self.quantization,
            "provenance": self.provenance,
        }
        if self.validation is not None:
            out["validation"] = self.validation
        if self.dataset is not None:
            out["dataset"] = self.dataset
        return out

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), sort_keys=True, default=str).encode()

    def write_into(self, model: bytes) -> bytes:
        """A copy of the .tflite ``model`` carrying this record (replacing any earlier one).
        Needs ai-edge-litert's schema and flatbuffers: export time only."""
        return write_entry(model, METADATA_NAME, self.to_json())

    @classmethod
    def from_dict(cls, d: dict[str, Any], name: str = "<model>") -> ModelRecord:
        """A record from its JSON; missing fields take format 1's meaning (Fashion-MNIST)."""
        fmt = d.get("format", "fmnist-edge/1")
        if fmt not in FORMATS:
            raise ModelError(
                f"{name}: metadata format {fmt!r} is newer than this fmnist-edge reads "
                f"({', '.join(FORMATS)}); upgrade fmnist-edge"
            )
        output = d.get("output") or {}
        values = output.get("values", "probabilities")
        if values not in OUTPUT_VALUES:
            raise ModelError(f"{name}: metadata output values {values!r} are not understood")
        norm = d.get("normalization") or {}
        try:
            scale = float(norm.get("scale", PIXEL_SCALE))
            offset = float(norm.get("offset", PIXEL_OFFSET))
        except (TypeError, ValueError):
            raise ModelError(f"{name}: metadata normalization is not numeric: {norm}") from None
        names = d.get("class_names") or CLASS_NAMES
        return cls(
            class_names=tuple(str(n) for n in names),
            input=InputSpec.from_dict(d.get("input") or {}, name),
            output_values=values,
            normalization_scale=scale,
            normalization_offset=offset,
            quantization=dict(d.get("quantization") or {}),
            provenance=dict(d.get("provenance") or {}),
            validation=d.get("validation"),
            dataset=d.get("dataset"),
            format=fmt,
        )

    @classmethod
    def from_model(cls, model: bytes, name: str = "<model>") -> ModelRecord | None:
        """The record inside a .tflite's bytes, or None when it has none."""
        d = read_metadata(model, name)
        return None if d is None else cls.from_dict(d, name)

    @classmethod
    def assumed(
        cls, height: int, width: int, channels: int, num_classes: int, name: str
    ) -> ModelRecord:
        """What a file without a record is taken to be, from its tensors: a Fashion-MNIST model
        (28x28 gray in, ten outputs), pixel / 255 in, probabilities out. Any other file is
        refused: its class names and colour would be guesses."""
        if (height, width, channels) != (28, 28, 1):
            raise ModelError(
                f"{name}: a {width}x{height}x{channels} input and no fmnist_edge metadata: "
                "its class names are unknown (export it with fmnist-export)"
            )
        if num_classes != len(CLASS_NAMES):
            raise ModelError(f"{name}: {num_classes} outputs and no class names in its metadata")
        return cls(format="none")
