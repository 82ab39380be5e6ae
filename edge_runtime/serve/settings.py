"""What fmnist-serve serves and how: one frozen dataclass, checked before anything starts.

The bearer token never comes from the command line (``ps`` shows every argument to every user):
it is read from ``--token-file`` or from the environment variable ``FMNIST_SERVE_TOKEN``.
Listening on anything but a loopback address needs a token, or an explicit ``no_auth``.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from fmnist_edge.common.errors import UsageError
from fmnist_edge.edge_runtime.budget import DecodeLimits

log = logging.getLogger("fmnist_edge.edge_runtime")
TOKEN_ENV = "FMNIST_SERVE_TOKEN"
MIN_TOKEN_CHARS = 16
MIB = 1024 * 1024
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)(?:i?[bB])?\s*$")
_UNITS = {"": 1, "k": 1024, "m": MIB, "g": 1024 * MIB}
HTTP_PARSERS = ("auto", "httptools", "h11")  # auto: httptools when installed, else h11
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOST_NAME = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")  # lower case, as the CLI gives it


@dataclass(frozen=True)
class ServeSettings:
    model: str | None = None  # .tflite path; None: the bundled model
    runtime: str | None = None  # interpreter package; None: the first that works
    threads: int | None = None  # threads per worker; None: the runtime's (CLI: default_threads())
    workers: int = 2  # worker threads, each with its own Classifier (CLI: default_workers())
    host: str = "127.0.0.1"  # the address to listen on
    port: int = 8000  # 0: any free port
    token: str | None = field(default=None, repr=False)  # bearer token; None: no auth
    no_auth: bool = False  # the user said explicitly to serve a non-loopback address openly
    max_body: int = 4 * MIB  # bytes; larger bodies get 413 before they are read
    max_images: int = 32  # images in one multipart request
    max_head: int = 16 * 1024  # bytes of request line and headers; beyond: 431
    # what decoding may cost; its max_pixels bounds all the images of one request together
    decode: DecodeLimits = DecodeLimits()
    allow_hosts: tuple[str, ...] = ()  # Host header names accepted besides loopback and host
    body_timeout: float = 30.0  # seconds to receive a whole body, else 408
    header_timeout: float = 10.0  # seconds from connecting to a complete request head
    keep_alive: int = 5  # seconds an idle keep-alive connection stays open
    graceful_timeout: int = 15  # seconds SIGTERM waits for in-flight requests
    max_connections: int = 256  # open connections and requests at once; beyond: 503
    access_log: bool = False  # one log line per request (costs time on a Pi)
    http: str = "auto"  # HTTP parser: httptools (C) or h11 (pure Python); auto: httptools if any


def default_workers() -> int:
    """One worker per usable core, at most 4 (a Pi 4 or 5 has 4; beyond, the event loop's own
    Python work is the limit, not inference)."""
    from fmnist_edge.common.machine import usable_cores

    return max(1, min(4, usable_cores()))


def default_threads(workers: int) -> int:
    """Interpreter threads per worker: the usable cores shared out among the workers, at least
    one each (2 workers on 2 cores: 1 each; 4 on a Pi's 4: 1 each; 4 on 8 cores: 2 each)."""
    from fmnist_edge.common.machine import usable_cores

    return max(1, usable_cores() // workers)


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or the name localhost: reachable from this machine only."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name or a wildcard: assume other machines can reach it


def parse_size(text: str, option: str = "--max-body") -> int:
    """'4M', '512k', '4MiB', '1048576' -> bytes (binary units)."""
    match = _SIZE.match(str(text))
    if not match:
        raise UsageError(f"{option} {text!r}: not a size (examples: 4M, 512K, 1048576)")
    value = float(match.group(1)) * _UNITS[match.group(2).lower()]
    if value < 1:
        raise UsageError(f"{option} {text!r}: must be at least 1 byte")
    return int(value)


def read_token(token_file: str | None, environ: dict[str, str] | None = None) -> str | None:
    """The bearer token: ``token_file``'s first line if given (the file must exist), else
    $FMNIST_SERVE_TOKEN, else None. Too short a token is refused: it would be guessable."""
    environ = os.environ if environ is None else environ
    if token_file is not None:
        path = Path(token_file)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise UsageError(f"--token-file {path}: file not found") from None
        except IsADirectoryError:
            raise UsageError(f"--token-file {path}: is a directory") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"--token-file {path}: cannot read it ({exc})") from None
        lines = text.strip().splitlines()
        token, source = (lines[0].strip() if lines else ""), f"--token-file {path}"
        if os.name == "posix" and path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning("%s can be read by other users; chmod 600 it", path)
    elif environ.get(TOKEN_ENV) is not None:
        token, source = environ[TOKEN_ENV].strip(), f"${TOKEN_ENV}"
    else:
        return None
    if len(token) < MIN_TOKEN_CHARS:
        raise UsageError(
            f"{source}: the token has {len(token)} characters, at least {MIN_TOKEN_CHARS} are "
            "needed (make one: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    if any(c.isspace() or not c.isprintable() for c in token):
        raise UsageError(f"{source}: the token must be one line without spaces")
    return token


def check_settings(s: ServeSettings) -> ServeSettings:
    """Refuse settings that make no sense or would expose the model without a token."""
    if s.no_auth and s.token is not None:
        raise UsageError("--no-auth and a token (--token-file or $FMNIST_SERVE_TOKEN) conflict")
    if not is_loopback(s.host) and s.token is None and not s.no_auth:
        raise UsageError(
            f"--host {s.host} is reachable from other machines: give a token with --token-file "
            f"or ${TOKEN_ENV}, or pass --no-auth to serve it without one"
        )
    if not 0 <= s.port <= 65535:
        raise UsageError(f"--port {s.port}: must be 0-65535")
    for name, value in (
        ("--workers", s.workers),
        ("--threads", 1 if s.threads is None else s.threads),
        ("--max-images", s.max_images),
        ("--max-connections", s.max_connections),
        ("--keep-alive", s.keep_alive),
    ):
        if value < 1:
            raise UsageError(f"{name} must be >= 1 (got {value})")
    for name, seconds in (
        ("--body-timeout", s.body_timeout),
        ("--header-timeout", s.header_timeout),
        ("--graceful-timeout", s.graceful_timeout),
    ):
        if not seconds > 0:
            raise UsageError(f"{name} must be > 0 seconds (got {seconds})")
    if s.max_body < 1:
        raise UsageError(f"--max-body must be at least 1 byte (got {s.max_body})")
    if s.max_head < 1024:  # a browser's request head alone is about 500-1,000 bytes
        raise UsageError(f"--max-head must be at least 1K (got {s.max_head})")
    for name in s.allow_hosts:
        if not _HOST_NAME.match(name):
            raise UsageError(f"--allow-host {name!r}: not a host name (fmnist.example.org)")
    if s.http not in HTTP_PARSERS:
        raise UsageError(f"--http must be one of {', '.join(HTTP_PARSERS)} (got {s.http!r})")
    return s
