"""fmnist-serve through a real uvicorn process on a free 127.0.0.1 port: every endpoint, every
bad input, auth on and off, the body limit, slow clients, a bug, and SIGTERM draining a request.
"""

from __future__ import annotations

import hashlib
import logging
import re
import socket
import sys
import time

import pytest

pytest.importorskip("starlette", reason="fmnist-serve needs the [serve] extra")
pytest.importorskip("uvicorn", reason="fmnist-serve needs the [serve] extra")
pytest.importorskip("python_multipart", reason="fmnist-serve needs the [serve] extra")

from click.testing import CliRunner  # noqa: E402
from serve_helpers import (  # noqa: E402
    ANKLE_BOOT,
    CLI,
    TROUSER,
    assert_problem,
    bomb_png,
    call,
    metric,
    multipart,
    start_server,
    wait_for,
)

from fmnist_edge.common.errors import UsageError  # noqa: E402
from fmnist_edge.edge_runtime.serve.settings import (  # noqa: E402
    TOKEN_ENV,
    ServeSettings,
    check_settings,
    is_loopback,
    parse_size,
    read_token,
)

TOKEN = "t0k3n-for-tests-" + "x" * 24
MAX_BODY = 64 * 1024


@pytest.fixture(scope="module")
def server():
    srv = start_server(
        ["--max-body", "64K", "--header-timeout", "1", "--body-timeout", "2", "--max-images", "4"]
    )
    yield srv
    assert srv.stop() == 0, srv.stderr()


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    token_file = tmp_path_factory.mktemp("serve") / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    srv = start_server(["--token-file", str(token_file), "--workers", "1"])
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def reference():
    from fmnist_edge import Classifier

    clf = Classifier()
    return {path.name: clf.predict(path, top_k=3) for path in (ANKLE_BOOT, TROUSER)}


def _post(server, body, query="", headers=None, **kw):
    return call(server, "POST", "/v1/classify" + query, body, headers, **kw)


# --- endpoints --------------------------------------------------------------------------------


def test_healthz_and_page(server):
    health = call(server, "GET", "/healthz")
    assert health.status == 200 and health.json()["status"] == "ok"
    page = call(server, "GET", "/")
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    assert b'<input id="file" type="file"' in page.body
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert b"http://" not in page.body and b"https://" not in page.body  # no CDN, nothing remote
    assert page.headers["x-content-type-options"] == "nosniff"


def test_model_metadata(server):
    from importlib import resources

    bundled = resources.files("fmnist_edge.edge_runtime").joinpath("models/default.tflite")
    info = call(server, "GET", "/v1/model").json()
    assert info["sha256"] == hashlib.sha256(bundled.read_bytes()).hexdigest()
    assert len(info["class_names"]) == 10 and info["class_names"][9] == "Ankle boot"
    assert info["input"]["shape"] == [1, 28, 28, 1] and info["input"]["dtype"] == "int8"
    assert info["format"] == "fmnist-edge/1"  # the bundled model is a format 1 file


def test_classify_raw_body_matches_in_process(server, reference):
    reply = _post(server, ANKLE_BOOT.read_bytes(), headers={"Content-Type": "image/png"})
    assert reply.status == 200, reply.body
    result = reply.json()
    expected = reference[ANKLE_BOOT.name]
    assert result["label"] == expected.label == "Ankle boot" and result["index"] == 9
    assert result["score"] == pytest.approx(expected.score, abs=1e-6)
    assert [t["label"] for t in result["top_k"]] == [label for label, _ in expected.top_k]
    assert result["model"] and result["ms"] > 0
    assert reply.headers["server-timing"].startswith("total;dur=")


def test_classify_multipart_keeps_order_and_options(server, reference):
    body, ctype = multipart(
        [
            ("image", "boot.png", ANKLE_BOOT.read_bytes()),
            ("note", "", b"ignored"),
            ("image", "trouser.png", TROUSER.read_bytes()),
        ]
    )
    reply = _post(server, body, "?top_k=1&mode=raw", {"Content-Type": ctype})
    assert reply.status == 200, reply.body
    results = reply.json()
    assert [r["label"] for r in results] == ["Ankle boot", "Trouser"]
    assert all(len(r["top_k"]) == 1 for r in results)
    one, ctype = multipart([("image", "trouser.png", TROUSER.read_bytes())])
    single = _post(server, one, "?top_k=10", {"Content-Type": ctype}).json()
    assert single["label"] == "Trouser" and len(single["top_k"]) == 10  # one image: an object


