"""fmnist-serve under hostile uploads (issue 29), through real uvicorn processes on free
127.0.0.1 ports: every upload of the issue's table and ours refused with its one JSON line
(or answered within the budget), the server healthy and right afterwards; a bounded request
head for both parsers; the Host check; every refusal JSON and counted; SIGHUP, SIGUSR1, a
graceful shutdown that runs out and a client that hangs up; warnings logged once per kind.
The costs (time, peak RSS) are measured by benchmarks/serve_hostile.py, not here."""

from __future__ import annotations

import io
import json
import re
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="fmnist-serve needs the [serve] extra")
pytest.importorskip("uvicorn", reason="fmnist-serve needs the [serve] extra")

from PIL import Image  # noqa: E402
from serve_helpers import (  # noqa: E402
    ANKLE_BOOT,
    assert_problem,
    call,
    metric,
    multipart,
    start_server,
    wait_for,
)

from fmnist_edge.benchmarks import hostile  # noqa: E402

GOOD = ANKLE_BOOT.read_bytes()


@pytest.fixture(scope="module")
def server():
    srv = start_server(
        ["--workers", "1", "--max-pixels", "1M", "--max-connections", "6",
         "--header-timeout", "3", "--allow-host", "Proxy.Example"]
    )
    yield srv
    assert srv.stop() == 0, srv.stderr()


def _post(srv, body, query="", headers=None):
    return call(srv, "POST", "/v1/classify" + query, body, headers)


def _still_right(srv):
    assert call(srv, "GET", "/healthz").json()["status"] == "ok"
    reply = _post(srv, GOOD)
    assert reply.status == 200 and reply.json()["label"] == "Ankle boot", reply.body


def _rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024


def _reply(sock: socket.socket) -> bytes:
    reply = b""
    while chunk := sock.recv(65536):
        reply += chunk
    return reply


def _slow_request(srv) -> socket.socket:
    """A classify request whose head is sent and whose body never ends: in flight."""
    sock = socket.create_connection((srv.host, srv.port), timeout=30)
    sock.sendall(
        f"POST /v1/classify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(GOOD)}\r\n\r\n"
        .encode() + GOOD[:100]
    )
    assert wait_for(lambda: metric(srv, "fmnist_serve_in_flight") >= 2, 20, step=0.1)
    return sock


# --- the table, ours, and the error kinds ---------------------------------------------


def test_hostile_uploads_are_refused_with_one_line_each(server):
    flat = hostile.flat_jpeg(1400, 1400)
    tiff = io.BytesIO()
    Image.new("RGB", (64, 64)).save(tiff, "TIFF")
    ico = io.BytesIO()
    Image.new("RGB", (32, 32)).save(ico, "ICO")
    cases = [  # body, query, status, kind, words of the message
        (hostile.claiming(hostile.blank_png(28, 28), 9000, 9000), "", 413, "too_many_pixels",
         "body: 9000x9000 PNG is 81,000,000 pixels to decode, over the 1,000,000-pixel limit"),
        (hostile.claiming(hostile.blank_png(28, 28), 9000, 9000), "?mode=raw", 413,
         "too_many_pixels", "9000x9000 PNG"),
        (hostile.claiming(hostile.jpeg(64, 64, progressive=True), 9000, 9000), "?mode=raw",
         413, "too_many_pixels", "9000x9000 progressive JPEG of"),
        (hostile.repeat_scan(flat, 800, hostile.costliest_scan(flat)), "", 422, "bomb",
         "a JPEG of more scans than the 100 allowed"),
        (hostile.png_with_chunks(262_000), "", 422, "bomb", "a PNG of more chunks"),
        (hostile.png_text_bomb(8 << 20), "", 422, "bomb", "a decompression bomb in its metadata"),
        (hostile.rle_bmp(4000, 4000), "", 413, "too_many_pixels", "RLE BMP"),  # ours
        (hostile.tiff_strips(64, 400_000, 400_000), "", 422, "bomb", "strips"),  # ours
        (hostile.gif_comment(2_000_000), "", 422, "bomb", "extension blocks"),  # ours
        (ico.getvalue(), "", 415, "unsupported_format",
         "ICO image, not a format taken here (PNG, JPEG, GIF, BMP, WEBP, TIFF)"),
        (tiff.getvalue()[:100], "", 422, "truncated", "corrupt or truncated TIFF image"),
        (b"plain text", "", 415, "not_image", "not an image (unrecognised format"),
    ]
    for body, query, status, kind, words in cases:
        start = time.monotonic()
        message = assert_problem(_post(server, body, query), status, kind)
        assert words in message, message
        assert time.monotonic() - start < 10  # milliseconds; before the budget, seconds
    _still_right(server)
    for kind in ("too_many_pixels", "bomb", "unsupported_format", "truncated"):
        assert metric(server, f'fmnist_serve_errors_total{{kind="{kind}"}}') >= 1


