"""fmnist-serve under load, over loopback: requests/s and latency at 1, 8 and 32 clients, the
ratio to the in-process Classifier, a mix of good and bad uploads, and a 10,000-request soak.

    python -m fmnist_edge.benchmarks.serve_load [--workers 2] [--clients 1,8,32] \
        [--requests 3000] [--seconds 20] [--soak 10000] [--out serve_load.json]
    python -m fmnist_edge.benchmarks.serve_load --oip-only [--oip-rounds 5]  # /v1 against /v2

``--oip`` (or ``--oip-only``) also compares /v1/classify with the Open Inference Protocol's
/v2/models/{name}/infer at 8 clients, one image a request: the PNG as a BYTES input and the raw
pixels as UINT8, each with binary and with JSON tensors, all five interleaved round by round.

It starts ``fmnist-serve --port 0`` itself (127.0.0.1 only) and sends 28x28 PNGs of the
official test images (the same bytes the in-process baseline decodes). Each client is a thread
with one keep-alive connection and prebuilt requests, so the load generator's own cost stays
small; it still shares the CPU with the server, which a separate load machine would not.
Every phase is bounded in requests and in seconds. Good answers are checked against the
in-process Classifier's label for the same image; a bad upload must get its own 4xx.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import platform
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fmnist_edge.edge_runtime.serve.settings import HTTP_PARSERS

from .report import check_paths, print_and_save

GOAL = {"clients": 8, "requests_per_s": 1000, "p99_ms": 20.0}
OIP_KINDS = ("image-binary", "image-json", "pixels-binary", "pixels-json")
OIP_GOAL = 0.9  # an OIP request of one image file: at least 90% of /v1/classify's req/s


def v1_label(body: bytes, headers: dict[str, str]) -> str:
    return json.loads(body)["label"]


def oip_label(body: bytes, headers: dict[str, str]) -> str:
    """The first label of an Open Inference Protocol answer, JSON or binary."""
    length = headers.get("inference-header-content-length")
    offset = int(length) if length else len(body)
    for out in json.loads(body[:offset])["outputs"]:
        size = out.get("parameters", {}).get("binary_data_size")
        if out["name"] == "label":
            if size is None:
                return out["data"][0]
            (n,) = struct.unpack_from("<I", body, offset)  # a BYTES element: length, bytes
            return body[offset + 4 : offset + 4 + n].decode()
        offset += size or 0
    raise ValueError("no label in the answer")


@dataclass(frozen=True)
class Upload:
    request: bytes  # the whole HTTP request, prebuilt
    expect_status: int
    expect_label: str | None  # for good uploads
    label_of: Callable[[bytes, dict[str, str]], str] = v1_label  # reads it from an answer


def _request(
    body: bytes, query: str = "", path: str = "/v1/classify", headers: str = "image/png"
) -> bytes:
    """A POST of ``body``; ``headers``: its content type, then any other header lines."""
    head = (
        f"POST {path}{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: {headers}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def oip_request(model: str, kind: str, png: bytes, pixels: np.ndarray) -> bytes:
    """POST /v2/models/{model}/infer of one image, as tritonclient sends it: ``kind`` is
    image-binary or image-json (the PNG file, BYTES), pixels-binary or pixels-json (UINT8
    [1, H, W, 1]). Binary requests ask for binary outputs, JSON ones for JSON."""
    name, binary = kind.split("-")
    path = f"/v2/models/{model}/infer"
    if name == "image":
        tensor = {"name": "image", "datatype": "BYTES", "shape": [1]}
        data, values = struct.pack("<I", len(png)) + png, [base64.b64encode(png).decode()]
    else:
        tensor = {"name": "pixels", "datatype": "UINT8", "shape": [1, *pixels.shape, 1]}
        data, values = pixels.tobytes(), pixels.ravel().tolist()
    header: dict = {"inputs": [tensor]}
    if binary == "json":
        tensor["data"] = values
        return _request(json.dumps(header).encode(), "", path, "application/json")
    tensor["parameters"] = {"binary_data_size": len(data)}
    header["parameters"] = {"binary_data_output": True}
    head = json.dumps(header).encode()
    length = f"application/octet-stream\r\nInference-Header-Content-Length: {len(head)}"
    return _request(head + data, "", path, length)


def make_uploads(count: int, data_dir: str | None) -> tuple[list[bytes], list[np.ndarray]]:
    """The first ``count`` official test images as 28x28 grayscale PNG bytes."""
    from PIL import Image

    from fmnist_edge.dataset.files import load_split

    images = load_split("test", data_dir)
    pngs = []
    for pixels in images.images[:count]:
        buf = io.BytesIO()
        Image.fromarray(pixels, mode="L").save(buf, format="PNG")
        pngs.append(buf.getvalue())
    return pngs, list(images.images[:count])


def in_process_rate(pngs: list[bytes], model: str | None, seconds: float) -> tuple:
    """Images/s and CPU ms per image of one in-process Classifier decoding and classifying the
    same PNG bytes (one thread), and its labels, which the server's answers must match."""
    from fmnist_edge.edge_runtime.classifier import Classifier
    from fmnist_edge.edge_runtime.preprocess import open_image_bytes

    clf = Classifier(model, threads=1)
    labels = [clf.predict(open_image_bytes(p, "png")).label for p in pngs]  # also a warm-up
    done, start, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        for png in pngs:
            clf.predict(open_image_bytes(png, "png"))
        done += len(pngs)
    cpu_ms = (time.process_time() - cpu) * 1000.0 / done
    return done / (time.perf_counter() - start), cpu_ms, labels


