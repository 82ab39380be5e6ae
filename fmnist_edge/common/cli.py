"""Click plumbing shared by every fmnist-* command: options defined once, errors mapped once.

Only command modules (``*/cli.py``) import this; library code never imports click.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any

import click

from fmnist_edge.common.errors import FmnistError, Interrupted

debug_option = click.option(
    "--debug", is_flag=True, help="Show full tracebacks instead of one-line errors."
)
model_option = click.option(
    "--model",
    "model",
    type=click.Path(dir_okay=False),
    default=None,
    help="The .tflite model (default: the bundled int8 model).",
)


def threads_option_saying(help_text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--threads`` (an integer >= 1, default None) with a command's own help: what the threads
    are for, and what None means, differ between commands."""
    return click.option("--threads", type=click.IntRange(min=1), default=None, help=help_text)


threads_option = threads_option_saying("Interpreter threads (default: the runtime's choice).")
seed_option = click.option("--seed", type=int, default=42, show_default=True, help="Random seed.")
data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Fashion-MNIST IDX files (else $FMNIST_DATA, Keras' cache, Debian's package, download).",
)
runtime_option = click.option(
    "--runtime",
    type=click.Choice(["auto", "ai-edge-litert", "tflite-runtime", "openvino"]),
    default="auto",
    show_default=True,
    help="Runtime package: auto is the first TFLite interpreter that works (LiteRT first); "
    "openvino runs the same .tflite in OpenVINO (pip install 'fmnist-edge[openvino]'; x86: "
    "2-2.5x LiteRT's images/s on the AVX2 EPYC of docs/benchmarks.md).",
)


def max_pixels_option(default: int, what: str = "an image") -> Callable[[Any], Any]:
    """--max-pixels for fmnist-infer and fmnist-serve; ``default`` is the library's own
    (edge_runtime's DecodeLimits), ``what`` the images one budget covers."""
    return click.option(
        "--max-pixels",
        default=f"{default / 1e6:g}M",
        metavar="N",
        show_default=True,
        help=f"Most pixels {what} may decode to, read from the header before decoding (10M: "
        "10 million). A JPEG counts at the 1/2-1/8 scale it is decoded at; progressive JPEGs, "
        "TIFF, WebP and RLE BMP count more (what they cost); larger images are refused.",
    )


class _EchoHandler(logging.Handler):
    """Log records as one line each on whatever sys.stderr is at the time of the call."""

    def __init__(self, prefix: str, level: int):
        super().__init__(level)
        self.prefix = prefix

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(f"{self.prefix}{record.getMessage()}", err=True)


def route_logging(name: str, level: int = logging.INFO, prefix: str = "") -> None:
    """Show the library logger ``name``'s records from ``level`` up on stderr (once), and only
    there: TensorFlow's converter calls ``logging.info``, whose basicConfig gives the root logger
    a handler that would print every record a second time."""
    logger = logging.getLogger(name)
    logger.setLevel(min(logger.level or level, level))
    logger.propagate = False
    if not any(isinstance(h, _EchoHandler) for h in logger.handlers):
        logger.addHandler(_EchoHandler(prefix, level))


def fail(message: str, code: int) -> None:
    """Print one line on stderr and exit with ``code``."""
    click.echo(f"error: {message}", err=True)
    if code == Interrupted.exit_code:
        _silence_teardown()
    sys.exit(code)


def _silence_teardown() -> None:
    """After Ctrl-C, send descriptor 2 to /dev/null: TensorFlow's input threads, cut off in the
    middle of a batch, log their cancelled ops ("[[{{node PyFunc}}]]") as the interpreter shuts
    down, after the one line that said what was kept."""
    try:
        sys.stderr.flush()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def handle_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn FmnistError (and Ctrl-C) into one line and an exit code; tracebacks only with --debug.

    The wrapped command must accept a ``debug`` keyword (add ``@debug_option``).
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = kwargs.get("debug", False)
        try:
            return func(*args, **kwargs)
        except FmnistError as exc:
            if debug:
                traceback.print_exc()
            fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            if debug:
                traceback.print_exc()
            fail("interrupted", 130)
        except Exception as exc:  # a bug: say so in one line, with the way to see more
            if debug:
                traceback.print_exc()
                fail(f"{type(exc).__name__}: {exc}", 1)
            fail(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug)", 1)

    return wrapper
