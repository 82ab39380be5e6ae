"""What to measure: the Keras reference and the .tflite files of a run, each with its format
read from the file itself (metadata, else the interpreter's tensors), never from its name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fmnist_edge.common.errors import ModelError, UsageError
from fmnist_edge.common.labels import CLASS_NAMES
from fmnist_edge.common.pixels import PIXEL_SCALE
from fmnist_edge.common.rundir import RunDir
from fmnist_edge.edge_runtime.interpreter import load_runtime
from fmnist_edge.edge_runtime.record import ModelRecord

from .config import BenchConfig

RUN_MODEL, RUN_LAST, RUN_METRICS = RunDir.MODEL, RunDir.LAST, RunDir.METRICS
# what a run without .tflite files gets first: float32 (the float reference on a device, and
# what int8's speed-up is measured against), float16 and int8, as fmnist-export --quantize all
EXPORT_FORMATS = ("float32", "float16", "int8")
# report order: the reference first, then from the least to the most quantized
FORMATS = ("keras", "float32", "float16", "dynamic", "int8", "int8-uint8-io", "int8-float-io")


@dataclass(frozen=True)
class ModelFile:
    format: str  # "keras", "float32", "float16", "dynamic", "int8", "int8-uint8-io", ...
    path: Path
    size_bytes: int
    metadata: dict[str, Any] | None = field(default=None, repr=False)  # the fmnist_edge record
    scale: float = PIXEL_SCALE  # normalization: x = pixel * scale + offset
    offset: float = 0.0

    @property
    def is_keras(self) -> bool:
        return self.format == "keras"


def _format_from_record(record: ModelRecord) -> str | None:
    quant = record.quantization
    mode = record.mode
    if not mode:
        return None
    io = quant.get("io_dtype") or (quant.get("input") or {}).get("dtype")
    if mode == "int8" and io and io != "int8":
        return "int8-uint8-io" if io == "uint8" else "int8-float-io"
    return str(mode)


def _format_from_tensors(path: Path) -> str:
    """For a .tflite without metadata: what its tensors say."""
    interp = load_runtime().interpreter_class(model_path=str(path))
    inp = np.dtype(interp.get_input_details()[0]["dtype"])
    dtypes = {np.dtype(t["dtype"]) for t in interp.get_tensor_details()}
    if inp == np.int8:
        return "int8"
    if inp == np.uint8:
        return "int8-uint8-io"
    if np.dtype(np.float16) in dtypes:
        return "float16"
    if np.dtype(np.int8) in dtypes:
        return "int8-float-io" if np.dtype(np.int32) in dtypes else "dynamic"
    return "float32"


def describe_tflite(path: Path) -> ModelFile:
    """A .tflite file's format, size and normalization."""
    if not path.is_file():
        raise ModelError(f"{path}: no such file")
    # ModelError for a file that is no TFLite model
    record = ModelRecord.from_model(path.read_bytes(), str(path))
    fmt = _format_from_record(record) if record else None
    return ModelFile(
        format=fmt or _format_from_tensors(path),
        path=path,
        size_bytes=path.stat().st_size,
        metadata=record.to_dict() if record else None,
        scale=record.normalization_scale if record else PIXEL_SCALE,
        offset=record.normalization_offset if record else 0.0,
    )


def describe_keras(path: Path) -> ModelFile:
    if not path.is_file():
        raise ModelError(f"{path}: no such file")
    return ModelFile(format="keras", path=path, size_bytes=path.stat().st_size)


def find_models(cfg: BenchConfig) -> tuple[Path | None, list[Path]]:
    """(the Keras reference or None, the .tflite files): --keras, else RUN/model.keras (or its
    last.keras where fmnist-export would take it: the same model); every
    RUN/*.tflite plus each --tflite. Raises ModelError for a missing path."""
    keras_path = cfg.keras_path
    tflites: list[Path] = []
    if cfg.run_dir is not None:
        run = Path(cfg.run_dir)
        if run.is_file():
            raise ModelError(f"{run}: a file, not a run directory (use --keras or --tflite)")
        if not run.is_dir():
            raise ModelError(f"{run}: no such run directory")
        tflites += sorted(run.glob("*.tflite"))
        if keras_path is None and ((run / RUN_MODEL).is_file() or (run / RUN_LAST).is_file()):
            from fmnist_edge.export.source import run_model  # fmnist-export's rule for last.keras

            try:
                keras_path = run_model(run)
            except ModelError:  # a last.keras that is not the selected model: no reference
                if not tflites:
                    raise
    if keras_path is not None and not Path(keras_path).is_file():
        raise ModelError(f"{keras_path}: no such Keras model")
    for path in cfg.tflite_paths:
        if not Path(path).is_file():
            raise ModelError(f"{path}: no such .tflite file")
        if Path(path).resolve() not in {p.resolve() for p in tflites}:
            tflites.append(Path(path))
    return (Path(keras_path) if keras_path else None), tflites


