"""A classify request's inputs: query options, the body (bounded in size and time) and the images
in it. Everything stays in memory: no upload is ever written to a file (Starlette's own form
parser spools parts over 1 MiB to disk, so multipart is parsed here with python-multipart).

Every refusal is a Problem: an HTTP status, a short kind (for /metrics) and one line for people.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from fmnist_edge.edge_runtime.preprocess import MODES

DEFAULT_TOP_K = 3
FIELD = "image"  # the multipart field that carries an image
_MAX_PARTS = 1000  # all fields, images or not: a bound on parser work
_MAX_NAME = 80  # characters of a client's file name echoed back in messages


class Problem(Exception):
    """A request refused with ``status``; ``kind`` names it in /metrics, ``message`` for people."""

    def __init__(self, status: int, kind: str, message: str):
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


def parse_options(
    query: Mapping[str, str], num_classes: int, modes: tuple[str, ...] = MODES
) -> tuple[str, int]:
    """``?mode=auto|raw|photo&top_k=1..num_classes`` -> (mode, top_k); ``modes``: those the
    model takes (photo is Fashion-MNIST's)."""
    mode = query.get("mode", "auto")
    if mode not in MODES:
        raise Problem(400, "bad_mode", f"mode {mode[:40]!r} is unknown: use {', '.join(MODES)}")
    if mode not in modes:
        raise Problem(
            400,
            "bad_mode",
            f"mode {mode} is Fashion-MNIST's conversion; this model takes {', '.join(modes)}",
        )
    text = query.get("top_k", str(DEFAULT_TOP_K))
    try:
        top_k = int(text)
    except ValueError:
        top_k = -1
    if not 1 <= top_k <= num_classes:
        raise Problem(
            400, "bad_top_k", f"top_k {text[:40]!r} is out of range: use 1 to {num_classes}"
        )
    return mode, top_k


def _too_large(limit: int) -> Problem:
    return Problem(413, "too_large", f"the body is larger than the {limit:,}-byte limit")


async def read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The whole body, refused with 413 once it passes ``limit`` bytes (at once when
    Content-Length says so) and with 408 if it has not all arrived within ``timeout`` s."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise Problem(400, "bad_request", f"Content-Length {declared[:20]!r} is not a number")
        if int(declared) > limit:
            raise _too_large(limit)
    chunks, size = [], 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit)
                chunks.append(chunk)
    except TimeoutError:
        raise Problem(408, "timeout", f"the body did not arrive within {timeout:g} s") from None
    except ClientDisconnect:
        raise Problem(499, "disconnected", "the client went away before the body ended") from None
    return b"".join(chunks)


def _clean_name(raw: bytes | None, index: int) -> str:
    name = (raw or b"").decode("utf-8", "replace")
    name = "".join(c for c in name if c.isprintable())[:_MAX_NAME]
    return f"image {index} ({name})" if name else f"image {index}"


def _multipart(body: bytes, content_type: str, max_images: int) -> list[tuple[str, bytes]]:
    """The ``image`` parts of a multipart/form-data body, in order, as (name, bytes)."""
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise Problem(400, "bad_request", "multipart/form-data without a boundary")
    parts: list[dict] = []
    header: list[bytes] = [b"", b""]
    ended: list[bool] = []

    def on_part_begin() -> None:
        if len(parts) >= _MAX_PARTS:
            raise Problem(400, "bad_request", f"more than {_MAX_PARTS} parts in the body")
        parts.append({"headers": {}, "data": []})

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header[0] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header[1] += data[start:end]

    def on_header_end() -> None:
        parts[-1]["headers"][header[0].lower()] = header[1]
        header[0], header[1] = b"", b""

    def on_part_data(data: bytes, start: int, end: int) -> None:
        parts[-1]["data"].append(data[start:end])

    callbacks = {
        "on_part_begin": on_part_begin,
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
        "on_part_data": on_part_data,
        "on_end": lambda: ended.append(True),
    }
    try:
        parser = MultipartParser(boundary, callbacks)
        parser.write(body)
        parser.finalize()
    except MultipartParseError as exc:
        raise Problem(400, "bad_request", f"malformed multipart body ({exc})") from None
    if not ended:
        raise Problem(400, "bad_request", "the multipart body ends before its closing boundary")
    uploads = []
    for part in parts:
        _, options = parse_options_header(part["headers"].get(b"content-disposition", b""))
        if options.get(b"name") != FIELD.encode():
            continue  # other form fields are ignored
        uploads.append((_clean_name(options.get(b"filename"), len(uploads) + 1), part["data"]))
    if not uploads:
        raise Problem(400, "no_image", f"the multipart body has no {FIELD!r} field")
    if len(uploads) > max_images:
        raise Problem(
            413,
            "too_many_images",
            f"{len(uploads)} images in one request; the limit is {max_images}",
        )
    return [(name, b"".join(data)) for name, data in uploads]


def split_uploads(body: bytes, content_type: str, max_images: int) -> list[tuple[str, bytes]]:
    """The images of a request: the raw body (any content type but multipart/form-data) or the
    ``image`` fields of a multipart body. Empty ones are refused here, by name."""
    if content_type.lower().startswith("multipart/form-data"):
        uploads = _multipart(body, content_type, max_images)
    else:
        uploads = [("body", body)]
    for name, data in uploads:
        if not data:
            what = "the request body is empty" if name == "body" else f"{name} is empty"
            raise Problem(400, "empty", f"{what}: send the image's bytes")
    return uploads
