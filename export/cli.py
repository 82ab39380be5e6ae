"""fmnist-export: parse options, build an ExportConfig, call export(), print one line per mode."""

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
    threads_option,
)
from fmnist_edge.common.nativelog import native_stderr_captured

from .config import CALIBRATION_SAMPLES, INT8_IO, MODES, TARGETS, ExportConfig


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("source", type=click.Path(path_type=Path))
@click.option(
    "--quantize",
    "modes",
    type=click.Choice([*MODES, "all"]),
    multiple=True,
    default=("int8",),
    show_default=True,
    help="Conversion mode; repeat for several, 'all' for every one.",
)
@click.option(
    "--int8-io",
    type=click.Choice(INT8_IO),
    default="int8",
    show_default=True,
    help="Input/output tensor dtype of the int8 model.",
)
@click.option(
    "--keep-softmax",
    is_flag=True,
    help="Keep the final softmax inside the .tflite. By default the file outputs the logits "
    "and the runtime applies softmax: exact on every CPU and finer than int8 probabilities.",
)
@click.option(
    "--target",
    "targets",
    type=click.Choice(TARGETS),
    multiple=True,
    help="Also write {name}-mediapipe.tflite beside each file: RGB uint8 in, probabilities "
    "out, for MediaPipe Tasks' ImageClassifier and the TFLite Task Library.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="A .tflite file (one mode) or a folder [default: beside the model, "
    "named {arch}-{mode}.tflite].",
)
@click.option(
    "--calibration-samples",
    type=int,
    default=None,
    help="Representative images for int8, stratified by class, from the images the run "
    f"trained on [default: {CALIBRATION_SAMPLES}, or all of a smaller set].",
)
@click.option(
    "--validate-samples",
    type=int,
    default=None,
    help="Held-out images to score each file on: the run's validation part, or the "
    "test split for a run trained on every image [default: all of them].",
)
@click.option(
    "--max-drop",
    type=float,
    default=None,
    metavar="PP",
    help="Fail (exit 1, no file kept) when accuracy drops by more percentage points.",
)
@click.option("--force", is_flag=True, help="Overwrite existing .tflite files.")
@seed_option
@data_dir_option
@threads_option
@debug_option
@handle_errors
def main(source: Path, modes: tuple[str, ...], debug: bool, **options) -> None:
    """Convert a trained model (a run directory or a .keras file) to validated, self-describing
    .tflite files: float32, float16, int8 (full-integer) or dynamic-range."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow's first import
    route_logging("fmnist", logging.INFO)  # fmnist.export's steps, fmnist.data's downloads
    from .exporter import export

    cfg = ExportConfig(source=source, modes=modes, **options)
    with contextlib.nullcontext() if debug else native_stderr_captured():  # TF's C++ notices
        export(cfg, report=lambda result: click.echo(result.line()))


if __name__ == "__main__":
    main()