def export_missing(
    cfg: BenchConfig,
    keras_path: Path,
    out: Path,
    tick: Callable[[int, str], None] | None = None,
) -> list[Path]:
    """Export EXPORT_FORMATS from ``keras_path`` into ``out`` (the run directory, as
    fmnist-export does by default), the way ``fmnist-export`` would. Needs TensorFlow.
    ``tick(formats done, what now)`` hears of each format as soon as it is written."""
    from fmnist_edge.export.config import ExportConfig
    from fmnist_edge.export.exporter import export

    source = cfg.run_dir if cfg.run_dir is not None and cfg.keras_path is None else keras_path
    ecfg = ExportConfig(
        source=Path(source),
        modes=EXPORT_FORMATS,
        out=out,
        data_dir=cfg.data_dir,
        validate_samples=cfg.quick_samples if cfg.quick else None,
        seed=cfg.seed,
    )
    written: list[Any] = []

    def report(result: Any) -> None:
        written.append(result)
        now = f"{result.variant} written"
        if len(written) < len(EXPORT_FORMATS):  # the next one is converted, then validated
            now += f", now {EXPORT_FORMATS[len(written)]}"
        if tick is not None:
            tick(len(written), now)

    export(ecfg, report=report)
    return [r.path for r in written if r.path is not None]


def model_size(run_dir: Path | None, keras_model: Any | None) -> dict[str, int | None]:
    """Parameters and MACs: the run's metrics.json when it has them, else counted on the Keras
    model (train.models.describe), else unknown (a .tflite alone on a Pi)."""
    metrics = RunDir(run_dir).read_metrics() if run_dir is not None else None
    if metrics is not None and metrics.get("params") is not None:  # else count on the model
        return {"params": metrics.get("params"), "macs": metrics.get("macs")}
    if keras_model is not None:
        from fmnist_edge.train.models import describe

        info = describe(keras_model)
        return {"params": info["params"], "macs": info["macs"]}
    return {"params": None, "macs": None}


def unique_labels(models: list[ModelFile]) -> list[str]:
    """Each model's format, made unique with its file name when two files share a format."""
    fmts = [m.format for m in models]
    return [
        f if fmts.count(f) == 1 else f"{f} ({m.path.name})"
        for f, m in zip(fmts, models, strict=True)
    ]


@dataclass(frozen=True)
class EvalSet:
    """The images every model is scored and timed on."""

    images: np.ndarray  # (N, H, W[, C]) uint8
    labels: np.ndarray  # (N,) int64
    class_names: tuple[str, ...]
    source: str  # where the images came from
    sha256: dict[str, str]
    split: str  # "the official test set", "the run's test split", ...


def evaluation_set(cfg: BenchConfig, tflites: list[ModelFile]) -> EvalSet:
    """Fashion-MNIST's official test set, or for a run on its own data (--data) that run's
    test split, or its validation split when it has none."""
    from fmnist_edge.dataset.files import load_split
    from fmnist_edge.dataset.prepare import prepare, run_spec

    record = RunDir(cfg.run_dir).record() if cfg.run_dir is not None else None
    spec = run_spec(record, cfg.data_dir)
    if spec.path is None:
        own = [m for m in tflites if m.metadata and m.metadata.get("dataset")]
        if own:
            raise UsageError(
                f"{own[0].path}: a model of its own data; benchmark it with its run directory "
                "(fmnist-bench RUN), whose record names the data"
            )
        split = load_split("test", cfg.data_dir)
        labels = split.labels.astype(np.int64)
        where = "the full official test set"
        return EvalSet(split.images, labels, CLASS_NAMES, str(split.source), split.sha256, where)
    data = prepare(spec, report=False)
    name, held = ("test", data.test) if data.test is not None else ("validation", data.val)
    d = data.dataset
    sha = {**d.sha256, **({"content": d.content_sha256} if d.content_sha256 else {})}
    return EvalSet(
        np.asarray(held.images),
        np.asarray(held.labels, np.int64),
        d.class_names,
        d.source,
        sha,
        f"the run's {name} split",
    )


def input_dtype(m: ModelFile) -> str | None:
    if m.is_keras:
        return "float32"
    return ((m.metadata or {}).get("quantization") or {}).get("input", {}).get("dtype")


def format_order(m: ModelFile) -> tuple[int, str]:
    """Sort key: FORMATS order, then file name (unknown formats last)."""
    rank = FORMATS.index(m.format) if m.format in FORMATS else len(FORMATS)
    return rank, m.path.name
