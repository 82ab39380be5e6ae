"""Run fmnist-serve for tests: a real uvicorn process on a free 127.0.0.1 port, and a small
HTTP client (http.client, so the tests need nothing beyond the [serve] extra)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "docs" / "examples"
ANKLE_BOOT = EXAMPLES / "test0000-ankle-boot.png"
TROUSER = EXAMPLES / "test0002-trouser.png"
START_TIMEOUT = 90.0  # seconds: interpreters load in well under 5 s, but CI machines are busy
CLI = [sys.executable, "-m", "fmnist_edge.edge_runtime.serve.cli"]


@dataclass
class Server:
    proc: subprocess.Popen
    url: str = ""
    lines: list[str] = field(default_factory=list)

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname

    @property
    def port(self) -> int:
        return urlsplit(self.url).port

    def stderr(self) -> str:
        return "".join(self.lines)

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, wait, and SIGKILL only if it did not stop in time; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


def start_server(args: list[str] = (), env: dict | None = None, cmd: list[str] | None = None):
    """Start fmnist-serve (or ``cmd``) on port 0 and wait for its 'listening on URL' line."""
    full_env = {k: v for k, v in os.environ.items() if k != "FMNIST_SERVE_TOKEN"}
    full_env.update({"TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})})
    command = cmd or [*CLI, "--port", "0", *args]
    proc = subprocess.Popen(
        command,
        cwd=ROOT,
        env=full_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    server = Server(proc)
    ready = threading.Event()

    def drain() -> None:
        for line in proc.stderr:
            server.lines.append(line)
            if "listening on http://" in line and not ready.is_set():
                server.url = line.split("listening on ", 1)[1].split()[0]
                ready.set()
        ready.set()

    threading.Thread(target=drain, daemon=True).start()
    if not ready.wait(START_TIMEOUT) or not server.url:
        server.stop()
        raise RuntimeError(f"fmnist-serve did not start:\n{server.stderr()}")
    return server


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


def call(
    server: Server,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    chunked: bool = False,
    timeout: float = 30.0,
) -> Reply:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=timeout)
    try:
        if chunked:
            conn.request(
                method, path, body=iter([body]), headers=headers or {}, encode_chunked=True
            )
        else:
            conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


def multipart(parts: list[tuple[str, str, bytes]]) -> tuple[bytes, str]:
    """(field, filename, data) parts -> (body, content type) of a multipart/form-data request."""
    boundary = uuid.uuid4().hex
    out = b""
    for name, filename, data in parts:
        out += (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                f'filename="{filename}"\r\nContent-Type: image/png\r\n\r\n'
            ).encode()
            + data
            + b"\r\n"
        )
    out += f"--{boundary}--\r\n".encode()
    return out, f"multipart/form-data; boundary={boundary}"


def assert_problem(reply: Reply, status: int, kind: str) -> str:
    """``reply`` is fmnist-serve's JSON refusal ``kind`` with ``status``; its one-line message."""
    assert reply.status == status, reply.body
    problem = reply.json()
    assert problem["error"] == kind and problem["status"] == status
    assert problem["message"] and "\n" not in problem["message"]
    return problem["message"]


def metric(server: Server, series: str) -> float:
    """The value of one series of /metrics (0 when absent)."""
    text = call(server, "GET", "/metrics").body.decode()
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def bomb_png(width: int = 30000, height: int = 30000) -> bytes:
    """A real PNG whose header declares ``width`` x ``height`` pixels (900M by default, ten
    times Pillow's limit): a decompression bomb's signature, without the gigabytes."""
    png = ANKLE_BOOT.read_bytes()
    ihdr = png[12:29]  # b"IHDR" + 13 bytes of fields
    fields = struct.pack(">II", width, height) + ihdr[12:]
    chunk = b"IHDR" + fields
    return png[:8] + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk)) + png[33:]


def wait_for(predicate, timeout: float, step: float = 0.05) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(step)
    return predicate()
