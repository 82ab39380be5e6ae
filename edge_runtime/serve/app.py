"""The ASGI app: the routes of api.ENDPOINTS, one guard in front of them, every error a JSON body.

    GET  /              the page (static/index.html): drop a photo, see the top 3
    GET  /healthz       {"status": "ok"}: always open, for systemd and monitors
    GET  /metrics       Prometheus text: requests, errors by kind, latency percentiles
    GET  /openapi.json  the OpenAPI schema of all of this (openapi.py)
    GET  /v1/model      the model's name, sha256, class names, input contract
    POST /v1/classify   a raw body or multipart ``image`` fields; ?top_k=1..10&mode=auto|raw|photo
    /v2/...             the Open Inference Protocol (KServe V2; oip.py): server and model
                        metadata, health (open), POST /v2/models/{name}/infer

The guard (``Guard``) times and counts every request, checks the bearer token (constant-time)
and, on a loopback address or with ``allow_hosts``, the Host header (so that a web page cannot
reach the server through DNS rebinding), adds security headers, and turns any exception into a
JSON 500 that the log explains: a bug answers one request badly and never stops the server; a
request cut off by a graceful shutdown that ran out gets a JSON 503. A classify request whose
client hangs up (watched once it has taken 50 ms) stops its worker before the next image and is
counted as 499. Building the app does no work beyond reading the page; the Classifiers come in
``pool``. Refusals made before a request reaches the app (a head too large, malformed HTTP, too
many connections) are built by ``refusal_bytes`` and ``refusal_app`` here, so that every answer
looks alike.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import threading
import time
import traceback
from collections.abc import Callable
from http import HTTPStatus
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from fmnist_edge import __version__
from fmnist_edge.common.errors import (
    CorruptImageError,
    ImageBombError,
    ImageError,
    ImageMemoryError,
    NotAnImageError,
    TooManyPixelsError,
    UnsupportedFormatError,
)

from .api import ENDPOINTS, OPEN_PATHS, is_oip, path_label
from .metrics import Metrics
from .oip import EXTENSIONS, HEADER_LENGTH, VERSION, encode_response, parse_request
from .openapi import build_openapi
from .settings import ServeSettings, is_loopback
from .uploads import Problem, parse_options, read_body, split_uploads
from .workers import ClassifierPool

log = logging.getLogger("fmnist_edge.edge_runtime.serve")
PAGE_POLICY = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "img-src blob: data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"cache-control", b"no-store"),
    (b"referrer-policy", b"no-referrer"),
]
_IMAGE_PROBLEMS = (  # ImageError subclass -> (status, kind); the rest: 422 bad_image
    (NotAnImageError, 415, "not_image"),
    (UnsupportedFormatError, 415, "unsupported_format"),
    (CorruptImageError, 422, "truncated"),
    (ImageBombError, 422, "bomb"),
    (TooManyPixelsError, 413, "too_many_pixels"),
    (ImageMemoryError, 503, "out_of_memory"),
)
RETRY_AFTER_S = 1  # how long a client refused as busy is told to wait
WATCH_AFTER_S = 0.05  # a classify request is watched for its client hanging up after this
_LOOPBACK_NAMES = frozenset({"localhost"})


def _problem_headers(problem: Problem, close: bool) -> dict[str, str]:
    headers = {"connection": "close"} if close else {}
    if problem.status == 401:
        headers["www-authenticate"] = 'Bearer realm="fmnist-serve"'
    if problem.kind == "busy":
        headers["retry-after"] = str(RETRY_AFTER_S)
    return headers


def _problem_body(problem: Problem, oip: bool = False) -> dict[str, Any]:
    if oip:  # the Open Inference Protocol's error: one string
        return {"error": problem.message}
    return {"error": problem.kind, "message": problem.message, "status": problem.status}


def problem_response(problem: Problem, close: bool = False, path: str = "") -> JSONResponse:
    """The JSON body of every refusal: {"error": kind, "message": one line, "status": code},
    or on the Open Inference Protocol's ``path`` {"error": one line}."""
    body = _problem_body(problem, is_oip(path))
    return JSONResponse(body, problem.status, _problem_headers(problem, close))


