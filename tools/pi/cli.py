"""tools/pi/check.sh: parse options, build an Arm64Config, run the emulated-Pi check,
print the summary, exit 0 (pass), 1 (a mismatch or a failed check) or 2 (it could not run)."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import click

from fmnist_edge.common.cli import data_dir_option, debug_option, handle_errors, model_option
from fmnist_edge.common.fileio import atomic_write_json

from .check import RUNTIMES, Arm64Config, default_cache_dir, run_check, summary
from .rootfs import PI_CPUS


def _terminated(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM cleans up like Ctrl-C: guest processes, work directory


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@model_option
@click.option(
    "--cpu",
    type=click.Choice(sorted(PI_CPUS)),
    default="pi4",
    show_default=True,
    help="pi4: QEMU_CPU=cortex-a72; pi5: cortex-a76 (each with that Pi's /proc/cpuinfo).",
)
@click.option(
    "--images",
    type=click.IntRange(min=1),
    default=256,
    show_default=True,
    help="Official test images, spread evenly over the test split.",
)
@click.option(
    "--photos",
    type=click.IntRange(min=0),
    default=8,
    show_default=True,
    help="Of those, also made into product-photo JPEGs (photo mode).",
)
@click.option(
    "--runtime",
    "runtimes",
    type=click.Choice(RUNTIMES),
    multiple=True,
    help="Runtime to install and check on the Pi (repeatable; default: both).",
)
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Rootfs tarball, extracted rootfs, wheels [default: $FMNIST_CACHE/arm64, "
    "FMNIST_CACHE defaulting to /var/cache/fmnist-edge].",
)
@data_dir_option
@click.option(
    "--mirror", default=Arm64Config.mirror, show_default=True, help="Debian mirror for debootstrap."
)
@click.option("--keep", is_flag=True, help="Keep the work directory (venvs, images, outputs).")
@click.option(
    "--report",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the result as JSON.",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=click.IntRange(min=1),
    default=1800,
    show_default=True,
    help="Seconds allowed per emulated command.",
)
@debug_option
@handle_errors
def main(
    model: str | None,
    runtimes: tuple[str, ...],
    cache_dir: Path | None,
    report: Path | None,
    debug: bool,
    **options,
) -> None:
    """Install fmnist-edge on an emulated Raspberry Pi (arm64 Bookworm, Python 3.11) and check
    that fmnist-infer and the Python API give the host's answers, per runtime."""
    cfg = Arm64Config(
        model=Path(model) if model else None,
        runtimes=runtimes or RUNTIMES,
        cache_dir=cache_dir or default_cache_dir(),
        report=report,
        **options,
    )
    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        result = run_check(cfg)
    finally:
        signal.signal(signal.SIGTERM, previous)
    click.echo(summary(result))
    if report:
        report.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(report, result.to_json())
    if not result.ok:
        sys.exit(1)


if __name__ == "__main__":
    main(prog_name="tools/pi/check.sh")
