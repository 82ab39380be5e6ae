"""fmnist-infer: say which piece of clothing each image shows, with a .tflite model and no
TensorFlow. Parses options, builds the interpreters (every usable core by default, as
threads.plan_threads lays them out), streams batch.classify_inputs (with --engine ray,
ray_engine.classify_on_ray), prints.

numpy, Pillow and the interpreter are imported inside ``main`` so that ``--help`` and usage
errors stay instant on a Raspberry Pi.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from pathlib import Path

import click

from fmnist_edge.common.cli import (
    debug_option,
    handle_errors,
    max_pixels_option,
    model_option,
    route_logging,
    runtime_option,
    threads_option_saying,
)
from fmnist_edge.common.errors import RuntimeUnavailable, UsageError

from .budget import DecodeLimits, parse_pixels  # standard library only, like checks
from .checks import MODES, TTA, check_top_k  # the library's own checks, without numpy

# import name -> the package that provides it, where they differ
_PACKAGES = {"PIL": "Pillow"}


def _missing_package(exc: ImportError) -> Exception:
    """A runtime package that is not installed (Pillow: numpy is a dependency, and a missing
    interpreter says so itself) as the one line a missing LiteRT gets; any other ImportError
    is a bug and stays one."""
    name = (exc.name or "").split(".")[0]
    if not name or name == "fmnist_edge":
        return exc
    package = _PACKAGES.get(name, name)
    return RuntimeUnavailable(f"{package} is not installed ({exc}): pip install {package.lower()}")


ENGINES = ("local", "ray")
FLUSH_SECONDS = 0.1  # results reach a pipe at most this late (a terminal gets each line)


def _runtime_hint(model: str | None, runtime: str) -> str | None:
    """For --verbose: the line of the last fmnist-bench of this model on this CPU when it
    measured another runtime faster than ``runtime`` (read from its cache: never measured here,
    so --verbose costs a file read and a hash of the model, about a millisecond)."""
    import importlib.util
    from importlib import resources

    from .classifier import BUNDLED_MODEL, read_model_bytes
    from .hints import find_hint

    content, _ = read_model_bytes(model)
    hint = find_hint(content)
    if hint is None:
        if runtime != "openvino" and importlib.util.find_spec("openvino") is not None:
            path = model or resources.files("fmnist_edge.edge_runtime").joinpath(BUNDLED_MODEL)
            return (
                f"hint: openvino is installed; fmnist-bench --tflite {path} --runtime "
                "ai-edge-litert --runtime openvino --out DIR measures whether it is faster here"
            )
        return None
    if hint.runtime and hint.runtime != runtime:
        return f"hint: {hint.line} (fmnist-bench, {hint.measured})"
    return None


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("images", nargs=-1, required=True, metavar="IMAGE...")
@click.option(
    "--mode",
    type=click.Choice(MODES),
    default="auto",
    show_default=True,
    help="raw: already in Fashion-MNIST form, light on dark (another size is fitted into "
    "28x28); photo: a product photo on a light background, converted as in the Fashion-MNIST "
    "paper; auto: raw for grayscale images that are 28x28 or have a dark border, photo for "
    "the rest.",
)
@click.option(
    "--top-k",
    type=int,
    default=1,
    show_default=True,
    help="How many classes to report per image (at least 1).",
)
@click.option(
    "--tta",
    type=click.Choice(TTA),
    default="none",
    show_default=True,
    help="Test-time augmentation. flip: also classify each image's mirror and average the two "
    "(twice the work; docs/results.md gives its accuracy and cost).",
)
@click.option("--json", "as_json", is_flag=True, help="JSON Lines: one object per image.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV with a header row.")
@click.option(
    "--submission",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write id,label rows (file stem, class index), the hackathon's format, as results "
    "come (into a temporary file beside it, renamed into place at the end).",
)
@max_pixels_option(DecodeLimits.max_pixels)
@model_option
@threads_option_saying(
    "Cores to use (default: every core this process may use), each with an interpreter of one "
    "thread and a worker that decodes for it."
)
@runtime_option
@click.option(
    "--engine",
    type=click.Choice(ENGINES),
    default="local",
    show_default=True,
    help="local: this machine's cores. ray: a Ray cluster, for catalogs beyond one machine "
    "(pip install 'fmnist-edge[ray]'; every path must be reachable from every node).",
)
@click.option(
    "--ray-address",
    default=None,
    metavar="ADDR",
    help="With --engine ray: the cluster to join, as ray.init takes it (auto on one of its "
    "nodes, HOST:6379, ray://HOST:10001); default: start a local Ray instance.",
)
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="Report the model, the runtime, the interpreters and threads in use, and a summary.",
)
@debug_option
@handle_errors
def main(
    images: tuple[str, ...],
    mode: str,
    top_k: int,
    tta: str,
    as_json: bool,
    as_csv: bool,
    submission: str | None,
    max_pixels: str,
    model: str | None,
    threads: int | None,
    runtime: str,
    engine: str,
    ray_address: str | None,
    verbose: bool,
    debug: bool,
) -> None:
    """Print the class of each IMAGE: `path: Label (p%)` (with the bundled model, which piece
    of clothing it shows; with a model of your own data, which of its classes).

    IMAGE is a file, a directory (its images) or a glob pattern ('imgs/*.png').
    Exit status: 0 all classified, 1 some inputs failed, 2 usage or model error.
    """
    if as_json and as_csv:
        raise UsageError("--json and --csv cannot be used together")
    check_top_k(top_k, "--top-k")
    limits = DecodeLimits(max_pixels=parse_pixels(max_pixels))
    if submission and not Path(submission).resolve().parent.is_dir():
        raise UsageError(f"--submission {submission}: its directory does not exist")
    if ray_address is not None and engine != "ray":
        raise UsageError("--ray-address needs --engine ray")
    if threads is not None and engine == "ray":
        raise UsageError("--threads is for the local engine (Ray runs an actor per CPU)")
    route_logging("fmnist_edge.edge_runtime", logging.WARNING, "warning: ")

    from fmnist_edge.common.nativelog import native_stderr_captured

    try:
        from . import fastpng
        from .batch import classify_inputs
        from .output import csv_header, csv_line, csv_row, json_line, submission_writer, text_line
        from .threads import DEFAULT_LAYOUT, InterpreterPool, plan_threads
    except ImportError as exc:
        raise _missing_package(exc) from None

    runtime_name = None if runtime == "auto" else runtime
    # openvino: one compiled model of every core's threads, shared by the workers
    layout = "threads" if runtime == "openvino" else DEFAULT_LAYOUT
    plan = plan_threads(threads if engine == "local" else 1, layout=layout)
    quiet = contextlib.nullcontext() if debug else native_stderr_captured()
    with quiet:  # the model is checked here (with Ray too): a bad one stops before any work
        pool = InterpreterPool.for_plan(plan, model, runtime=runtime_name, tta=tta)
    clf = pool.first
    say = (lambda line: click.echo(line, err=True)) if verbose else (lambda line: None)
    flip = ", flip test-time augmentation" if tta == "flip" else ""
    say(f"model {clf.name} ({clf.input_dtype} input), runtime {clf.runtime}{flip}")
    hint = _runtime_hint(model, clf.runtime.split()[0]) if verbose else None
    if hint:
        say(hint)
    if engine == "ray":
        from .ray_engine import classify_on_ray

        outcomes = classify_on_ray(
            images, model, runtime_name, tta, mode, top_k, address=ray_address, announce=say
        )
    else:
        how = clf.model.describe()
        say(f"engine local: {plan}" + (f"; {how}" if how else ""))
        say(f"decode: {fastpng.describe()}")
        outcomes = classify_inputs(pool, images, mode=mode, top_k=top_k, limits=limits)

    # Results stream: each is printed, and its submission row written to a temporary file
    # beside --submission, as it comes (memory stays flat for any number of images). The file
    # is renamed into place at the end; an error or Ctrl-C leaves nothing behind.
    rows = submission_writer(submission) if submission else contextlib.nullcontext(None)
    printing, stdout, flushed = True, sys.stdout, time.monotonic()

    def show(line: str | None) -> None:
        """Print one result (None: just flush). Lines are flushed at most FLUSH_SECONDS apart,
        not one by one: at 2,000 images a second a flush per line (click.echo's) costs the
        pipeline 1-2% of its speed. When stdout's reader has gone (`fmnist-infer dir | head`),
        stop quietly with exit 1, or, while a submission is being written, finish it unprinted."""
        nonlocal printing, flushed
        if not printing:
            return
        try:
            if line is not None:
                stdout.write(line + "\n")
            now = time.monotonic()
            if line is None or now - flushed >= FLUSH_SECONDS:
                stdout.flush()
                flushed = now
        except BrokenPipeError:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # and Python's flush
            if submission is None:
                sys.exit(1)
            printing = False

    seen = failed = 0
    with rows as add_row:
        if as_csv:
            show(csv_line(csv_header(top_k)))
        for outcome in outcomes:
            seen, failed = seen + 1, failed + (not outcome.ok)
            if add_row is not None:
                add_row(outcome)
            if as_json:
                show(json_line(outcome))
                continue
            if as_csv:
                show(csv_line(csv_row(outcome, top_k)))
            if outcome.ok and not as_csv:
                show(text_line(outcome))
            elif not outcome.ok:
                show(None)  # the results before it first, as they came
                click.echo(text_line(outcome), err=True)
        show(None)
    if verbose:
        click.echo(f"{seen - failed} classified, {failed} failed", err=True)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
