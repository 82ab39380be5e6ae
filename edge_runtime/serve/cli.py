"""fmnist-serve: the classifier over HTTP, with a page to try it. Parses options, builds
ServeSettings, calls server.serve. Starlette, uvicorn and the interpreter load inside ``main``,
so --help and usage errors stay instant on a Raspberry Pi."""

from __future__ import annotations

import contextlib
import logging

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
from fmnist_edge.common.errors import UsageError

from ..budget import DecodeLimits
from .settings import HTTP_PARSERS


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@model_option
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on. Anything but loopback needs a token or --no-auth.",
)
@click.option("--port", type=int, default=8000, show_default=True, help="TCP port (0: any free).")
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="File whose first line is the bearer token clients must send "
    "(else $FMNIST_SERVE_TOKEN). Never give a token on the command line.",
)
@click.option(
    "--allow-host",
    "allow_hosts",
    multiple=True,
    metavar="NAME",
    help="A name the Host header may carry besides loopback addresses, localhost and --host "
    "(a reverse proxy's, say); repeatable. Given, the check applies on any --host.",
)
@click.option(
    "--no-auth",
    is_flag=True,
    help="Serve a non-loopback --host without a token (anyone who can reach it can use it).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Worker threads, each with its own interpreter (default: one per core, at most 4).",
)
@threads_option_saying(
    "Interpreter threads per worker (default: the usable cores shared out among the workers, "
    "at least 1 each)."
)
@runtime_option
@click.option(
    "--max-body",
    default="4M",
    show_default=True,
    help="Largest request body (bytes, or with K/M: 512K, 8M).",
)
@click.option(
    "--max-head",
    default="16K",
    metavar="SIZE",
    show_default=True,
    help="Largest request head, request line and headers (bytes, or with K: 32K); beyond: 431.",
)
@max_pixels_option(DecodeLimits.max_pixels, "the images of one request, together,")
@click.option(
    "--max-images",
    type=click.IntRange(min=1),
    default=32,
    show_default=True,
    help="Most images in one multipart request.",
)
@click.option(
    "--body-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    show_default=True,
    help="Seconds a client may take to send a body (then 408).",
)
@click.option(
    "--header-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    help="Seconds a connection may take to send a request head.",
)
@click.option(
    "--graceful-timeout",
    type=click.IntRange(min=1),
    default=15,
    show_default=True,
    help="Seconds SIGTERM waits for requests in flight.",
)
@click.option(
    "--max-connections",
    type=click.IntRange(min=1),
    default=256,
    show_default=True,
    help="Connections at once; more get 503.",
)
@click.option(
    "--http",
    type=click.Choice(HTTP_PARSERS),
    default="auto",
    show_default=True,
    help="HTTP parser: httptools (C, in the [serve] extra) or h11 (pure Python); auto takes "
    "httptools when it is installed.",
)
@click.option("--access-log", is_flag=True, help="Log one line per request.")
@debug_option
@handle_errors
def main(
    model: str | None,
    host: str,
    port: int,
    token_file: str | None,
    allow_hosts: tuple[str, ...],
    no_auth: bool,
    workers: int | None,
    threads: int | None,
    runtime: str,
    max_body: str,
    max_head: str,
    max_pixels: str,
    max_images: int,
    body_timeout: float,
    header_timeout: float,
    graceful_timeout: int,
    max_connections: int,
    http: str,
    access_log: bool,
    debug: bool,
) -> None:
    """Serve the classifier over HTTP: POST /v1/classify, GET /v1/model, /healthz, /metrics,
    and a page at / to try it with a photo; the Open Inference Protocol (KServe V2) under /v2,
    its schema at /openapi.json.

    Exit status: 0 stopped (SIGTERM, SIGHUP, Ctrl-C), 2 usage or model error.
    """
    from ..budget import parse_pixels
    from .settings import (
        ServeSettings,
        check_settings,
        default_threads,
        default_workers,
        parse_size,
        read_token,
    )

    route_logging("fmnist_edge.edge_runtime", logging.INFO)
    workers = workers or default_workers()
    settings = check_settings(
        ServeSettings(
            model=model,
            runtime=None if runtime == "auto" else runtime,
            threads=threads or default_threads(workers),
            workers=workers,
            host=host,
            port=port,
            token=read_token(token_file),
            no_auth=no_auth,
            allow_hosts=tuple(name.lower() for name in allow_hosts),
            max_body=parse_size(max_body),
            max_head=parse_size(max_head, "--max-head"),
            decode=DecodeLimits(max_pixels=parse_pixels(max_pixels)),
            max_images=max_images,
            body_timeout=body_timeout,
            header_timeout=header_timeout,
            graceful_timeout=graceful_timeout,
            max_connections=max_connections,
            access_log=access_log,
            http=http,
        )
    )
    from fmnist_edge.common.nativelog import native_stderr_captured

    try:
        from .server import http_parser, serve
        from .workers import ClassifierPool
    except ImportError as exc:  # the [serve] extra is missing
        name = exc.name or "its web packages"
        raise UsageError(f"fmnist-serve needs {name}: pip install 'fmnist-edge[serve]'") from None

    parser = http_parser(settings.http)  # a missing httptools is said before the model loads

    def ready(url: str) -> None:
        auth = "bearer token required" if settings.token else "no token"
        threads = f"{settings.threads} thread{'s' * (settings.threads > 1)} per worker"
        click.echo(
            f"fmnist-serve: listening on {url} ({auth}; {threads}, {settings.workers} workers; "
            f"{parser})",
            err=True,
        )

    quiet = contextlib.nullcontext() if debug else native_stderr_captured()
    with quiet:  # the interpreters' C++ start-up chatter
        pool = ClassifierPool(settings)
    serve(settings, pool, on_ready=ready)


if __name__ == "__main__":
    main()
