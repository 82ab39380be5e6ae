"""Run the app on uvicorn: a bounded request head, timeouts for slow clients, a connection
limit, JSON refusals for all of it, and a graceful SIGTERM (or SIGHUP).

uvicorn's protocols (httptools or h11) are subclassed here (``http_protocol``):
- a request head is bounded for both parsers (httptools has no limit of its own): bytes arriving
  while no body is expected count towards the next head, and past ``max_head`` the parser is fed
  no more: 431, JSON, and the connection closes. Memory stays flat however long the line;
- a connection that has not sent a whole head ``header_timeout`` seconds after connecting or
  after its last response is closed (uvicorn would wait forever);
- malformed HTTP gets a JSON 400 and more than ``max_connections`` at once a JSON 503 with
  Retry-After, instead of uvicorn's plain text; /metrics counts both.
The body has its own deadline in the app (408). Warnings from the parsers and Pillow go through
a WarningTally (tally.py): logged once per kind, counted. On SIGTERM (systemd's stop), SIGHUP
(its reload, a closed terminal) or Ctrl-C uvicorn stops accepting, lets the requests in flight
finish (up to ``graceful_timeout`` s; the rest get a JSON 503) and the process exits 0. SIGUSR1
(log rotation's habit) is ignored: the log is stderr, there is nothing to reopen.

The listening sockets are bound here, before uvicorn starts, so that a busy port or a host that
is not this machine's is one line of ours (UsageError) rather than uvicorn's log and exit 3.
"""

from __future__ import annotations

import ctypes
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

from .app import build_app, refusal_app, refusal_bytes
from .metrics import Metrics
from .settings import ServeSettings, check_settings
from .tally import WarningTally
from .uploads import Problem
from .workers import ClassifierPool

log = logging.getLogger("fmnist_edge.edge_runtime.serve")
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter (malloc.h)


def _protocol(base: type, settings: ServeSettings, metrics: Metrics, tally: WarningTally) -> type:
    """``base`` (uvicorn's h11 or httptools protocol) with a bounded head, a head timeout, and
    JSON refusals for malformed HTTP and for connections over the limit."""
    seconds, max_head, limit = settings.header_timeout, settings.max_head, settings.max_connections
    too_large = Problem(431, "head_too_large", f"the request head is over {max_head:,} bytes")
    busy = Problem(503, "busy", f"more than {limit:,} connections at once: try again shortly")

    class Protocol(base):  # type: ignore[misc, valid-type]
        _head_timer = None
        _head_bytes = 0  # of the head being received
        _counted = None  # the request after which those bytes are counted (None: the first)

        def __init__(self, *args: Any, **kwargs: Any):
            super().__init__(*args, **kwargs)
            self.limit_concurrency = None  # uvicorn's 503 is plain text: _admit answers it
            self._app, self.app = self.app, self._admit

        async def _admit(self, scope: dict, receive: Any, send: Any) -> None:
            # this connection and this request's task are among those counted
            if len(self.connections) > limit or len(self.tasks) > limit:
                tally.note("busy", busy.message)
                await refusal_app(busy, metrics)(scope, receive, send)
            else:
                await self._app(scope, receive, send)

        def _refuse(self, problem: Problem) -> None:
            if not self.transport.is_closing():
                self.transport.write(refusal_bytes(problem))
                self.transport.close()
                metrics.observe("other", problem.status, 0.0, problem.kind)

        def send_400_response(self, msg: str) -> None:  # uvicorn's, for what fails to parse
            self._refuse(Problem(400, "bad_http", "not a valid HTTP/1.1 request"))

        def data_received(self, data: bytes) -> None:
            cycle = self.cycle
            if cycle is not None and cycle.more_body and not cycle.response_complete:
                super().data_received(data)  # a body: bounded by the app (--max-body)
                return
            if cycle is not self._counted:  # a new head begins after this request
                self._counted, self._head_bytes = cycle, 0
            room = max_head - self._head_bytes
            if len(data) <= room:
                self._head_bytes += len(data)
                super().data_received(data)
                return
            self._head_bytes = max_head
            super().data_received(data[:room])
            if self.cycle is not cycle and not self.transport.is_closing():
                self.data_received(data[room:])  # the head ended in time: the rest follows it
            else:
                self._refuse(too_large)

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

    return Protocol


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


