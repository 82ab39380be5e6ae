"""fmnist-train: fit a residual CNN on Fashion-MNIST and write a run directory."""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

import click

from edge_runtime._cli import (
    data_dir_option,
    debug_option,
    handle_errors,
    route_logging,
    seed_option,
)
from edge_runtime.nativelog import native_stderr_captured


def _default_out(arch: str) -> Path:
    return Path("runs") / f"{arch}-{time.strftime('%Y%m%d-%H%M%S')}"


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--arch", default="miniresnet", show_default=True, help="Model architecture.")
@click.option("--epochs", type=int, default=50, show_default=True)
@click.option("--batch-size", type=int, default=128, show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True, help="Adam learning rate.")
@seed_option
@click.option("--augment", is_flag=True, help="Random shifts (2 px) and horizontal flips.")
@click.option("--cosine", is_flag=True, help="Cosine learning-rate decay, not ReduceLROnPlateau.")
@click.option("--limit", type=int, default=None, help="Use only the first N samples per split.")
@data_dir_option
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Run directory (default: runs/ARCH-TIMESTAMP).",
)
@click.option("--resume", is_flag=True, help="Continue the interrupted run in --out.")
@click.option(
    "--mixed-precision/--no-mixed-precision",
    default=None,
    help="float16 compute (default: on with a GPU, off on a CPU).",
)
@click.option("--distribute", is_flag=True, help="Data-parallel over all local GPUs/devices.")
@click.option("--list-archs", is_flag=True, help="List architectures with params and MACs.")
@debug_option
@handle_errors
def main(list_archs: bool, debug: bool, out: Path | None, **options) -> None:
    """Train a residual CNN on Fashion-MNIST (the notebook's recipe by default)."""
    route_logging("fmnist.train", logging.INFO)
    if list_archs:
        from .archs import ARCHS
        from .models import build_model, describe

        for name, spec in ARCHS.items():
            d = describe(build_model(name))
            click.echo(
                f"{name:12} {d['params']:>11,} params {d['macs'] / 1e6:8.1f}M MACs  {spec.summary}"
            )
        return
    from edge_runtime.errors import UsageError

    from .archs import ARCHS
    from .config import TrainConfig

    if options["arch"] not in ARCHS:  # fail before the 4 s TensorFlow import
        raise UsageError(f"unknown --arch {options['arch']!r}; choose from {', '.join(ARCHS)}")
    if options["resume"] and out is None:
        raise UsageError("--resume needs --out, the run directory to continue")
    cfg = TrainConfig(out=out or _default_out(options["arch"]), **options)
    with contextlib.nullcontext() if debug else native_stderr_captured():  # TF's C++ notices
        from .trainer import train

        metrics = train(cfg)
    click.echo(
        f"{cfg.out}: test accuracy {metrics['test_accuracy']:.4f} "
        f"(val {metrics['val_accuracy']:.4f}, best epoch {metrics['best_epoch']})"
    )


if __name__ == "__main__":
    main()
