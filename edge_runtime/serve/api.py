"""The service's endpoints as data: one table that app.py routes and openapi.py describes, so the
schema at /openapi.json cannot name a route that does not exist, or miss one that does.

Each Endpoint says its path, method, whether it is open without the token, what body it takes
and what it answers: its success media type and the statuses it can refuse with beyond those
every request can get (``COMMON``, ``GUARDED``).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

OPEN = True  # readable without the bearer token
COMMON = (400, 431, 500, 503)  # any request: bad Host or HTTP, head too large, a bug, busy
GUARDED = (401,)  # without a valid token, when the server has one
BODY = (408, 413, 499)  # a body read: too slow, too large, the client gone
IMAGES = (415, 422, 503)  # images decoded: not one, broken or a bomb, out of memory
BY_NAME = (404,)  # a model name or version in the path that is not this model's


@dataclass(frozen=True)
class Endpoint:
    name: str  # the handler's key in app.py and the schema's operationId
    path: str  # Starlette's template: {name} is one path segment
    method: str  # GET or POST
    summary: str  # one line for the schema
    ok: str  # the success answer's schema in openapi.py (its media type comes with it)
    open: bool = False  # True: no token needed (health checks, the page)
    body: str | None = None  # the request body's kind in openapi.py: classify, infer
    query: tuple[str, ...] = ()  # query parameters, described in openapi.py
    refusals: tuple[int, ...] = ()  # statuses beyond COMMON (and GUARDED unless open)

    @property
    def statuses(self) -> tuple[int, ...]:
        """Every status this endpoint answers with, success first."""
        refused = {*COMMON, *self.refusals, *(() if self.open else GUARDED)}
        return (200, *sorted(refused))


def _v2_model(suffix: str, name: str, method: str, summary: str, ok: str, **kw) -> list[Endpoint]:
    """An OIP model endpoint and its /versions/{version} form."""
    return [
        Endpoint(name, f"/v2/models/{{name}}{suffix}", method, summary, ok, **kw),
        Endpoint(
            f"{name}_version",
            f"/v2/models/{{name}}/versions/{{version}}{suffix}",
            method,
            f"{summary} (version 1, the file's only one)",
            ok,
            **kw,
        ),
    ]


# The busiest first: Starlette tries the routes in this order.
ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "classify",
        "/v1/classify",
        "POST",
        "Classify a raw body or multipart image fields",
        "classification",
        body="classify",
        query=("mode", "top_k"),
        refusals=(*BODY, *IMAGES),
    ),
    *_v2_model(
        "/infer",
        "infer",
        "POST",
        "OIP inference: pixels or image files",
        "infer",
        body="infer",
        refusals=(*BY_NAME, *BODY, *IMAGES),
    ),
    Endpoint("index", "/", "GET", "The page: drop a photo, see the top 3", "page", OPEN),
    Endpoint("healthz", "/healthz", "GET", "Liveness for systemd and monitors", "healthz", OPEN),
    Endpoint("metrics", "/metrics", "GET", "Prometheus text: requests, errors, latency", "metrics"),
    Endpoint("openapi", "/openapi.json", "GET", "This schema", "openapi"),
    Endpoint("model", "/v1/model", "GET", "The model: name, sha256, classes, input", "model"),
    Endpoint("server_metadata", "/v2", "GET", "OIP server metadata", "server_metadata"),
    Endpoint("server_live", "/v2/health/live", "GET", "OIP liveness", "live", OPEN),
    Endpoint("server_ready", "/v2/health/ready", "GET", "OIP readiness", "ready", OPEN),
    *_v2_model(
        "", "model_metadata", "GET", "OIP model metadata", "model_metadata", refusals=BY_NAME
    ),
    *_v2_model("/ready", "model_ready", "GET", "OIP model readiness", "ready", refusals=BY_NAME),
)
OPEN_PATHS = frozenset(e.path for e in ENDPOINTS if e.open)
PATHS = tuple(dict.fromkeys(e.path for e in ENDPOINTS))
_PATTERNS = [(re.compile("^" + re.sub(r"\{\w+\}", "[^/]+", p) + "$"), p) for p in PATHS]


@functools.lru_cache(maxsize=256)  # a few paths are asked for all the time
def path_label(path: str) -> str:
    """A request's path as /metrics counts it: its endpoint's template, or "other"."""
    for pattern, template in _PATTERNS:
        if pattern.match(path):
            return template
    return "other"


def is_oip(path: str) -> bool:
    """Paths of the Open Inference Protocol, whose errors are {"error": "one line"}."""
    return path == "/v2" or path.startswith("/v2/")