# --- bad input: one JSON line each, and the server keeps serving ------------------------------


def test_bad_inputs_get_4xx_json(server):
    png = ANKLE_BOOT.read_bytes()
    cases = [
        (b"", "", 400, "empty"),
        (b"hello, not an image at all", "", 415, "not_image"),
        (png[: len(png) // 2], "", 422, "truncated"),
        (bomb_png(), "", 413, "too_many_pixels"),
        (png, "?mode=sideways", 400, "bad_mode"),
        (png, "?top_k=0", 400, "bad_top_k"),
        (png, "?top_k=11", 400, "bad_top_k"),
        (png, "?top_k=three", 400, "bad_top_k"),
        (png, "?mode=raw&top_k=3", 200, None),  # control: a good one in between
    ]
    for body, query, status, kind in cases:
        reply = _post(server, body, query)
        if kind is None:
            assert reply.status == status and reply.json()["label"] == "Ankle boot"
        else:
            message = assert_problem(reply, status, kind)
            if kind == "too_many_pixels":
                assert "30000x30000 PNG is 900,000,000 pixels to decode" in message
            if kind == "truncated":
                assert "truncated" in message


def test_multipart_problems(server):
    png = ANKLE_BOOT.read_bytes()
    body, ctype = multipart([("picture", "a.png", png)])
    assert_problem(_post(server, body, headers={"Content-Type": ctype}), 400, "no_image")
    body, ctype = multipart([("image", "a.png", png), ("image", "empty.png", b"")])
    message = assert_problem(_post(server, body, headers={"Content-Type": ctype}), 400, "empty")
    assert "image 2 (empty.png)" in message
    body, ctype = multipart([("image", "a.png", png), ("image", "b.txt", b"plain text")])
    message = assert_problem(
        _post(server, body, headers={"Content-Type": ctype}), 415, "not_image"
    )
    assert message.startswith("image 2 (b.txt)")
    body, ctype = multipart([("image", f"{i}.png", png) for i in range(5)])  # --max-images 4
    assert_problem(_post(server, body, headers={"Content-Type": ctype}), 413, "too_many_images")
    assert_problem(_post(server, body[:-40], headers={"Content-Type": ctype}), 400, "bad_request")


def test_body_limit(server):
    big = b"\x89PNG" + b"\0" * MAX_BODY  # one byte over 64 KiB
    message = assert_problem(_post(server, big), 413, "too_large")
    assert "65,536" in message
    assert_problem(_post(server, big, chunked=True), 413, "too_large")  # no Content-Length
    ok = _post(server, b"\x89PNG" + b"\0" * (MAX_BODY - 4))  # at the limit: read, then judged
    assert_problem(ok, 422, "truncated")


def test_unknown_routes_and_methods(server):
    assert_problem(call(server, "GET", "/v3/anything"), 404, "not_found")
    oip = call(server, "GET", "/v2/anything")  # the Open Inference Protocol's error body
    assert oip.status == 404 and list(oip.json()) == ["error"]
    reply = call(server, "GET", "/v1/classify")
    assert_problem(reply, 405, "method_not_allowed")
    assert "POST" in reply.headers["allow"]


def test_foreign_host_header_refused(server):
    reply = call(server, "GET", "/v1/model", headers={"Host": "attacker.example:8000"})
    assert_problem(reply, 400, "bad_host")
    assert call(server, "GET", "/v1/model", headers={"Host": "localhost:1"}).status == 200


def test_metrics_count_requests_and_errors(server):
    _post(server, b"not an image")
    _post(server, ANKLE_BOOT.read_bytes())
    reply = call(server, "GET", "/metrics")
    assert reply.status == 200 and reply.headers["content-type"].startswith("text/plain")
    text = reply.body.decode()

    def value(series):
        match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
        assert match, series
        return float(match.group(1))

    assert value('fmnist_serve_requests_total{path="/v1/classify",code="200"}') >= 1
    assert value('fmnist_serve_errors_total{kind="not_image"}') >= 1
    assert value('fmnist_serve_errors_total{kind="unauthorized"}') == 0
    assert value("fmnist_serve_classify_seconds_count") >= 2
    p50 = value('fmnist_serve_classify_seconds{quantile="0.5"}')
    assert 0 < p50 <= value('fmnist_serve_classify_seconds{quantile="0.99"}')
    assert value("fmnist_serve_images_total") >= 1


# --- slow clients -----------------------------------------------------------------------------


def test_silent_connection_closed_after_header_timeout(server):
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        start = time.monotonic()
        assert sock.recv(1) == b""  # closed by the server (--header-timeout 1)
        assert time.monotonic() - start < 8


def test_slow_body_gets_408(server):
    with socket.create_connection((server.host, server.port), timeout=15) as sock:
        sock.sendall(
            b"POST /v1/classify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n"
            + ANKLE_BOOT.read_bytes()[:10]
        )
        start = time.monotonic()
        reply = b""
        while chunk := sock.recv(4096):  # the server closes the connection after a 408
            reply += chunk
        assert reply.startswith(b"HTTP/1.1 408"), reply
        assert b'"error":"timeout"' in reply
        assert 1.5 < time.monotonic() - start < 12  # --body-timeout 2


# --- auth -------------------------------------------------------------------------------------


def test_auth_on(auth_server):
    png = ANKLE_BOOT.read_bytes()
    reply = _post(auth_server, png)
    assert_problem(reply, 401, "unauthorized")
    assert reply.headers["www-authenticate"].startswith("Bearer")
    assert_problem(
        _post(auth_server, png, headers={"Authorization": "Bearer wrong"}), 401, "unauthorized"
    )
    assert_problem(_post(auth_server, png, headers={"Authorization": TOKEN}), 401, "unauthorized")
    good = {"Authorization": f"Bearer {TOKEN}"}
    assert _post(auth_server, png, headers=good).json()["label"] == "Ankle boot"
    assert call(auth_server, "GET", "/healthz").status == 200  # open for monitors
    assert call(auth_server, "GET", "/").status == 200  # the page asks for the token itself
    assert_problem(call(auth_server, "GET", "/v1/model"), 401, "unauthorized")
    assert_problem(call(auth_server, "GET", "/metrics"), 401, "unauthorized")
    text = call(auth_server, "GET", "/metrics", headers=good).body.decode()
    assert re.search(
        r'^fmnist_serve_errors_total\{kind="unauthorized"\} ([5-9]|\d\d+)$', text, re.M
    ), text


def test_auth_off_by_default_on_loopback(server):
    assert server.host == "127.0.0.1"
    assert _post(server, ANKLE_BOOT.read_bytes()).status == 200
    assert "no token" in server.stderr()


def test_cli_refuses_exposed_host_without_token(tmp_path):
    from fmnist_edge.edge_runtime.serve.cli import main

    runner = CliRunner()
    result = runner.invoke(main, ["--host", "0.0.0.0"], env={TOKEN_ENV: None})
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: --host 0.0.0.0 is reachable from other machines: give a token with "
        f"--token-file or ${TOKEN_ENV}, or pass --no-auth to serve it without one"
    ]
    missing = runner.invoke(main, ["--token-file", str(tmp_path / "nope")], env={TOKEN_ENV: None})
    assert missing.exit_code == 2 and "nope: file not found" in missing.output
    (tmp_path / "short").write_text("abc\n")
    short = runner.invoke(main, ["--token-file", str(tmp_path / "short")], env={TOKEN_ENV: None})
    assert short.exit_code == 2 and "at least 16" in short.output
    both = runner.invoke(main, ["--no-auth"], env={TOKEN_ENV: TOKEN})
    assert both.exit_code == 2 and "conflict" in both.output
    size = runner.invoke(main, ["--max-body", "lots"], env={TOKEN_ENV: None})
    assert size.exit_code == 2 and "--max-body 'lots'" in size.output


def test_settings_library():
    assert read_token(None, {TOKEN_ENV: f"  {TOKEN}\n"}) == TOKEN
    assert read_token(None, {}) is None
    assert parse_size("4M") == 4 * 1024 * 1024 and parse_size("512k") == 512 * 1024
    assert parse_size("1048576") == 1048576 and parse_size("2MiB") == 2 * 1024 * 1024
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.20")
    check_settings(ServeSettings(host="0.0.0.0", no_auth=True))  # explicit: allowed
    check_settings(ServeSettings(host="0.0.0.0", token=TOKEN))
    with pytest.raises(UsageError, match="--host ::"):
        check_settings(ServeSettings(host="::"))
    assert TOKEN not in repr(ServeSettings(token=TOKEN))  # never in a log line
    with pytest.raises(UsageError, match="--http must be one of auto, httptools, h11"):
        check_settings(ServeSettings(http="fast"))


def test_http_parser_choice(monkeypatch):
    from fmnist_edge.edge_runtime.serve.metrics import Metrics
    from fmnist_edge.edge_runtime.serve.server import http_parser, http_protocol
    from fmnist_edge.edge_runtime.serve.tally import WarningTally

    def protocol(http):
        tally = WarningTally(logging.getLogger("test"))
        return http_protocol(ServeSettings(http=http), Metrics(warnings=tally), tally)

    assert http_parser("auto") == "httptools" and http_parser("h11") == "h11"  # [serve] has it
    assert "HttpTools" in protocol("auto").__mro__[1].__name__
    assert "H11" in protocol("h11").__mro__[1].__name__
    monkeypatch.setitem(sys.modules, "httptools", None)  # as if it were not installed
    assert http_parser("auto") == "h11"
    with pytest.raises(UsageError, match="--http httptools: httptools is not installed"):
        http_parser("httptools")


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_both_http_parsers_classify_and_close_silent_connections(http):
    srv = start_server(["--http", http, "--header-timeout", "1", "--workers", "1"])
    try:
        assert f"1 workers; {http})" in srv.stderr()  # the listening line names the parser
        reply = _post(srv, ANKLE_BOOT.read_bytes())
        assert reply.status == 200 and reply.json()["label"] == "Ankle boot"
        with socket.create_connection((srv.host, srv.port), timeout=10) as sock:
            start = time.monotonic()
            assert sock.recv(1) == b""  # closed by the server after --header-timeout 1
            assert time.monotonic() - start < 8
    finally:
        assert srv.stop() == 0, srv.stderr()


# --- a small image on an idle server is classified on the event loop ---------------------------

LOOP_JOBS = 'fmnist_serve_jobs_total{where="event_loop"}'
WORKER_JOBS = 'fmnist_serve_jobs_total{where="worker"}'


def test_an_idle_server_classifies_a_small_png_on_its_event_loop(reference, tmp_path):
    """One request at a time, a 28x28 PNG skips the hop to a worker thread and gets the same
    answer; a larger image, and requests that arrive together, go to the workers."""
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image

    srv = start_server(["--workers", "2"])
    try:
        png = ANKLE_BOOT.read_bytes()
        expected = reference[ANKLE_BOOT.name]
        for _ in range(5):
            result = _post(srv, png).json()
            assert result["label"] == expected.label
            assert result["score"] == pytest.approx(expected.score, abs=1e-6)
        assert metric(srv, LOOP_JOBS) == 5 and metric(srv, WORKER_JOBS) == 0
        big = tmp_path / "big.png"  # 100x100: more pixels than the loop takes
        Image.open(ANKLE_BOOT).resize((100, 100)).save(big)
        assert _post(srv, big.read_bytes()).json()["label"] == expected.label
        assert metric(srv, WORKER_JOBS) == 1 and metric(srv, LOOP_JOBS) == 5
        with ThreadPoolExecutor(8) as clients:  # 8 at once: the server holds several
            labels = list(clients.map(lambda _: _post(srv, png).json()["label"], range(80)))
        assert labels == [expected.label] * 80
        assert metric(srv, WORKER_JOBS) > 1
        assert metric(srv, LOOP_JOBS) + metric(srv, WORKER_JOBS) == 86
    finally:
        assert srv.stop() == 0, srv.stderr()


# --- a bug answers 500 and the server lives on -------------------------------------------------

BUGGY = """
import sys
from fmnist_edge.edge_runtime.serve.server import serve
from fmnist_edge.edge_runtime.serve.settings import ServeSettings
from fmnist_edge.edge_runtime.serve.workers import ClassifierPool


class BuggyPool(ClassifierPool):
    def _classify(self, uploads, *args):
        if uploads[0][1].startswith(b"BUG"):
            raise ZeroDivisionError("a deliberate bug")
        return super()._classify(uploads, *args)


settings = ServeSettings(port=0)
serve(settings, BuggyPool(settings), lambda url: print("listening on", url, file=sys.stderr,
                                                       flush=True))
"""


def test_bug_answers_500_json_and_server_survives(tmp_path):
    script = tmp_path / "buggy.py"
    script.write_text(BUGGY)
    import sys

    srv = start_server(cmd=[sys.executable, str(script)])
    try:
        for _ in range(3):
            assert_problem(_post(srv, b"BUG in the body"), 500, "internal")
        assert _post(srv, ANKLE_BOOT.read_bytes()).json()["label"] == "Ankle boot"
        text = call(srv, "GET", "/metrics").body.decode()
        assert 'fmnist_serve_errors_total{kind="internal"} 3' in text
        assert "ZeroDivisionError: a deliberate bug" in srv.stderr()  # the log explains it
    finally:
        assert srv.stop() == 0


# --- SIGTERM drains the request in flight ------------------------------------------------------


def test_sigterm_finishes_in_flight_request():
    srv = start_server(["--graceful-timeout", "20"])
    png = ANKLE_BOOT.read_bytes()
    try:
        with socket.create_connection((srv.host, srv.port), timeout=20) as sock:
            sock.sendall(
                b"POST /v1/classify HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                + f"Content-Length: {len(png)}\r\n\r\n".encode()
                + png[:100]
            )

            def in_flight() -> bool:  # the metrics request itself is the other one
                text = call(srv, "GET", "/metrics").body.decode()
                return "fmnist_serve_in_flight 2" in text

            # the request is in flight: its head arrived, its body has not
            assert wait_for(in_flight, 20, step=0.1), "the request never reached the app"
            srv.proc.terminate()  # SIGTERM, as systemd's stop sends

            def refused() -> bool:
                try:
                    socket.create_connection((srv.host, srv.port), timeout=1).close()
                    return False
                except OSError:
                    return True

            assert wait_for(refused, 10), "still accepting connections after SIGTERM"
            assert srv.proc.poll() is None  # waiting for our request
            sock.sendall(png[100:])
            reply = b""
            while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 200"), reply
        assert b'"label":"Ankle boot"' in reply
        assert srv.proc.wait(20) == 0, srv.stderr()
        assert "Shutting down" in srv.stderr()
    finally:
        srv.stop()


def test_cli_help_is_fast_and_mentions_token():
    import subprocess

    out = subprocess.run([*CLI, "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "--token-file" in out.stdout and "--no-auth" in out.stdout


def test_pi_probe_serve_on_the_host():
    """What the emulated-Pi check runs in the guest (tools/pi/check.py), here on the host."""
    from fmnist_edge.benchmarks import pi_probe

    got = pi_probe.serve_once(ANKLE_BOOT, None, timeout=90)
    assert got["label"] == "Ankle boot" and got["healthz"] == "ok" and got["exit_code"] == 0
    assert got["http_parser"] == "httptools"  # the [serve] extra's
    assert [t["label"] for t in got["top_k"]][:1] == ["Ankle boot"] and got["startup_s"] > 0


def test_serve_never_imports_tensorflow():
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['tensorflow'] = sys.modules['keras'] = None\n"
        "import fmnist_edge.edge_runtime.serve.cli, fmnist_edge.edge_runtime.serve.server\n"
        "print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "ok", out.stderr


def test_missing_serve_extra_is_one_line():
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['uvicorn'] = None\n"
        "from fmnist_edge.edge_runtime.serve.cli import main\n"
        "main(['--port', '0'])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    expected = "error: fmnist-serve needs uvicorn: pip install 'fmnist-edge[serve]'"
    assert out.stderr.strip() == expected


# --- issue 26: start-up errors are one line of ours -------------------------------------------


def _serve_fails(*args: str) -> list[str]:
    """fmnist-serve that cannot start: exit 2 and its stderr lines (nothing of uvicorn's)."""
    import os
    import subprocess

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop(TOKEN_ENV, None)
    out = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=90, env=env)
    assert out.returncode == 2, out.stderr
    return out.stderr.splitlines()


def test_busy_port_is_one_line_naming_the_address():
    """Item 4: uvicorn said 'INFO: Started server process', then '[Errno 98] error while
    attempting to bind on address ...', exit 3."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        lines = _serve_fails("--port", str(port))
    assert lines == [
        f"error: 127.0.0.1:{port}: the port is already in use (another fmnist-serve?); "
        "choose another --port, or --port 0 for any free one"
    ]


def test_bad_host_is_one_line_naming_it():
    """Item 4: a --host that resolves to nothing, or to no address of this machine."""
    (line,) = _serve_fails("--host", "not.a.host", "--no-auth")
    said = "error: --host not.a.host: not an address of this machine or a name it can resolve ("
    assert line.startswith(said)  # then the resolver's words: "Name or service not known"
    assert line.endswith("); give an IP address, such as 127.0.0.1 or 0.0.0.0")
    assert _serve_fails("--host", "192.0.2.1", "--no-auth", "--port", "8000") == [  # TEST-NET-1
        "error: 192.0.2.1:8000: not an address of this machine; give one of its own as --host, "
        "or 0.0.0.0 for all of them"
    ]