def bad_uploads(png: bytes) -> list[Upload]:
    """One of each refusal a client can provoke with its body or options."""
    import struct
    import zlib

    chunk = b"IHDR" + struct.pack(">II", 30000, 30000) + png[24:29]
    bomb = png[:8] + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk)) + png[33:]
    return [
        Upload(_request(b""), 400, None),
        Upload(_request(b"this is not an image"), 415, None),
        Upload(_request(png[: len(png) // 2]), 422, None),
        Upload(_request(bomb), 413, None),  # more pixels than --max-pixels
        Upload(_request(png, "?mode=sideways"), 400, None),
        Upload(_request(png, "?top_k=99"), 400, None),
    ]


class Client:
    """One keep-alive connection sending prebuilt requests and reading whole responses."""

    def __init__(self, port: int):
        self.port = port
        self.sock: socket.socket | None = None
        self.headers: dict[str, str] = {}  # of the last answer

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def send(self, request: bytes) -> tuple[int, bytes]:
        if self.sock is None:
            self.sock = self._connect()
        self.sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed before a response")
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
        length = int(headers.get("content-length", "0"))
        while len(body) < length:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed mid-body")
            body += chunk
        if headers.get("connection") == "close":
            self.close()
        self.headers = headers
        return status, body

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_phase(
    port: int, uploads: list[Upload], clients: int, requests: int, seconds: float, pid: int
) -> dict:
    """``clients`` threads send ``requests`` uploads in all (cycling through ``uploads``), or
    stop at ``seconds``; each answer is checked. The server's CPU time per request is what
    load on the machine changes least: cores / it bounds the requests/s of an idle machine."""
    counter = iter(range(requests))
    lock = threading.Lock()
    latencies: list[float] = []
    outcome = {"good": 0, "good_lost": 0, "bad": 0, "bad_unexpected": 0, "transport_errors": 0}
    deadline = time.perf_counter() + seconds

    def worker() -> None:
        client, mine, tally = Client(port), [], dict.fromkeys(outcome, 0)
        while time.perf_counter() < deadline:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            upload = uploads[i % len(uploads)]
            t0 = time.perf_counter()
            try:
                status, body = client.send(upload.request)
            except (OSError, ValueError):
                tally["transport_errors"] += 1
                client.close()
                continue
            mine.append(time.perf_counter() - t0)
            if upload.expect_label is not None:
                tally["good"] += 1
                ok = status == 200 and upload.label_of(body, client.headers) == upload.expect_label
                tally["good_lost"] += not ok
            else:
                tally["bad"] += 1
                tally["bad_unexpected"] += status != upload.expect_status
        client.close()
        with lock:
            latencies.extend(mine)
            for key, n in tally.items():
                outcome[key] += n

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    cpu_start, start, client_start = cpu_seconds(pid), time.perf_counter(), time.process_time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    server_cpu = cpu_seconds(pid) - cpu_start
    client_cpu = time.process_time() - client_start  # this process: the load generator
    ms = np.array(latencies) * 1000.0 if latencies else np.array([np.nan])
    return {
        "clients": clients,
        "requests": len(latencies),
        "seconds": round(wall, 3),
        "requests_per_s": round(len(latencies) / wall, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "max_ms": round(float(np.max(ms)), 3),
        "server_cpu_ms_per_request": round(server_cpu * 1000.0 / max(1, len(latencies)), 3),
        "client_cpu_ms_per_request": round(client_cpu * 1000.0 / max(1, len(latencies)), 3),
        **outcome,
        "errors": outcome["good_lost"] + outcome["bad_unexpected"] + outcome["transport_errors"],
    }


def protocol_phase(
    port: int,
    variants: dict[str, list[Upload]],
    rounds: int,
    requests: int,
    seconds: float,
    pid: int,
) -> dict:
    """Each variant (an API and tensor form) at 8 clients, interleaved: every round runs each
    once, in turn, so that the machine's load changes them alike. Per variant, the median over
    rounds of req/s, p50 and p99, and of its req/s over /v1/classify's in the same round."""
    runs: dict[str, list[dict]] = {kind: [] for kind in variants}
    for _ in range(rounds):
        for kind, uploads in variants.items():
            runs[kind].append(run_phase(port, uploads, 8, requests, seconds, pid))
    base = [r["requests_per_s"] for r in runs["v1"]]
    out = {}
    for kind, rows in runs.items():
        rates = [r["requests_per_s"] for r in rows]
        out[kind] = {
            "clients": 8,
            "requests": sum(r["requests"] for r in rows),
            "errors": sum(r["errors"] for r in rows),
            "requests_per_s": round(float(np.median(rates)), 1),
            "p50_ms": round(float(np.median([r["p50_ms"] for r in rows])), 3),
            "p99_ms": round(float(np.median([r["p99_ms"] for r in rows])), 3),
            "server_cpu_ms_per_request": round(
                float(np.median([r["server_cpu_ms_per_request"] for r in rows])), 3
            ),
            "ratio_to_v1": round(float(np.median(np.array(rates) / np.array(base))), 3),
            "rounds_requests_per_s": rates,
        }
    return out


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmRSS for pid {pid}")


def soak_phase(
    port: int, uploads: list[Upload], requests: int, seconds: float, pid: int, n_parts: int = 4
) -> dict:
    """``requests`` at 8 clients in ``n_parts`` equal parts, the server's RSS before and after
    each: growth that goes on part after part is a leak, one that levels off is warm-up."""
    rss, parts = [round(rss_mib(pid), 1)], []
    deadline = time.perf_counter() + seconds
    for k in range(n_parts):
        share = requests // n_parts + (k < requests % n_parts)
        left = max(0.0, deadline - time.perf_counter())
        parts.append(run_phase(port, uploads, 8, share, left, pid))
        rss.append(round(rss_mib(pid), 1))
    total = sum(p["requests"] for p in parts)
    wall = sum(p["seconds"] for p in parts)
    counts = ("good", "good_lost", "bad", "bad_unexpected", "transport_errors", "errors")
    return {
        "clients": 8,
        "requests": total,
        "seconds": round(wall, 3),
        "requests_per_s": round(total / wall, 1),
        "p99_ms": max(p["p99_ms"] for p in parts),  # the worst part's
        **{key: sum(p[key] for p in parts) for key in counts},
        "rss_mib": rss,  # before, then after each part
        "rss_before_mib": rss[0],
        "rss_after_mib": rss[-1],
    }


def launch(options: list[str], cwd: str | None = None) -> tuple[subprocess.Popen, int]:
    """Start ``fmnist-serve --port 0 OPTIONS`` (from the checkout ``cwd``, when given) and
    wait for its 'listening on' line: the process and its port. Its stderr keeps draining."""
    cmd = [sys.executable, "-m", "fmnist_edge.edge_runtime.serve.cli", "--port", "0", *options]
    env = {k: v for k, v in os.environ.items() if k != "FMNIST_SERVE_TOKEN"}
    proc = subprocess.Popen(
        cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env, cwd=cwd
    )
    deadline = time.monotonic() + 120
    for line in proc.stderr:
        if "listening on http://" in line:
            port = int(line.split("listening on http://", 1)[1].split()[0].rsplit(":", 1)[1])
            threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep draining
            return proc, port
        if time.monotonic() > deadline:
            break
    proc.kill()
    raise RuntimeError("fmnist-serve did not start")


def start_server(args: argparse.Namespace) -> tuple[subprocess.Popen, int]:
    options = ["--workers", str(args.workers), "--max-connections", "1024", "--http", args.http]
    if args.model:
        options += ["--model", args.model]
    if args.threads:
        options += ["--threads", str(args.threads)]
    return launch(options)


def environment(args: argparse.Namespace) -> dict:
    import uvicorn

    from fmnist_edge.common.machine import cpu_model, usable_cores
    from fmnist_edge.edge_runtime.serve.server import http_parser
    from fmnist_edge.edge_runtime.serve.settings import default_threads

    parser = http_parser(args.http)
    return {
        "cpu": cpu_model(),
        "cores": usable_cores(),
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "uvicorn": uvicorn.__version__,
        "http_parser": parser,
        "workers": args.workers,
        "threads_per_worker": args.threads or default_threads(args.workers),  # as the CLI's
    }


def _finish(report: dict) -> dict:
    report["environment"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    protocols = report.get("protocols")
    if protocols:
        files = [protocols[kind] for kind in ("image-binary", "image-json")]
        report["oip_goal"] = {
            "ratio_to_v1": OIP_GOAL,
            "met": all(v["ratio_to_v1"] >= OIP_GOAL and v["errors"] == 0 for v in files),
        }
    return report


def measure(args: argparse.Namespace) -> dict:
    pngs, arrays = make_uploads(args.images, args.data_dir)
    rate, cpu_ms, labels = in_process_rate(pngs, args.model, args.baseline_seconds)
    good = [Upload(_request(p), 200, label) for p, label in zip(pngs, labels, strict=True)]
    bad = bad_uploads(pngs[0])
    report = {
        "environment": environment(args),
        "images": len(pngs),
        "in_process_images_per_s": round(rate, 1),
        "in_process_cpu_ms_per_image": round(cpu_ms, 3),
    }
    proc, port = start_server(args)
    try:
        run_phase(port, good, 8, min(500, args.requests), args.seconds, proc.pid)  # warm-up
        if args.oip or args.oip_only:
            model = Path(args.model).stem if args.model else "default"
            variants = {"v1": good}
            for kind in OIP_KINDS:
                variants[kind] = [
                    Upload(oip_request(model, kind, png, pixels), 200, label, oip_label)
                    for png, pixels, label in zip(pngs, arrays, labels, strict=True)
                ]
            report["protocols"] = protocol_phase(
                port, variants, args.oip_rounds, args.requests, args.seconds, proc.pid
            )
        if args.oip_only:
            return _finish(report)  # the server stops below
        report["load"] = []
        for clients in args.clients:
            row = run_phase(port, good, clients, args.requests, args.seconds, proc.pid)
            row["ratio_to_in_process"] = round(row["requests_per_s"] / rate, 3)
            report["load"].append(row)
        mix = [u for i, g in enumerate(good) for u in (g, bad[i % len(bad)])]  # half bad
        report["mix"] = run_phase(port, mix, 8, args.requests, args.seconds, proc.pid)
        # What the HTTP layer costs without the model: a GET, and a POST whose body is read
        # and refused by the decoder (415), both at 8 clients.
        health = Upload(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 200, None)
        report["overhead"] = {
            "healthz": run_phase(port, [health], 8, args.requests, args.seconds, proc.pid),
            "not_image": run_phase(port, bad[1:2], 8, args.requests, args.seconds, proc.pid),
        }
        soak = [
            bad[i // 5 % len(bad)] if i % 5 == 4 else good[i % len(good)]
            for i in range(len(good) * 5)
        ]  # every fifth request is bad
        report["soak"] = soak_phase(
            port, soak, args.soak, args.soak_seconds, proc.pid, args.soak_parts
        )
    finally:
        proc.terminate()
        proc.wait(30)
    _finish(report)
    goal_row = next((r for r in report["load"] if r["clients"] == GOAL["clients"]), None)
    report["goal"] = {
        **GOAL,
        "met": bool(
            goal_row
            and goal_row["requests_per_s"] >= GOAL["requests_per_s"]
            and goal_row["p99_ms"] <= GOAL["p99_ms"]
            and goal_row["errors"] == 0
        ),
    }
    return report


def render_protocols(r: dict) -> list[str]:
    lines = [
        "one image a request, 8 clients, the variants interleaved (medians over rounds):",
        "",
        "| request | req/s | p50 ms | p99 ms | server CPU ms/request | ratio to /v1/classify "
        "| errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    names = {
        "v1": "POST /v1/classify (PNG body)",
        "image-binary": "OIP, PNG as BYTES, binary tensors",
        "image-json": "OIP, PNG as BYTES, JSON tensors (base64)",
        "pixels-binary": "OIP, UINT8 pixels, binary tensors",
        "pixels-json": "OIP, UINT8 pixels, JSON tensors",
    }
    for kind, row in r["protocols"].items():
        lines.append(
            f"| {names[kind]} | {row['requests_per_s']:,.0f} | {row['p50_ms']:.2f} | "
            f"{row['p99_ms']:.2f} | {row['server_cpu_ms_per_request']:.3f} | "
            f"{row['ratio_to_v1']:.2f} | {row['errors']} |"
        )
    met = "met" if r["oip_goal"]["met"] else "not met"
    lines += [
        "",
        f"OIP goal (an image file at >= {OIP_GOAL:.0%} of /v1/classify's req/s): {met}",
        "",
    ]
    return lines


def render(r: dict) -> str:
    env = r["environment"]
    lines = [
        f"CPU {env['cpu']}, {env['cores']} cores; load average {env['load_average_before']} "
        f"before, {env['load_average_after']} after; Python {env['python']}, uvicorn "
        f"{env['uvicorn']} ({env['http_parser']}), {env['workers']} workers x "
        f"{env['threads_per_worker']} interpreter thread(s)",
        f"in-process Classifier (decode + predict, 1 thread): {r['in_process_images_per_s']:,.0f}"
        f" images/s, {r['in_process_cpu_ms_per_image']:.3f} CPU ms per image",
        "",
    ]
    if "protocols" in r:
        lines += render_protocols(r)
    if "load" not in r:
        return "\n".join(lines)
    lines += [
        "| clients | requests | req/s | p50 ms | p99 ms | max ms | errors | ratio to in-process "
        "| server CPU ms/request | client CPU ms/request |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in r["load"]:
        lines.append(
            f"| {row['clients']} | {row['requests']:,} | {row['requests_per_s']:,.0f} | "
            f"{row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {row['max_ms']:.1f} | {row['errors']} | "
            f"{row['ratio_to_in_process']:.2f} | {row['server_cpu_ms_per_request']:.3f} | "
            f"{row['client_cpu_ms_per_request']:.3f} |"
        )
    mix, soak, over = r["mix"], r["soak"], r["overhead"]
    lines += [
        "",
        f"mix (8 clients, half bad): {mix['good']:,} good, {mix['good_lost']} lost; "
        f"{mix['bad']:,} bad, {mix['bad_unexpected']} with the wrong status; "
        f"{mix['requests_per_s']:,.0f} req/s, p99 {mix['p99_ms']:.2f} ms",
        f"soak ({soak['requests']:,} requests, a fifth bad, 8 clients): {soak['errors']} errors, "
        f"{soak['requests_per_s']:,.0f} req/s, worst part's p99 {soak['p99_ms']:.2f} ms; RSS "
        f"{soak['rss_before_mib']:.1f} MiB before, {soak['rss_after_mib']:.1f} MiB after (after "
        f"each part: {', '.join(f'{m:.1f}' for m in soak['rss_mib'][1:])})",
        "without the model, 8 clients: "
        + "; ".join(
            f"{name} {o['requests_per_s']:,.0f} req/s, server {o['server_cpu_ms_per_request']:.3f}"
            " CPU ms/request"
            for name, o in (
                ("GET /healthz", over["healthz"]),
                ("POST not-an-image", over["not_image"]),
            )
        ),
        f"goal (>= {GOAL['requests_per_s']:,} req/s at {GOAL['clients']} clients, p99 <= "
        f"{GOAL['p99_ms']:g} ms, 0 errors): {'met' if r['goal']['met'] else 'not met'}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="a .tflite (default: the bundled model)")
    parser.add_argument("--workers", type=int, default=2, help="fmnist-serve --workers")
    parser.add_argument("--threads", type=int, default=None, help="fmnist-serve --threads")
    parser.add_argument("--http", choices=HTTP_PARSERS, default="auto", help="fmnist-serve --http")
    parser.add_argument("--clients", default="1,8,32", help="concurrent clients per phase")
    parser.add_argument("--requests", type=int, default=3000, help="requests per phase (cap)")
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds per phase (cap)")
    parser.add_argument("--soak", type=int, default=10_000, help="requests in the soak")
    parser.add_argument("--soak-seconds", type=float, default=300.0, help="the soak's time cap")
    parser.add_argument("--soak-parts", type=int, default=4, help="RSS is read after each part")
    parser.add_argument("--images", type=int, default=256, help="distinct test images")
    parser.add_argument("--baseline-seconds", type=float, default=3.0)
    parser.add_argument("--data-dir", default=None, help="Fashion-MNIST IDX files")
    parser.add_argument(
        "--oip",
        action="store_true",
        help="also compare /v1/classify with "
        "the Open Inference Protocol's infer (binary and JSON tensors)",
    )
    parser.add_argument("--oip-only", action="store_true", help="only that comparison")
    parser.add_argument("--oip-rounds", type=int, default=5, help="rounds of the comparison")
    parser.add_argument("--out", default=None, help="also write the report as JSON here")
    args = parser.parse_args(argv)
    args.clients = [int(c) for c in args.clients.split(",")]
    check_paths(parser, args)
    report = measure(args)
    print_and_save(render(report), report, args.out)


if __name__ == "__main__":
    main()