def refusal_bytes(problem: Problem) -> bytes:
    """A whole HTTP/1.1 response refusing a request before it reached the app (its head too
    large, or not HTTP): the same JSON and headers as ``problem_response``, then close."""
    body = json.dumps(_problem_body(problem), separators=(",", ":")).encode()
    headers = {
        "content-type": "application/json",
        "content-length": str(len(body)),
        **_problem_headers(problem, close=True),
    }
    lines = [f"HTTP/1.1 {problem.status} {HTTPStatus(problem.status).phrase}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines += [f"{name.decode()}: {value.decode()}" for name, value in _HEADERS]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def refusal_app(problem: Problem, metrics: Metrics) -> Any:
    """An ASGI app answering every request with ``problem`` (and counting it): what uvicorn
    runs instead of the app beyond ``max_connections``."""

    async def app(scope: dict, receive: Any, send: Any) -> None:
        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), *_HEADERS]}
            await send(message)

        refusal = problem_response(problem, close=True, path=scope["path"])
        await refusal(scope, receive, send_with_headers)
        metrics.observe(path_label(scope["path"]), problem.status, 0.0, problem.kind)

    return app


def _image_problem(exc: ImageError) -> Problem:
    for cls, status, kind in _IMAGE_PROBLEMS:
        if isinstance(exc, cls):
            return Problem(status, kind, str(exc))
    return Problem(422, "bad_image", str(exc))


def _host_name(value: str) -> str:
    """'127.0.0.1:8000' -> '127.0.0.1', '[::1]:80' -> '::1'."""
    if value.startswith("["):
        return value[1:].partition("]")[0]
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def _is_loopback_address(name: str) -> bool:
    """An IP literal in 127.0.0.0/8, or ::1 (a name starting with "127." is not one)."""
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


async def _compute(request: Request, start: Callable[[threading.Event], asyncio.Future]) -> Any:
    """The result of the worker job ``start(gone)``, or a Problem: 499 if the client hangs up
    (``gone`` is set then, and the worker stops), an image's own status if one is refused."""
    gone = threading.Event()
    try:
        return await _unless_gone(start(gone), request.receive, gone)
    except ImageError as exc:
        raise _image_problem(exc) from None


