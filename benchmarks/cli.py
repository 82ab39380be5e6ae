"""fmnist-bench: what each format costs in accuracy and buys in speed and size, on this machine."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import click

from fmnist_edge.common.cli import (
    data_dir_option,
    debug_option,
    handle_errors,
    route_logging,
    seed_option,
)
from fmnist_edge.common.errors import UsageError

from .config import RUNTIMES, BenchConfig, default_threads


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("run_dirs", nargs=-1, metavar="[[NAME=]RUN_DIR]...")
@click.option(
    "--keras",
    "keras_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The Keras float reference (default: RUN_DIR/model.keras).",
)
@click.option(
    "--tflite",
    "tflite_paths",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="A .tflite to measure (repeatable; added to RUN_DIR/*.tflite).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Report folder (default: RUN_DIR/bench; needed without a RUN_DIR).",
)
@click.option(
    "--results",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also lay every run's numbers out as one table in this Markdown file, between its "
    "<!-- results:begin --> and <!-- results:end --> markers (a new file is created with them; "
    "a file with text but no markers is refused before anything runs), e.g. docs/results.md.",
)
@click.option("--quick", is_flag=True, help="Smoke run: 1,000 test images, few timed runs.")
@click.option(
    "--max-threads",
    type=click.IntRange(min=1),
    default=None,
    help="Time 1..N interpreter threads (default: every usable core).",
)
@click.option(
    "--runtime",
    "runtimes",
    multiple=True,
    type=click.Choice(RUNTIMES),
    help="Only these runtimes (repeatable; default: all, unavailable ones are reported).",
)
@click.option(
    "--runs",
    type=click.IntRange(min=1),
    default=None,
    help="Timed batch-1 calls per TFLite row (default 200, 30 with --quick).",
)
@click.option(
    "--warmup",
    type=click.IntRange(min=0),
    default=None,
    help="Untimed calls before each row (default 10, 3 with --quick).",
)
@click.option(
    "--keras-runs",
    type=click.IntRange(min=1),
    default=None,
    help="Timed batch-1 Keras predict calls (default 100, 20 with --quick).",
)
@click.option(
    "--cold-start-reps",
    type=click.IntRange(min=0),
    default=None,
    help="fmnist-infer processes started per model (default 5, 3 with --quick; 0: skip).",
)
@click.option(
    "--litert-tool/--no-litert-tool",
    default=True,
    show_default=True,
    help="Cross-check with LiteRT's benchmark_litert_model.",
)
@click.option(
    "--no-export",
    is_flag=True,
    help="Don't export float32, float16, int8 .tflite files (as fmnist-export --quantize all) "
    "when a run has none.",
)
@click.option(
    "--device",
    is_flag=True,
    help="Runtime-only mode, no TensorFlow (the default when TensorFlow is not installed).",
)
@click.option("--no-plots", is_flag=True, help="Skip the PNG plots.")
@seed_option
@data_dir_option
@debug_option
@handle_errors
def main(
    run_dirs: tuple[str, ...],
    keras_path: Path | None,
    tflite_paths: tuple[Path, ...],
    out: Path | None,
    results: Path | None,
    quick: bool,
    max_threads: int | None,
    runtimes: tuple[str, ...],
    runs: int | None,
    warmup: int | None,
    keras_runs: int | None,
    cold_start_reps: int | None,
    litert_tool: bool,
    no_export: bool,
    device: bool,
    no_plots: bool,
    seed: int,
    data_dir: str | None,
    debug: bool,
) -> None:
    """Benchmark the Keras model and every .tflite of RUN_DIR: accuracy on the test set, batch-1
    latency per runtime and thread count, size, cold start. Writes report.md, report.json and
    plots to --out (default RUN_DIR/bench) and prints the summary table. A run without .tflite
    files gets float32, float16 and int8 exported into it first (see --no-export).

    Several RUN_DIRs are measured one after the other, each into its RUN_DIR/bench; NAME=
    names a run in the --results table (default: the folder's name)."""
    route_logging("fmnist.data", logging.INFO)  # a download says what it fetches
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before any TensorFlow import
    from fmnist_edge.common.nativelog import native_stderr_captured

    from .progress import Bar
    from .results import load_report, parse_spec, results_document, write_results
    from .runner import run_benchmark

    if results is not None:
        results_document(results)  # a file of prose is refused now, not after the measuring
    named = [parse_spec(spec, "RUN_DIR", plain_ok=True) for spec in run_dirs]
    if len(named) > 1 and (keras_path or tflite_paths or out):
        raise UsageError(
            "--keras, --tflite and --out need a single RUN_DIR (several: each report goes "
            "to RUN_DIR/bench)"
        )

    given = {
        "runs": runs,
        "warmup": warmup,
        "keras_runs": keras_runs,
        "cold_start_reps": cold_start_reps,
        "runtimes": runtimes or None,
        "threads": tuple(range(1, max_threads + 1)) if max_threads else None,
    }
    settings = dict(
        keras_path=keras_path,
        tflite_paths=tflite_paths,
        data_dir=Path(data_dir) if data_dir else None,
        litert_tool=litert_tool,
        export_missing=not no_export,
        device=True if device else None,
        plots=not no_plots,
        seed=seed,
        **{k: v for k, v in given.items() if v is not None},
    )
    settings.setdefault("threads", default_threads())
    make = BenchConfig.quick_defaults if quick else BenchConfig
    cfgs = [(name, make(run_dir=run_dir, out_dir=out, **settings)) for name, run_dir in named]
    cfgs = cfgs or [("bench", make(run_dir=None, out_dir=out, **settings))]
    measured = []
    for name, cfg in cfgs:
        if len(cfgs) > 1:
            click.echo(f"== {name}: {cfg.run_dir}")
        # TensorFlow's and LiteRT's C++ notices stay off the screen; the bars still reach it
        with contextlib.nullcontext() if debug else native_stderr_captured():
            report = run_benchmark(cfg, progress=Bar)
        click.echo(report.summary())
        plots = ", plots beside it" if report.data["plots"] else ""  # none with --no-plots
        click.echo(f"\nreport: {report.md_path} (and {report.json_path.name}{plots})")
        measured.append((name, load_report(report.json_path)))
    if results is not None:
        write_results(results, measured)
        click.echo(f"results table: {results}")


if __name__ == "__main__":
    main()