def http_protocol(settings: ServeSettings, metrics: Metrics, tally: WarningTally) -> type:
    """uvicorn's protocol class for parser ``settings.http``, bounded as ``_protocol`` says."""
    if http_parser(settings.http) == "httptools":
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as base
    else:
        from uvicorn.protocols.http.h11_impl import H11Protocol as base
    return _protocol(base, settings, metrics, tally)


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


def _give_back_freed_memory() -> None:
    """glibc raises its mmap threshold to the size of each large block freed (up to 32 MiB);
    after that, decoders' buffers come from heaps it never gives back, and RSS stays at its
    high-water mark. A fixed 1 MiB threshold (what MALLOC_MMAP_THRESHOLD_=1048576 sets) maps
    every large block on its own and returns it when freed. Not glibc: nothing to do."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, 1 << 20)


def _exit_cleanly(signum: int, frame: Any) -> None:
    raise SystemExit(0)


def _ignore(signum: int, frame: Any) -> None:
    log.info("%s ignored: the log is stderr, nothing to reopen", signal.Signals(signum).name)


def uvicorn_config(
    settings: ServeSettings, app: Any, metrics: Metrics, tally: WarningTally
) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        http=http_protocol(settings, metrics, tally),
        lifespan="off",
        access_log=settings.access_log,
        log_level="info",
        server_header=False,
        proxy_headers=False,  # the client's address is the socket's, never a header's
        timeout_keep_alive=settings.keep_alive,
        timeout_graceful_shutdown=settings.graceful_timeout,
        limit_concurrency=None,  # the protocol refuses beyond settings.max_connections
        h11_max_incomplete_event_size=2 * settings.max_head,  # the protocol refuses first
    )


def serve(
    settings: ServeSettings,
    pool: ClassifierPool | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve ``pool`` (built from ``settings`` when None) until SIGTERM, SIGHUP or SIGINT, then
    close it. ``on_ready`` gets the URL once the socket listens. Raises UsageError or
    ModelError before listening when the settings, the address or the model are wrong."""
    check_settings(settings)
    _give_back_freed_memory()
    tally = WarningTally(log)
    tally.install()  # the process is ours: every warning goes through the tally
    # decode.py turns Pillow's bomb warning into an error inside warnings.catch_warnings,
    # which swaps a process-wide filter list; with workers in threads, another thread may
    # restore the list mid-decode. Setting the same filter for the whole process keeps every
    # list they restore strict.
    warnings.simplefilter("error", Image.DecompressionBombWarning)
    pool = pool or ClassifierPool(settings)
    metrics = Metrics(warnings=tally)
    try:
        sockets = listen(settings.host, settings.port)
        config = uvicorn_config(settings, build_app(settings, pool, metrics), metrics, tally)
        server = _Server(config, on_ready)
        tasks = server.server_state.tasks  # a request's task, from its head parsed to its end
        pool.requests_held = lambda: len(tasks)
        if threading.current_thread() is threading.main_thread():
            # uvicorn drains, then re-raises the signal it caught: let it end in exit 0
            signal.signal(signal.SIGTERM, _exit_cleanly)
            signal.signal(signal.SIGINT, _exit_cleanly)
            # systemd's reload and a closed terminal send SIGHUP: drain and stop, as SIGTERM
            signal.signal(signal.SIGHUP, lambda n, frame: server.handle_exit(signal.SIGTERM, frame))
            signal.signal(signal.SIGUSR1, _ignore)
        server.run(sockets=sockets)  # uvicorn closes them when it stops
    finally:
        pool.close()
        summary = tally.summary()
        if summary:
            log.info("%s", summary)