async def _disconnected(receive: Any) -> None:
    """Return once the client has hung up (the request's body is already read)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def _unless_gone(job: asyncio.Future, receive: Any, gone: threading.Event) -> Any:
    """``job``'s result, or Problem 499 once the client has hung up. The client is watched
    only if the job takes over WATCH_AFTER_S (most take a few ms: a watcher task each would
    cost them about 0.1 CPU ms). ``gone`` is set when this ends, however it ends, so that the
    worker stops before its next image; a job still queued is dropped."""
    loop = asyncio.get_running_loop()
    watchers: list[asyncio.Task] = []

    def hung_up(watcher: asyncio.Task) -> None:
        if not watcher.cancelled():
            gone.set()
            job.cancel()

    def watch() -> None:
        watchers.append(loop.create_task(_disconnected(receive)))
        watchers[0].add_done_callback(hung_up)

    timer = loop.call_later(WATCH_AFTER_S, watch)
    try:
        return await job
    except asyncio.CancelledError:
        if gone.is_set():  # cancelled by hung_up, not by a shutdown
            raise Problem(499, "disconnected", "the client went away before the answer") from None
        raise
    finally:
        gone.set()
        timer.cancel()
        for watcher in watchers:
            watcher.cancel()


class Guard:
    """Pure ASGI middleware in front of the routes: metrics, Host and token checks, headers,
    and the last line of defence that turns an exception into a 500."""

    def __init__(self, app: Any, settings: ServeSettings, metrics: Metrics):
        self.app, self.metrics = app, metrics
        self.token = settings.token.encode() if settings.token else None
        self.hosts = None  # names the Host header may carry besides loopback IPs; None: any
        if is_loopback(settings.host) or settings.allow_hosts:
            host = settings.host.strip("[]").lower()
            self.hosts = _LOOPBACK_NAMES | {host} | set(settings.allow_hosts)

    def _refusal(self, scope: dict) -> Problem | None:
        headers = dict(scope["headers"])
        host = headers.get(b"host")
        if self.hosts is not None and host is not None:
            name = _host_name(host.decode("latin-1").lower())
            if name not in self.hosts and not _is_loopback_address(name):
                return Problem(400, "bad_host", f"Host {name[:60]!r} is not this server's name")
        if self.token is None or scope["path"] in OPEN_PATHS:
            return None
        scheme, _, given = headers.get(b"authorization", b"").partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(given.strip(), self.token):
            return Problem(401, "unauthorized", "a valid bearer token is required")
        return None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        state = scope.setdefault("state", {})
        response = {"status": 500, "started": False}

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                response["status"], response["started"] = message["status"], True
                message = {**message, "headers": [*message.get("headers", ()), *_HEADERS]}
            await send(message)

        self.metrics.in_flight += 1
        try:
            refusal = self._refusal(scope)
            if refusal is not None:
                state["error_kind"] = refusal.kind  # and close: no body of theirs is read
                answer = problem_response(refusal, close=True, path=scope["path"])
                await answer(scope, receive, send_with_headers)
            else:
                await self.app(scope, receive, send_with_headers)
        except asyncio.CancelledError:  # a graceful shutdown ran out with this request in flight
            state["error_kind"] = "shutting_down"
            if not response["started"]:
                stop = Problem(503, "shutting_down", "the server is stopping: send it again")
                answer = problem_response(stop, close=True, path=scope["path"])
                await answer(scope, receive, send_with_headers)
        except Exception:
            # the traceback in the message itself: fmnist-serve's log handler prints messages
            log.error(
                "internal error on %s %s\n%s",
                scope.get("method"),
                scope.get("path"),
                traceback.format_exc().rstrip(),
            )
            state["error_kind"] = "internal"
            if not response["started"]:
                bug = Problem(500, "internal", "internal server error (the server log has more)")
                answer = problem_response(bug, close=True, path=scope["path"])
                await answer(scope, receive, send_with_headers)
        finally:
            self.metrics.in_flight -= 1
            elapsed = time.perf_counter() - start
            label = path_label(scope["path"])
            self.metrics.observe(label, response["status"], elapsed, state.get("error_kind"))


def build_app(settings: ServeSettings, pool: ClassifierPool, metrics: Metrics | None = None):
    """The Starlette app serving ``pool``'s model under ``settings`` (already checked)."""
    metrics = metrics or Metrics()
    page = resources.files(__package__).joinpath("static/index.html").read_bytes()

    async def index(request: Request) -> Response:
        return Response(
            page,
            media_type="text/html; charset=utf-8",
            headers={"content-security-policy": PAGE_POLICY},
        )

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "model": pool.model_name})

    async def model(request: Request) -> Response:
        return JSONResponse(pool.info)

    async def metrics_text(request: Request) -> Response:
        return PlainTextResponse(
            metrics.render(pool.info, pool.ran),
            media_type="text/plain; version=0.0.4; charset=utf-8",
        )

    async def classify(request: Request) -> Response:
        start = time.perf_counter()
        body_read = False
        try:
            mode, top_k = parse_options(request.query_params, pool.num_classes, pool.modes)
            body = await read_body(request, settings.max_body, settings.body_timeout)
            body_read = True
            uploads = split_uploads(
                body, request.headers.get("content-type", ""), settings.max_images
            )
            results = await _compute(
                request, lambda gone: pool.classify(uploads, mode, top_k, gone)
            )
        except Problem as problem:
            request.state.error_kind = problem.kind
            return problem_response(problem, close=not body_read)
        metrics.images += len(results)
        total_ms = (time.perf_counter() - start) * 1000.0
        return JSONResponse(
            results[0] if len(results) == 1 else results,
            headers={"server-timing": f"total;dur={total_ms:.3f}"},
        )

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "bad_request")
        message = {
            404: f"nothing at {request.url.path[:60]}: see / for the page, POST /v1/classify",
            405: f"{request.method} is not allowed on {request.url.path}",
        }.get(exc.status_code, str(exc.detail))
        request.state.error_kind = kind
        response = problem_response(Problem(exc.status_code, kind, message), path=request.url.path)
        response.headers.update(exc.headers or {})
        return response

    contract = pool.contract
    model_metadata = contract.metadata(pool.info["sha256"])
    schema = build_openapi(settings, pool)

    def unknown_model(request: Request) -> Problem | None:
        name, version = request.path_params["name"], request.path_params.get("version")
        if name != contract.name:
            return Problem(
                404,
                "not_found",
                f"model {name[:60]!r} is not served here: this server has {contract.name!r}",
            )
        if version not in (None, VERSION):
            return Problem(
                404, "not_found", f"model {name!r} has version {VERSION} only, not {version[:20]!r}"
            )
        return None

    async def by_name(request: Request, answer: dict[str, Any]) -> Response:
        problem = unknown_model(request)
        if problem is not None:
            request.state.error_kind = problem.kind
            return problem_response(problem, path=request.url.path)
        return JSONResponse(answer)

    async def infer(request: Request) -> Response:
        start = time.perf_counter()
        body_read = False
        try:
            problem = unknown_model(request)
            if problem is not None:
                raise problem
            body = await read_body(request, settings.max_body, settings.body_timeout)
            body_read = True
            header_length = request.headers.get(HEADER_LENGTH)
            asked = parse_request(body, header_length, contract, settings.max_images)
            probs = await _compute(request, lambda gone: pool.infer(asked, gone))
        except Problem as problem:
            request.state.error_kind = problem.kind
            return problem_response(problem, close=not body_read, path=request.url.path)
        metrics.images += asked.count
        content, json_length = encode_response(asked, contract, probs)
        headers = {"server-timing": f"total;dur={(time.perf_counter() - start) * 1000.0:.3f}"}
        if json_length is None:
            return Response(content, media_type="application/json", headers=headers)
        headers[HEADER_LENGTH] = str(json_length)
        return Response(content, media_type="application/octet-stream", headers=headers)

    def answer(body: dict[str, Any]) -> Callable:
        async def endpoint(request: Request) -> Response:
            return JSONResponse(body)

        return endpoint

    async def model_metadata_answer(request: Request) -> Response:
        return await by_name(request, model_metadata)

    async def model_ready(request: Request) -> Response:
        return await by_name(request, {"name": contract.name, "ready": True})

    server = {"name": "fmnist-serve", "version": __version__, "extensions": list(EXTENSIONS)}
    handlers = {
        "index": index,
        "healthz": healthz,
        "metrics": metrics_text,
        "openapi": answer(schema),
        "model": model,
        "classify": classify,
        "server_metadata": answer(server),
        "server_live": answer({"live": True}),
        "server_ready": answer({"ready": True}),  # the Classifiers are built before serving
        "model_metadata": model_metadata_answer,
        "model_ready": model_ready,
        "infer": infer,
    }
    routes = [
        Route(e.path, handlers[e.name.removesuffix("_version")], methods=[e.method])
        for e in ENDPOINTS
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(Guard, settings=settings, metrics=metrics)],
        exception_handlers={HTTPException: http_error},
    )
