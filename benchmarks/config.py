"""The benchmark's settings: one frozen dataclass, built by the CLI (or a test) and saved in
every report."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fmnist_edge.common.errors import UsageError
from fmnist_edge.common.machine import usable_cores

# Every runtime the benchmark knows, in report order. Keras' predict is the notebook's way;
# openvino is measured in the runtime table, beside ai-edge-litert (runtime_table.py).
RUNTIMES = ("ai-edge-litert", "tflite-runtime", "openvino", "tf.lite", "keras")
TF_RUNTIMES = ("tf.lite", "keras")  # need TensorFlow: skipped in device mode


def default_threads() -> tuple[int, ...]:
    """1 .. the cores this process may use."""
    return tuple(range(1, usable_cores() + 1))


@dataclass(frozen=True)
class BenchConfig:
    run_dir: Path | None = None  # a fmnist-train run directory: model.keras and *.tflite
    keras_path: Path | None = None  # an explicit .keras reference (overrides RUN/model.keras)
    tflite_paths: tuple[Path, ...] = ()  # explicit .tflite files (added to RUN/*.tflite)
    out_dir: Path | None = None  # the report folder (None: RUN_DIR/bench; needed without one)
    data_dir: Path | None = None  # Fashion-MNIST IDX files (None: the dataset's search)
    threads: tuple[int, ...] = field(default_factory=default_threads)  # thread counts timed
    runtimes: tuple[str, ...] = RUNTIMES  # runtimes to try; unavailable ones are reported
    quick: bool = False  # smoke run: a test subset and fewer timed runs
    quick_samples: int = 1000  # test images evaluated with --quick (else all 10,000)
    warmup: int = 10  # untimed calls before timing each (runtime, threads)
    runs: int = 200  # timed batch-1 calls per TFLite (runtime, threads)
    keras_runs: int = 100  # timed batch-1 model.predict calls (slow: ~0.2 s each for big models)
    keras_batch: int = 256  # batch size of Keras' accuracy pass
    export_missing: bool = True  # export inputs.EXPORT_FORMATS when the run has no .tflite
    litert_tool: bool = True  # cross-check with LiteRT's benchmark_litert_model
    cold_start_reps: int = 5  # fmnist-infer processes started per model (median reported)
    device: bool | None = None  # runtime-only mode without TensorFlow (None: when TF is absent)
    plots: bool = True  # write PNG plots (needs matplotlib)
    changed_samples: int = 36  # changed predictions shown in the PNG grid
    seed: int = 42  # picks the --quick subset and the sample grid
    runtime_rounds: int = 3  # interleaved rounds of the runtime table (0: no table, no limits)
    calibration_seconds: float = 1.0  # timing of each GEMM that measures the CPU's limits

    def __post_init__(self) -> None:
        if self.run_dir is None and self.keras_path is None and not self.tflite_paths:
            raise UsageError("give a RUN_DIR, --keras or --tflite")
        if self.out_dir is None:  # never a ./bench wherever the user stands (a checkout)
            if self.run_dir is None:
                raise UsageError(
                    "--out: needed without a RUN_DIR (say where the report goes, e.g. "
                    "--out /tmp/bench)"
                )
            object.__setattr__(self, "out_dir", Path(self.run_dir) / "bench")
        if not self.threads or min(self.threads) < 1:
            raise UsageError("--threads must be >= 1")
        unknown = [r for r in self.runtimes if r not in RUNTIMES]
        if unknown:
            raise UsageError(f"unknown --runtime {unknown[0]!r}; choose from {', '.join(RUNTIMES)}")
        if "openvino" in self.runtimes and "ai-edge-litert" not in self.runtimes:
            raise UsageError(
                "--runtime openvino is measured against ai-edge-litert (ratios, agreement): "
                "add --runtime ai-edge-litert"
            )
        for name in ("warmup", "runs", "keras_runs", "keras_batch", "quick_samples"):
            if getattr(self, name) < (0 if name == "warmup" else 1):
                raise UsageError(f"--{name.replace('_', '-')} must be >= 1")
        if self.cold_start_reps < 0:
            raise UsageError("--cold-start-reps must be >= 0")
        if self.runtime_rounds < 0 or self.calibration_seconds <= 0:
            raise UsageError("runtime_rounds must be >= 0 and calibration_seconds > 0")

    @classmethod
    def quick_defaults(cls, **kwargs: Any) -> BenchConfig:
        """Settings for a smoke run: a 1,000-image subset, few timed runs; ``kwargs`` win."""
        quick = dict(
            quick=True,
            warmup=3,
            runs=30,
            keras_runs=20,
            cold_start_reps=3,
            runtime_rounds=1,
            calibration_seconds=0.3,
        )
        return cls(**{**quick, **kwargs})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings, saved in report.json."""
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, Path):
                out[key] = str(value)
            elif isinstance(value, tuple):
                out[key] = [str(v) if isinstance(v, Path) else v for v in value]
        return out
