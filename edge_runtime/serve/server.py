"""Run the app on uvicorn: timeouts for slow clients, a connection limit, a graceful SIGTERM.

Slow clients: uvicorn closes idle keep-alive connections (``keep_alive``) and caps header size,
but it waits forever for a request head that never completes; ``_with_head_timeout`` closes a
connection that has not sent a whole head ``header_timeout`` seconds after connecting or after
its last response. The body has its own deadline in the app (408). Beyond ``max_connections``
uvicorn answers 503. On SIGTERM (systemd's stop) uvicorn stops accepting, lets the requests in
flight finish (up to ``graceful_timeout`` s), and the process exits 0 (Ctrl-C too).

The listening sockets are bound here, before uvicorn starts, so that a busy port or a host that
is not this machine's is one line of ours (UsageError) rather than uvicorn's log and exit 3.
"""

from __future__ import annotations

import errno
import logging
import signal
import socket
import threading
import warnings
from collections.abc import Callable
from typing import Any

import uvicorn
from PIL import Image

from fmnist_edge.common.errors import UsageError

from .app import build_app
from .metrics import Metrics
from .settings import ServeSettings, check_settings
from .workers import ClassifierPool

log = logging.getLogger("fmnist_edge.edge_runtime.serve")
MAX_HEAD_BYTES = 16 * 1024  # request line and headers


def _with_head_timeout(base: type, seconds: float) -> type:
    """``base`` (uvicorn's h11 or httptools protocol) closing connections whose request head
    has not arrived ``seconds`` after connecting or after the previous response."""

    class HeadTimeoutProtocol(base):  # type: ignore[misc, valid-type]
        _head_timer = None

        def _arm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
            waiting_after = self.cycle  # a new request replaces it

            def expire() -> None:
                if self.cycle is waiting_after and not self.transport.is_closing():
                    self.transport.close()

            self._head_timer = self.loop.call_later(seconds, expire)

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
            super().connection_lost(exc)

    return HeadTimeoutProtocol


def http_parser(http: str = "auto") -> str:
    """The parser ``http`` ("auto", "httptools", "h11") means here: auto is httptools when it
    is installed (the [serve] extra has it), else the pure-Python h11. UsageError when
    httptools is asked for and missing."""
    if http == "h11":
        return "h11"
    try:
        import httptools  # noqa: F401
    except ImportError:
        if http == "httptools":
            msg = "--http httptools: httptools is not installed (pip install httptools)"
            raise UsageError(msg) from None
        return "h11"
    return "httptools"


def http_protocol(http: str, header_timeout: float) -> type:
    """uvicorn's protocol class for parser ``http``, closing slow heads after the timeout."""
    if http_parser(http) == "httptools":
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as base
    else:
        from uvicorn.protocols.http.h11_impl import H11Protocol as base
    return _with_head_timeout(base, header_timeout)


class _Server(uvicorn.Server):
    """uvicorn.Server that reports the address it really listens on (``--port 0``)."""

    def __init__(self, config: uvicorn.Config, on_ready: Callable[[str], None] | None):
        super().__init__(config)
        self.on_ready = on_ready

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        if self.started and self.on_ready is not None:
            host, port = self.servers[0].sockets[0].getsockname()[:2]
            self.on_ready(f"http://{f'[{host}]' if ':' in host else host}:{port}")


def listen(host: str, port: int) -> list[socket.socket]:
    """Sockets bound to every address ``host`` resolves to (as asyncio's create_server binds
    them), for uvicorn to serve. UsageError naming the address and what to do when it cannot."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise UsageError(
            f"--host {host}: not an address of this machine or a name it can resolve "
            f"({exc.strerror}); give an IP address, such as 127.0.0.1 or 0.0.0.0"
        ) from None
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:  # an IPv6 socket must not also take the IPv4 one
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise UsageError(_bind_error(where, exc)) from None
    return sockets


def _bind_error(where: str, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return (
            f"{where}: the port is already in use (another fmnist-serve?); "
            "choose another --port, or --port 0 for any free one"
        )
    if exc.errno == errno.EACCES:
        return f"{where}: permission denied (ports below 1024 need root); choose --port 1024 or up"
    if exc.errno == errno.EADDRNOTAVAIL:
        return (
            f"{where}: not an address of this machine; give one of its own as --host, "
            "or 0.0.0.0 for all of them"
        )
    return f"{where}: cannot listen there ({exc.strerror or exc})"


def _exit_cleanly(signum: int, frame: Any) -> None:
    raise SystemExit(0)


def uvicorn_config(settings: ServeSettings, app: Any) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        http=http_protocol(settings.http, settings.header_timeout),
        lifespan="off",
        access_log=settings.access_log,
        log_level="info",
        server_header=False,
        proxy_headers=False,  # the client's address is the socket's, never a header's
        timeout_keep_alive=settings.keep_alive,
        timeout_graceful_shutdown=settings.graceful_timeout,
        limit_concurrency=settings.max_connections,
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
    )


def serve(
    settings: ServeSettings,
    pool: ClassifierPool | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve ``pool`` (built from ``settings`` when None) until SIGTERM or SIGINT, then close
    it. ``on_ready`` gets the URL once the socket listens. Raises UsageError or ModelError
    before listening when the settings, the address or the model are wrong."""
    check_settings(settings)
    # open_image_bytes turns Pillow's bomb warning into an error inside warnings.catch_warnings,
    # which swaps a process-wide filter list; with workers in threads, another thread may
    # restore the list mid-decode. Setting the same filter for the whole process keeps every
    # list they restore strict.
    warnings.simplefilter("error", Image.DecompressionBombWarning)
    pool = pool or ClassifierPool(settings)
    try:
        sockets = listen(settings.host, settings.port)
        server = _Server(uvicorn_config(settings, build_app(settings, pool, Metrics())), on_ready)
        if threading.current_thread() is threading.main_thread():
            # uvicorn drains, then re-raises the signal it caught: let it end in exit 0
            signal.signal(signal.SIGTERM, _exit_cleanly)
            signal.signal(signal.SIGINT, _exit_cleanly)
        server.run(sockets=sockets)  # uvicorn closes them when it stops
    finally:
        pool.close()
