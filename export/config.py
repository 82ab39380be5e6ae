"""The settings of one export: every knob of fmnist-export, with its default, in one place."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fmnist_edge.common.errors import UsageError
from fmnist_edge.common.labels import NUM_CLASSES

MODES = ("float32", "float16", "int8", "dynamic")  # --quantize choices, in "all" order
INT8_IO = ("int8", "uint8", "float32")  # --int8-io choices: the int8 model's I/O tensor dtype
TARGETS = ("mediapipe",)  # --target choices: a second file per mode, for another consumer
VAL_FRACTION, SPLIT_SEED = 0.2, 42  # the notebook's train/validation split (see data.py)
CALIBRATION_SAMPLES = 500  # int8 calibration images when --calibration-samples is not given


def parse_modes(names: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """``("int8",)`` from ``"int8"``; every mode from ``"all"``; duplicates dropped, order kept."""
    if isinstance(names, str):
        names = (names,)
    out: list[str] = []
    for name in names:
        for mode in MODES if name == "all" else (name,):
            if mode not in MODES:
                raise UsageError(
                    f"unknown --quantize {mode!r}; choose from {', '.join(MODES)}, all"
                )
            if mode not in out:
                out.append(mode)
    return tuple(out)


def variant_name(mode: str, int8_io: str) -> str:
    """The tag in default file names: the mode, plus the I/O dtype when int8 I/O isn't int8."""
    if mode != "int8" or int8_io == "int8":
        return mode
    return "int8-uint8-io" if int8_io == "uint8" else "int8-float-io"


@dataclass(frozen=True)
class ExportConfig:
    source: Path  # a run directory (its model.keras is exported) or a .keras file
    modes: tuple[str, ...] = ("int8",)  # conversions to run, each a member of MODES
    int8_io: str = "int8"  # dtype of the int8 model's input/output tensors: int8, uint8, float32
    keep_softmax: bool = False  # keep the final softmax in the file (default: output the logits)
    targets: tuple[str, ...] = ()  # "mediapipe": also {name}-mediapipe.tflite, RGB in, softmax out
    out: Path | None = None  # a .tflite file (one mode only) or a folder; None: beside the model
    # representative images for int8, stratified by class, from the images the run trained on;
    # None: 500, or every training image of a smaller set (a number given is taken exactly)
    calibration_samples: int | None = None
    validate_samples: int | None = None  # held-out images to score (holdout.py); None: all
    max_drop: float | None = None  # fail, keeping no file, when accuracy drops more (pp)
    force: bool = False  # overwrite existing .tflite files
    seed: int = 42  # picks the calibration images
    data_dir: Path | None = None  # Fashion-MNIST IDX files; None: the dataset's search
    threads: int | None = None  # interpreter threads during validation; None: runtime's choice
    batch_size: int = 256  # Keras batch when scoring the float model

    def __post_init__(self) -> None:
        object.__setattr__(self, "source", Path(self.source))
        if self.data_dir is not None:
            object.__setattr__(self, "data_dir", Path(self.data_dir))
        if self.out is not None:
            object.__setattr__(self, "out", Path(self.out))
        object.__setattr__(self, "modes", parse_modes(tuple(self.modes)))
        object.__setattr__(self, "targets", tuple(dict.fromkeys(self.targets)))
        for target in self.targets:
            if target not in TARGETS:
                raise UsageError(f"unknown --target {target!r}; choose from {', '.join(TARGETS)}")
        if not self.modes:
            raise UsageError("--quantize: no mode given")
        if self.int8_io not in INT8_IO:
            raise UsageError(
                f"unknown --int8-io {self.int8_io!r}; choose from {', '.join(INT8_IO)}"
            )
        if self.int8_io != "int8" and "int8" not in self.modes:
            raise UsageError(
                f"--int8-io {self.int8_io} applies to int8 models only "
                f"(--quantize {','.join(self.modes)} has none)"
            )
        if self.calibration_samples is not None and self.calibration_samples < NUM_CLASSES:
            raise UsageError(
                f"--calibration-samples must be >= {NUM_CLASSES} (at least one image per class)"
            )
        if self.validate_samples is not None and self.validate_samples < 1:
            raise UsageError("--validate-samples must be >= 1")
        if self.max_drop is not None and self.max_drop < 0:
            raise UsageError("--max-drop must be >= 0")
        if self.threads is not None and self.threads < 1:
            raise UsageError("--threads must be >= 1")
        if self.batch_size < 1:
            raise UsageError("batch_size must be >= 1")
        if self.out is not None and self.out.suffix == ".tflite" and len(self.modes) > 1:
            raise UsageError(
                f"--out {self.out} names one file but {len(self.modes)} modes were asked for; "
                "give a folder"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready resolved settings, for the provenance record."""
        return {
            k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v)
            for k, v in dataclasses.asdict(self).items()
        }
