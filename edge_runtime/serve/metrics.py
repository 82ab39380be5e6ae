"""Counters and latency for GET /metrics, in Prometheus' text exposition format (version 0.0.4).

Updated only from the event loop (the ASGI middleware, the protocol's refusals), so no lock is
needed; the warnings' tally has its own. Latency percentiles are over the last ``window``
classify requests; sum and count over all of them.
"""

from __future__ import annotations

import time
from collections import Counter, deque

from .tally import WarningTally

PREFIX = "fmnist_serve"
QUANTILES = (0.5, 0.9, 0.99)
# Every kind a response can carry, so each series exists (at 0) before its first error.
ERROR_KINDS = (
    "empty",
    "not_image",
    "unsupported_format",
    "truncated",
    "bomb",
    "too_many_pixels",
    "out_of_memory",
    "bad_image",
    "too_large",
    "too_many_images",
    "bad_mode",
    "bad_top_k",
    "bad_request",
    "bad_http",
    "head_too_large",
    "no_image",
    "timeout",
    "disconnected",
    "unauthorized",
    "bad_host",
    "not_found",
    "method_not_allowed",
    "busy",
    "shutting_down",
    "internal",
)


def _quantile(ordered: list[float], q: float) -> float:
    """Nearest-rank quantile of an ascending list (NaN when empty, as Prometheus expects)."""
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def _number(value: float) -> str:
    return "NaN" if value != value else f"{value:.6f}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    def __init__(self, window: int = 10_000, warnings: WarningTally | None = None):
        self.warnings = warnings  # decoders' and parsers' warnings, counted by kind
        self.started = time.monotonic()
        self.requests: Counter[tuple[str, int]] = Counter()  # (path, status) -> count
        self.errors: Counter[str] = Counter({kind: 0 for kind in ERROR_KINDS})
        self.images = 0  # images classified
        self.in_flight = 0
        self.latency: deque[float] = deque(maxlen=window)  # seconds, /v1/classify only
        self.latency_sum = 0.0
        self.latency_count = 0

    def observe(self, path: str, status: int, seconds: float, error: str | None) -> None:
        """One finished request; ``path`` is an endpoint's template (api.path_label)."""
        self.requests[(path, status)] += 1
        if error is not None:
            self.errors[error] += 1
        if path == "/v1/classify":
            self.latency.append(seconds)
            self.latency_sum += seconds
            self.latency_count += 1

    def render(self, model: dict, ran: Counter[str] | None = None) -> str:
        """The text /metrics returns; ``ran``: the pool's jobs by where they ran."""
        p = PREFIX
        lines = [
            f"# HELP {p}_requests_total HTTP requests answered, by path and status.",
            f"# TYPE {p}_requests_total counter",
        ]
        for (path, status), n in sorted(self.requests.items()):
            lines.append(f'{p}_requests_total{{path="{path}",code="{status}"}} {n}')
        lines += [
            f"# HELP {p}_errors_total Requests refused or failed, by kind.",
            f"# TYPE {p}_errors_total counter",
        ]
        lines += [f'{p}_errors_total{{kind="{k}"}} {n}' for k, n in sorted(self.errors.items())]
        if self.warnings is not None:
            lines += [
                f"# HELP {p}_warnings_total Warnings from decoders and parsers, by kind (the "
                "log has the first of each).",
                f"# TYPE {p}_warnings_total counter",
            ]
            counts = sorted(self.warnings.counts().items())
            lines += [f'{p}_warnings_total{{kind="{_escape(k)}"}} {n}' for k, n in counts]
        ordered = sorted(self.latency)
        lines += [
            f"# HELP {p}_classify_seconds Time to answer POST /v1/classify (quantiles over the "
            f"last {self.latency.maxlen} requests).",
            f"# TYPE {p}_classify_seconds summary",
        ]
        for q in QUANTILES:
            lines.append(f'{p}_classify_seconds{{quantile="{q}"}} {_number(_quantile(ordered, q))}')
        lines += [
            f"{p}_classify_seconds_sum {self.latency_sum:.6f}",
            f"{p}_classify_seconds_count {self.latency_count}",
            f"# HELP {p}_images_total Images classified.",
            f"# TYPE {p}_images_total counter",
            f"{p}_images_total {self.images}",
            f"# HELP {p}_jobs_total Requests computed, by where: on the event loop (one "
            "small image while the server held no other request) or in a worker thread.",
            f"# TYPE {p}_jobs_total counter",
            *[f'{p}_jobs_total{{where="{k}"}} {n}' for k, n in sorted((ran or {}).items())],
            f"# HELP {p}_in_flight Requests being handled now.",
            f"# TYPE {p}_in_flight gauge",
            f"{p}_in_flight {self.in_flight}",
            f"# HELP {p}_uptime_seconds Seconds since the server started.",
            f"# TYPE {p}_uptime_seconds gauge",
            f"{p}_uptime_seconds {time.monotonic() - self.started:.3f}",
            f"# HELP {p}_model_info The model being served.",
            f"# TYPE {p}_model_info gauge",
            f'{p}_model_info{{name="{_escape(model["name"])}",sha256="{model["sha256"]}",'
            f'runtime="{_escape(model["runtime"])}"}} 1',
        ]
        return "\n".join(lines) + "\n"
