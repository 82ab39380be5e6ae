"""fmnist-train: fit a residual CNN on Fashion-MNIST and write a run directory."""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from fmnist_edge.common.cli import (
    data_dir_option,
    debug_option,
    handle_errors,
    route_logging,
    seed_option,
)
from fmnist_edge.common.errors import Interrupted, UsageError
from fmnist_edge.common.machine import prefer_onednn
from fmnist_edge.common.nativelog import native_stderr_captured
from fmnist_edge.dataset import locate
from fmnist_edge.dataset.sources import list_source

from .config import OPTIMIZERS, TrainConfig, read_run_state
from .recipes import RECIPES, recipe_settings

# Settings a resumed run may change: how long it trains, and how it runs on this machine.
RESUME_MAY_CHANGE = frozenset({"epochs", "mixed_precision", "distribute", "data_dir"})


def _default_out(arch: str) -> Path:
    return Path("runs") / f"{arch}-{time.strftime('%Y%m%d-%H%M%S')}"


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _show(value: Any) -> str:
    return "on" if value is True else "off" if value is False else str(value)


def resolve_settings(
    given: dict[str, Any], out: Path | None, recipe: str | None, resume: bool
) -> TrainConfig:
    """The run's settings: TrainConfig's defaults, then the recipe (its warm-up scaled to a run
    shorter than it), then the flags the user gave.

    With ``resume`` the run directory is the single source instead: its recorded settings are
    taken whole, --epochs (and how to run: --mixed-precision, --distribute, --data-dir) may
    change, and any other flag that contradicts the run is refused, naming both values.
    """
    if not resume:
        settings = {**recipe_settings(recipe, given), "recipe": recipe}
        out = out or _default_out(settings.get("arch", TrainConfig.arch))
        return TrainConfig(**settings, out=out)
    if out is None:
        raise UsageError("--resume needs --out, the run directory to continue")
    recorded = read_run_state(out).get("config")
    if recorded is None:  # a run from before settings were recorded: the flags as given
        return TrainConfig(**given, recipe=recipe, out=out, resume=True)
    recorded.pop("out", None)
    if recipe is not None and recipe != recorded.get("recipe"):
        raise UsageError(f"--resume: {out} was trained with --recipe {recorded.get('recipe')}")
    for name, value in given.items():
        if name not in RESUME_MAY_CHANGE and value != recorded.get(name):
            raise UsageError(
                f"--resume: {out} was trained with {_flag(name)} {_show(recorded.get(name))}, "
                f"not {_show(value)}; leave the flag out or start a new --out"
            )
    return TrainConfig(**{**recorded, **given}, out=out, resume=True)


def _interrupted(out: Path) -> str:
    """What Ctrl-C kept, and the command that continues it."""
    try:
        epoch = read_run_state(out)["epoch"]
    except (UsageError, OSError, ValueError, KeyError):
        return "interrupted before the first epoch ended; nothing was kept"
    return f"interrupted after epoch {epoch}; continue with: fmnist-train --out {out} --resume"