def test_within_the_budget_is_answered_and_a_request_shares_one_budget(server):
    reply = _post(server, hostile.blank_png(1000, 1000), "?mode=raw")  # 1,000,000: the limit
    assert reply.status == 200, reply.body
    three = [("image", f"{i}.png", hostile.blank_png(500, 500)) for i in range(3)]
    body, ctype = multipart(three)
    assert len(_post(server, body, headers={"Content-Type": ctype}).json()) == 3
    two = [("image", f"{i}.png", hostile.blank_png(800, 800)) for i in range(2)]
    body, ctype = multipart(two)
    message = assert_problem(_post(server, body, headers={"Content-Type": ctype}), 413,
                             "too_many_pixels")
    assert message == (
        "image 2 (1.png): 800x800 PNG is 640,000 pixels to decode, and the images before it "
        "640,000, over the 1,000,000-pixel limit of a request (--max-pixels)"
    )
    replies = []  # the table's pair of large PNGs at once: both refused, at once
    big = hostile.claiming(hostile.blank_png(28, 28), 6000, 6000)
    threads = [threading.Thread(target=lambda: replies.append(_post(server, big)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.status for r in replies] == [413, 413]
    _still_right(server)


# --- the request head, the Host header, refusals before the app -------------------------------


def _huge_head_is_refused(srv):
    before = _rss_mib(srv.proc.pid)
    with socket.create_connection((srv.host, srv.port), timeout=20) as sock:
        request = hostile.head_with_line(32 * 1024 * 1024)
        try:
            for at in range(0, len(request), 1 << 16):
                sock.sendall(request[at : at + (1 << 16)])
        except OSError:
            pass  # refused and closed on the way: what was said is still there to read
        reply = _reply(sock)
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 "), reply[:200]
    assert json.loads(body) == {
        "error": "head_too_large",
        "message": "the request head is over 16,384 bytes",
        "status": 431,
    }
    assert _rss_mib(srv.proc.pid) - before < 16  # it was never buffered (32 MiB before)
    ok = call(srv, "GET", "/healthz", headers={"X-Padding": "a" * 12_000})  # under 16K: fine
    assert ok.status == 200
    with socket.create_connection((srv.host, srv.port), timeout=20) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        head, _, body = _reply(sock).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ") and json.loads(body)["error"] == "bad_http"
    assert metric(srv, 'fmnist_serve_errors_total{kind="head_too_large"}') >= 1
    assert metric(srv, 'fmnist_serve_errors_total{kind="bad_http"}') >= 1
    assert metric(srv, 'fmnist_serve_requests_total{path="other",code="431"}') >= 1


def test_request_head_is_bounded_with_httptools(server):
    _huge_head_is_refused(server)


def test_request_head_is_bounded_with_h11():
    srv = start_server(["--http", "h11", "--workers", "1"])
    try:
        _huge_head_is_refused(srv)
        _still_right(srv)
    finally:
        assert srv.stop() == 0, srv.stderr()


def test_host_header_names_this_server_only(server):
    for host in ("127.attacker.example:8000", "127.0.0.1.nip.io", "localhost.attacker.example",
                 "attacker.example", "2130706433"):
        for method, path, body in (("GET", "/v1/model", None), ("GET", "/metrics", None),
                                   ("POST", "/v1/classify", GOOD)):
            reply = call(server, method, path, body, headers={"Host": host})
            assert_problem(reply, 400, "bad_host")
    for host in ("127.0.0.1:1", "127.9.9.9", "[::1]:8000", "localhost", "LOCALHOST:80",
                 "proxy.example", "proxy.example:443"):
        assert call(server, "GET", "/v1/model", headers={"Host": host}).status == 200, host


def test_over_max_connections_is_a_json_503_with_retry_after(server):
    idle = [socket.create_connection((server.host, server.port)) for _ in range(6)]
    try:
        time.sleep(0.3)  # all six accepted
        reply = call(server, "GET", "/v1/model")
        assert_problem(reply, 503, "busy")
        assert reply.headers["retry-after"] == "1"
    finally:
        for sock in idle:
            sock.close()
    assert wait_for(lambda: call(server, "GET", "/healthz").status == 200, 10)
    assert metric(server, 'fmnist_serve_errors_total{kind="busy"}') >= 1
    assert metric(server, 'fmnist_serve_requests_total{path="/v1/model",code="503"}') >= 1


# --- warnings: once per kind, counted ----------------------------------------------------------


def _warnings(srv) -> dict[str, int]:
    text = call(srv, "GET", "/metrics").body.decode()
    found = re.findall(r'^fmnist_serve_warnings_total\{kind="([^"]+)"\} (\d+)$', text, re.M)
    return {kind: int(n) for kind, n in found}


def test_warnings_are_logged_once_per_kind_and_counted(server):
    """A kind is the warning's category and the line that raised it: Pillow's corrupt-EXIF
    warning and python-multipart's bad-header one, whatever text the client put in them."""
    jpeg = hostile.jpeg(64, 64)
    exif = b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x05\x00" + b"\x12\x01\x03\x00\x01\x00\x00\x00"
    corrupt_exif = jpeg[:2] + b"\xff\xe1" + (len(exif) + 2).to_bytes(2, "big") + exif + jpeg[2:]
    before = _warnings(server)
    for i in range(3):
        assert _post(server, corrupt_exif).status == 200  # the image itself is fine
        bad_part = f'--b\r\nContent-Disp<{i}: form-data; name="image"\r\n\r\nx\r\n--b--\r\n'
        reply = _post(server, bad_part.encode(), headers={"Content-Type": "multipart/form-data; "
                                                                          "boundary=b"})
        assert_problem(reply, 400, "bad_request")
    grown = {k: n - before.get(k, 0) for k, n in _warnings(server).items()}
    exif_kind = next(k for k in grown if k.startswith("UserWarning at TiffImagePlugin"))
    part_kind = next(k for k in grown if k.startswith("python_multipart.multipart at"))
    assert grown[exif_kind] >= 3 and grown[part_kind] == 3, grown
    log = server.stderr()
    for kind in (exif_kind, part_kind):
        assert log.count(f"warning {kind}: ") == 1, log  # the first only, whatever its text


# --- a client that hangs up, signals, and a shutdown that runs out ----------------------------


def test_a_client_that_hangs_up_is_counted_and_its_images_skipped():
    srv = start_server(["--workers", "1"])
    try:
        slow = hostile.png16(2236, 2236)  # the budget's worst PNG: a few tenths of a second
        busy = threading.Thread(target=lambda: _post(srv, slow, "?mode=raw"))
        busy.start()
        assert wait_for(lambda: metric(srv, "fmnist_serve_in_flight") >= 2, 20, step=0.02)
        body, ctype = multipart([("image", f"{i}.png", GOOD) for i in range(4)])
        with socket.create_connection((srv.host, srv.port), timeout=20) as sock:
            sock.sendall(  # queued behind the slow one; the client hangs up at once
                f"POST /v1/classify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n".encode() + body
            )
        busy.join()
        disconnected = 'fmnist_serve_errors_total{kind="disconnected"}'
        assert wait_for(lambda: metric(srv, disconnected) == 1, 10)
        assert metric(srv, 'fmnist_serve_requests_total{path="/v1/classify",code="499"}') == 1
        assert metric(srv, "fmnist_serve_images_total") == 1  # the hung-up images never ran
        _still_right(srv)
    finally:
        assert srv.stop() == 0, srv.stderr()


def test_sighup_drains_like_sigterm_and_sigusr1_is_ignored():
    srv = start_server(["--graceful-timeout", "20", "--workers", "1"])
    try:
        srv.proc.send_signal(signal.SIGUSR1)
        assert wait_for(lambda: "SIGUSR1 ignored" in srv.stderr(), 10)
        _still_right(srv)
        sock = _slow_request(srv)
        srv.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "Shutting down" in srv.stderr(), 10)
        assert srv.proc.poll() is None  # waiting for the request in flight
        sock.sendall(GOOD[100:])
        reply = _reply(sock)
        sock.close()
        assert reply.startswith(b"HTTP/1.1 200") and b'"label":"Ankle boot"' in reply, reply
        assert srv.proc.wait(20) == 0, srv.stderr()
    finally:
        srv.stop()


def test_a_graceful_shutdown_that_runs_out_answers_json_503_and_exits_in_time():
    srv = start_server(["--graceful-timeout", "1", "--workers", "1"])
    try:
        sock = _slow_request(srv)
        started = time.monotonic()
        srv.proc.terminate()
        reply = _reply(sock)
        sock.close()
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503"), reply
        assert json.loads(body)["error"] == "shutting_down"
        assert srv.proc.wait(20) == 0
        assert time.monotonic() - started < 1 + 1 + 5  # the timeout, one decode, slack
        log = srv.stderr()
        assert "Traceback" not in log and "CancelledError" not in log, log
    finally:
        srv.stop()


def test_a_decode_in_flight_does_not_hold_the_exit():
    srv = start_server(["--graceful-timeout", "1", "--workers", "1"])
    try:
        slow = hostile.png16(2236, 2236)
        replies = []
        threads = [threading.Thread(target=lambda: replies.append(_post(srv, slow, "?mode=raw")))
                   for _ in range(3)]  # one decoding, two queued behind it
        for t in threads:
            t.start()
        assert wait_for(lambda: metric(srv, "fmnist_serve_in_flight") >= 4, 20, step=0.02)
        started = time.monotonic()
        srv.proc.terminate()
        assert srv.proc.wait(20) == 0
        assert time.monotonic() - started < 1 + 1 + 5  # the timeout, one decode, slack
        for t in threads:
            t.join()
        assert {r.status for r in replies} <= {200, 503}
    finally:
        srv.stop()


def test_bad_options_and_models_are_one_line_exit_2(tmp_path):
    from click.testing import CliRunner

    from fmnist_edge.edge_runtime.serve.cli import main

    cases = {
        ("--model", "/dev/zero"): "error: /dev/zero: not a regular file, not a .tflite file",
        ("--max-pixels", "lots"): "error: --max-pixels 'lots': not a pixel count (examples: "
        "10M, 500K, 4000000)",
        ("--max-head", "100"): "error: --max-head must be at least 1K (got 100)",
        ("--allow-host", "not a name"): "error: --allow-host 'not a name': not a host name "
        "(fmnist.example.org)",
    }
    for args, line in cases.items():
        result = CliRunner().invoke(main, ["--port", "0", *args], env={"FMNIST_SERVE_TOKEN": None})
        assert result.exit_code == 2 and result.output.strip().splitlines() == [line], result.output