def list_archs(image_size: int | None = None, color: str | None = None) -> None:
    """Each architecture's parameters and MACs, for Fashion-MNIST's 28x28 gray images or for
    --image-size / --color (10 classes)."""
    from .archs import ARCHS
    from .models import build_model, describe

    side = image_size or 28
    shape = (side, side, 3 if color in ("rgb",) else 1)
    if image_size or color:
        click.echo(f"for {side}x{side} {'rgb' if shape[2] == 3 else 'gray'} images:")
    for name, spec in ARCHS.items():
        d = describe(build_model(name, input_shape=shape))
        macs = d["macs"] / 1e6
        click.echo(f"{name:12} {d['params']:>11,} params {macs:8.1f}M MACs  {spec.summary}")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--recipe",
    type=click.Choice(sorted(RECIPES)),
    default=None,
    help="Named settings: 'edge' is the published small-ResNet recipe (docs/training.md).",
)
@click.option("--arch", default="miniresnet", show_default=True, help="Model architecture.")
@click.option("--epochs", type=int, default=50, show_default=True)
@click.option("--batch-size", type=int, default=128, show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True, help="(Peak) learning rate.")
@click.option(
    "--optimizer",
    type=click.Choice(OPTIMIZERS),
    default="adam",
    show_default=True,
    help="sgd uses Nesterov momentum.",
)
@click.option("--momentum", type=float, default=0.9, show_default=True, help="SGD momentum.")
@click.option(
    "--weight-decay",
    type=float,
    default=0.0,
    show_default=True,
    help="Decoupled: w -= lr * wd * w every step.",
)
@click.option("--label-smoothing", type=float, default=0.0, show_default=True)
@seed_option
@click.option("--augment", is_flag=True, help="Shorthand for --flip --crop-pad 2.")
@click.option("--flip", is_flag=True, help="Random horizontal flips.")
@click.option("--crop-pad", type=int, default=0, show_default=True, help="Random crops, px.")
@click.option(
    "--erase", type=float, default=0.0, show_default=True, help="Random erasing probability."
)
@click.option("--cosine", is_flag=True, help="Cosine learning-rate decay, not ReduceLROnPlateau.")
@click.option("--warmup", type=float, default=0.0, show_default=True, help="Warm-up epochs.")
@click.option("--ema", type=float, default=0.0, show_default=True, help="Weight EMA momentum.")
@click.option(
    "--bn-images",
    type=int,
    default=TrainConfig.bn_images,
    show_default=True,
    help="BatchNorm statistics re-estimated from this many training images before each "
    "validation and save; 0 keeps Keras' moving averages (wrong for short runs).",
)
@click.option(
    "--val-fraction",
    type=float,
    default=0.2,
    show_default=True,
    help="Validation share of the 60,000; 0 trains on all and keeps the last epoch.",
)
@click.option("--limit", type=int, default=None, help="Use only the first N samples per split.")
@data_dir_option
@click.option(
    "--data",
    type=click.Path(),
    default=None,
    help="Your own images: a folder of class folders, a train/ val/ test/ folder, a CSV of "
    "image,label, or a folder of IDX files (default: Fashion-MNIST).",
)
@click.option(
    "--image-size",
    type=int,
    default=None,
    help="With --data: square side in pixels (default: from the images, 16-64).",
)
@click.option(
    "--color",
    type=click.Choice(["gray", "rgb"]),
    default=None,
    help="With --data: the model's colour (default: gray when every image is gray).",
)
@click.option("--skip-bad", is_flag=True, help="With --data: skip unreadable images, counted.")
@click.option(
    "--drop-leaks",
    is_flag=True,
    help="Remove training images that are also validation or test images.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Run directory (default: runs/ARCH-TIMESTAMP).",
)
@click.option("--resume", is_flag=True, help="Continue (or extend) the run in --out.")
@click.option(
    "--mixed-precision/--no-mixed-precision",
    default=None,
    help="float16 compute (default: on with a GPU, off on a CPU).",
)
@click.option("--distribute", is_flag=True, help="Data-parallel over all local GPUs/devices.")
@click.option(
    "--list-archs",
    is_flag=True,
    help="List architectures with params and MACs (at --image-size / --color if given).",
)
@debug_option
@handle_errors
@click.pass_context
def main(
    ctx: click.Context,
    debug: bool = False,
    out: Path | None = None,
    recipe: str | None = None,
    resume: bool = False,
    **options,
) -> None:
    """Train a residual CNN on Fashion-MNIST (the notebook's recipe by default), or on your
    own labelled images with --data."""
    route_logging("fmnist", logging.INFO)  # fmnist.train and fmnist.data (downloads)
    prefer_onednn()  # before TensorFlow's import, below
    quiet = contextlib.nullcontext if debug else native_stderr_captured  # TF's C++ notices
    if options.pop("list_archs"):
        with quiet():
            list_archs(options.get("image_size"), options.get("color"))
        return
    from .archs import ARCHS

    given = {
        k: v
        for k, v in options.items()
        if ctx.get_parameter_source(k) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
    }
    if given.get("color") == "gray":  # the flag's word for the record's
        given["color"] = "grayscale"
    if given.get("arch", "miniresnet") not in ARCHS:  # fail before the 4 s TensorFlow import
        raise UsageError(f"unknown --arch {given['arch']!r}; choose from {', '.join(ARCHS)}")
    cfg = resolve_settings(given, out, recipe, resume)
    if cfg.data is not None:  # a data problem is said before TensorFlow's 4 s import
        list_source(cfg.data)
    elif not resume or given.get("data_dir"):
        for split in ("train", "test"):
            locate(split, cfg.data_dir)
    try:
        with quiet():
            from .trainer import train

            metrics = train(cfg)
    except KeyboardInterrupt:
        raise Interrupted(_interrupted(cfg.out)) from None
    first = "test" if "test_accuracy" in metrics else "val"  # own data may have no test split
    val = (
        f"val {metrics['val_accuracy']:.4f}, "
        if first == "test" and "val_accuracy" in metrics
        else ""
    )
    click.echo(
        f"{cfg.out}: {first} accuracy {metrics[first + '_accuracy']:.4f} "
        f"({val}model.keras: {metrics['selection']})"
    )


if __name__ == "__main__":
    main()
