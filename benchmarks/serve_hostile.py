"""fmnist-serve under hostile uploads: the server's peak RSS and the time each upload costs it,
with ``--workers 4``, for the attacks of issue 29 and for the worst uploads the limits allow.

    python -m fmnist_edge.benchmarks.serve_hostile [--workers 4] [--rounds 2] \
        [--before DIR] [--out serve_hostile.json]

Every case runs against a fresh server (default settings, 127.0.0.1 only), so that none
inherits another's memory; with ``--before DIR`` (a checkout of the code before a change:
``git worktree add --detach /tmp/before COMMIT``) each case runs on that server first, then on
this checkout's, interleaved case by case under the same load. The cases:
- attacks: each upload of the issue's table (and three more: an RLE BMP, a TIFF of 400,000
  strips, a GIF comment of 2 million blocks; a 32 MiB header line), sent once (two at once for
  the pair of PNGs);
- worst allowed: each upload that counts just under --max-pixels (10M) in its format's way,
  sent ``rounds`` times by four clients at once;
- all at once: four clients cycling through all of the worst allowed, a 28x28 PNG between
  them that must still be answered right.
For each: the answers' statuses, the time per upload (the client's, from sending to the last
byte), the server's CPU per upload, its peak RSS (VmHWM, reset before each case through
/proc/PID/clear_refs) and its RSS after. Every request has a 120 s socket timeout.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from . import hostile
from .report import check_paths, print_and_save
from .serve_load import Client, cpu_seconds, launch, rss_mib

ANKLE_BOOT = Path(__file__).resolve().parents[1] / "docs" / "examples" / "test0000-ankle-boot.png"
HUGE_HEAD = 32 * 1024 * 1024  # bytes of one header line
SIDE = 3162  # 3162 x 3162 = 9,998,244 pixels, just under the default --max-pixels (10M)


@dataclass(frozen=True)
class Case:
    name: str
    request: bytes  # the whole HTTP request
    clients: int = 1  # sending it at once
    expect_label: str | None = None  # a good upload must get this label


def _post(body: bytes, query: str = "", content_type: str = "image/png") -> bytes:
    head = (
        f"POST /v1/classify{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _multipart(parts: list[bytes]) -> bytes:
    boundary = "fmnist-hostile-boundary"
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{i}.png"\r\n'
        f"Content-Type: image/png\r\n\r\n".encode()
        + part
        + b"\r\n"
        for i, part in enumerate(parts)
    )
    body += f"--{boundary}--\r\n".encode()
    return _post(body, content_type=f"multipart/form-data; boundary={boundary}")


def attacks() -> list[Case]:
    """The uploads of issue 29's table, then three more of ours."""
    png9000 = hostile.blank_png(9000, 9000)
    flat = hostile.flat_jpeg(1400, 1400)  # its scans are a few bytes each
    repeated = hostile.repeat_scan(flat, 800, hostile.costliest_scan(flat))
    return [
        Case("9000x9000 RGBA PNG, mode=auto", _post(png9000)),
        Case("9000x9000 RGBA PNG, mode=raw", _post(png9000, "?mode=raw")),
        Case(
            "9000x9000 progressive JPEG, mode=raw",
            _post(hostile.jpeg(9000, 9000, progressive=True, quality=30), "?mode=raw"),
        ),
        Case("two 6000x6000 RGBA PNGs at once", _post(hostile.blank_png(6000, 6000)), 2),
        Case("progressive JPEG, a scan repeated 800 times", _post(repeated)),
        Case("3 MiB PNG of 262,000 empty chunks", _post(hostile.png_with_chunks(262_000))),
        Case("ours: 4000x4000 RLE8 BMP", _post(hostile.rle_bmp(4000, 4000))),
        Case("ours: TIFF of 400,000 strips", _post(hostile.tiff_strips(64, 400_000, 400_000))),
        Case("ours: GIF comment of 2 million blocks", _post(hostile.gif_comment(2_000_000))),
    ]


def worst_allowed() -> list[Case]:
    """One upload per format at just under the default budget, counted as decode.count does."""
    base = hostile.jpeg(1154, 1154, progressive=True)
    more = 100 - len(hostile.scans(base))
    scans100 = hostile.repeat_scan(base, more, hostile.costliest_scan(base))
    quarter = hostile.blank_png(1581, 1581)
    return [
        Case(f"{SIDE}x{SIDE} RGBA PNG", _post(hostile.blank_png(SIDE, SIDE)), 4),
        Case("2236x2236 16-bit RGBA PNG", _post(hostile.png16(2236, 2236)), 4),
        Case("3650x3650 progressive JPEG", _post(hostile.jpeg(3650, 3650, progressive=True)), 4),
        Case("1154x1154 progressive JPEG of 100 scans", _post(scans100), 4),
        Case("9400x9400 JPEG (decoded at 1/8)", _post(hostile.jpeg(9400, 9400, quality=30)), 4),
        Case("1581x1581 WebP", _post(hostile.webp(1581, 1581)), 4),
        Case("2236x2236 RGBA TIFF in one strip", _post(hostile.tiff_one_strip(2236, 2236)), 4),
        Case("790x790 RLE8 BMP", _post(hostile.rle_bmp(790, 790)), 4),
        Case(f"{SIDE}x{SIDE} GIF", _post(hostile.blank_gif(SIDE, SIDE)), 4),
        Case("PNG of 9,990 chunks", _post(hostile.png_with_chunks(9_990)), 4),
        Case("multipart: four 1581x1581 RGBA PNGs", _multipart([quarter] * 4), 4),
    ]


def _reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS (Linux 4.0 and later)


def _peak_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmHWM for pid {pid}")


def _send(port: int, request: bytes) -> tuple[int, bytes, float]:
    client = Client(port)
    start = time.perf_counter()
    try:
        status, body = client.send(request)
    finally:
        client.close()
    return status, body, time.perf_counter() - start


def _huge_head(port: int, size: int = HUGE_HEAD) -> tuple[int, bytes, float]:
    """A GET whose one header line is ``size`` bytes, sent in 1 MiB pieces: the status line
    of the answer (0: none, the server hung up)."""
    request = hostile.head_with_line(size)
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        try:
            for at in range(0, len(request), 1 << 20):
                sock.sendall(request[at : at + (1 << 20)])
        except OSError:
            pass  # refused mid-way: read what it said
        reply = b""
        try:
            while b"\r\n" not in reply and (chunk := sock.recv(65536)):
                reply += chunk
        except OSError:
            pass
    status = int(reply.split()[1]) if reply.startswith(b"HTTP/") else 0
    return status, reply, time.perf_counter() - start


def run_one(port: int, case: Case) -> dict:
    """Send ``case`` once: its status, seconds, and for a good upload whether it was right."""
    try:
        status, body, took = _send(port, case.request)
    except OSError:
        status, body, took = 0, b"", float("nan")
    good = None
    if case.expect_label is not None:
        good = status == 200 and json.loads(body).get("label") == case.expect_label
    return {"upload": case.name, "status": status, "s": took, "good": good}


def _clients(port: int, pid: int, sequences: list[list[Case]]) -> dict:
    """One thread per sequence, sending its cases in order; the answers, the slowest, the
    server's CPU, peak RSS (reset first) and RSS after."""
    _reset_peak(pid)
    rows: list[dict] = []
    lock = threading.Lock()

    def client(sequence: list[Case]) -> None:
        for case in sequence:
            row = run_one(port, case)
            with lock:
                rows.append(row)

    cpu = cpu_seconds(pid)
    threads = [threading.Thread(target=client, args=(seq,)) for seq in sequences]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    slowest = max(rows, key=lambda r: r["s"])
    good = [r for r in rows if r["good"] is not None]
    return {
        "uploads": len(rows),
        "statuses": dict(sorted(Counter(str(r["status"]) for r in rows).items())),
        "max_s": round(slowest["s"], 3),
        "slowest": slowest["upload"],
        "good_wrong": sum(1 for r in good if not r["good"]),
        "good_max_s": round(max((r["s"] for r in good), default=0.0), 3),
        "server_cpu_s": round(cpu_seconds(pid) - cpu, 3),
        "peak_rss_mib": round(_peak_mib(pid), 1),
        "rss_after_mib": round(rss_mib(pid), 1),
    }


def run_case(port: int, pid: int, case: Case, rounds: int) -> dict:
    """``case`` sent once alone (the time one upload costs without others beside it), then
    ``rounds`` times by each of ``case.clients`` clients at once."""
    alone = run_one(port, case)["s"] if case.clients > 1 else None
    row = _clients(port, pid, [[case] * rounds] * case.clients)
    return {
        **row,
        "alone_s": round(alone, 3) if alone is not None else None,
        "server_cpu_s_per_upload": round(row["server_cpu_s"] / row["uploads"], 3),
    }


def all_at_once(port: int, pid: int, cases: list[Case], rounds: int, good: Case) -> dict:
    """Four clients, each cycling through every case from its own start, a good one between."""
    orders = [cases[k:] + cases[:k] for k in range(4)]
    return _clients(
        port, pid, [[c for case in order for c in (case, good)] * rounds for order in orders]
    )


class _Server:
    """A fresh fmnist-serve for one case (from the checkout ``root``; None: this one), so that
    no case inherits another's memory."""

    def __init__(self, workers: int, root: str | None):
        self.proc, self.port = launch(["--workers", str(workers)], cwd=root)
        self.pid = self.proc.pid

    def __enter__(self) -> _Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(60)


def _huge_head_row(port: int, pid: int) -> dict:
    _reset_peak(pid)
    status, _, took = _huge_head(port)
    return {
        "statuses": {str(status): 1},
        "max_s": round(took, 3),
        "alone_s": None,
        "server_cpu_s_per_upload": float("nan"),
        "peak_rss_mib": round(_peak_mib(pid), 1),
        "rss_after_mib": round(rss_mib(pid), 1),
    }


def measure(args: argparse.Namespace) -> dict:
    """Every case on a fresh server of each side (the --before checkout first, when given,
    then this one): the two sides interleaved case by case, under the same load."""
    from fmnist_edge.common.machine import cpu_model, usable_cores

    sides = {"after": None} if args.before is None else {"before": args.before, "after": None}
    good = Case("28x28 PNG (a good one)", _post(ANKLE_BOOT.read_bytes()), 1, "Ankle boot")
    worst = worst_allowed()
    report: dict = {
        "environment": {
            "cpu": cpu_model(),
            "cores": usable_cores(),
            "load_average_before": [round(x, 2) for x in os.getloadavg()],
            "before": str(Path(args.before).resolve()) if args.before else None,
            "workers": args.workers,
            "rounds": args.rounds,
        },
        "idle_rss_mib": {},
        "cases": [],
    }
    plan = [(case, 1) for case in attacks()] + [(case, args.rounds) for case in worst]
    plan.append((Case("a 32 MiB header line", hostile.head_with_line(HUGE_HEAD)), 0))
    for case, rounds in plan:
        row = {
            "upload": case.name,
            "bytes": len(case.request),
            "clients": case.clients,
            "rounds": rounds,
        }
        for side, root in sides.items():
            with _Server(args.workers, root) as server:
                report["idle_rss_mib"].setdefault(side, round(rss_mib(server.pid), 1))
                if rounds:
                    row[side] = run_case(server.port, server.pid, case, rounds)
                else:
                    row[side] = _huge_head_row(server.port, server.pid)
        report["cases"].append(row)
    report["all_at_once"] = {}
    for side, root in sides.items():
        with _Server(args.workers, root) as server:
            mixed = all_at_once(server.port, server.pid, worst, args.rounds, good)
            report["all_at_once"][side] = {**mixed, "good_after": run_one(server.port, good)}
    report["environment"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    return report


def render(r: dict) -> str:
    env = r["environment"]
    sides = list(r["idle_rss_mib"])
    idle = ", ".join(f"{side} {mib:.0f} MiB" for side, mib in r["idle_rss_mib"].items())
    lines = [
        f"CPU {env['cpu']}, {env['cores']} cores; load average {env['load_average_before']} "
        f"before, {env['load_average_after']} after; --workers {env['workers']}"
        + (f"; before: the server of {env['before']}" if env["before"] else "")
        + f"; idle RSS {idle}",
        "",
        "| upload | bytes | clients x uploads | "
        + " | ".join(f"{s}: answers | s alone | max s | CPU s each | peak RSS MiB" for s in sides)
        + " |",
        "| --- | ---: | ---: | "
        + " | ".join("--- | ---: | ---: | ---: | ---:" for _ in sides)
        + " |",
    ]
    for row in r["cases"]:
        cells = []
        for side in sides:
            got = row[side]
            answers = ", ".join(f"{n}x {code}" for code, n in got["statuses"].items())
            cpu = got["server_cpu_s_per_upload"]
            alone = "-" if got["alone_s"] is None else f"{got['alone_s']:.2f}"
            cells.append(
                f"{answers} | {alone} | {got['max_s']:.2f} | "
                f"{'-' if cpu != cpu else f'{cpu:.2f}'} | {got['peak_rss_mib']:.0f}"
            )
        lines.append(
            f"| {row['upload']} | {row['bytes']:,} | {row['clients']} x {row['rounds'] or 1} | "
            + " | ".join(cells)
            + " |"
        )
    lines.append("")
    for side, mix in r["all_at_once"].items():
        lines.append(
            f"{side}, all at once (4 clients, every worst upload and a good one between, "
            f"{mix['uploads']} uploads): peak RSS {mix['peak_rss_mib']:.0f} MiB, "
            f"{mix['rss_after_mib']:.0f} after; slowest {mix['max_s']:.2f} s ({mix['slowest']}); "
            f"server CPU {mix['server_cpu_s']:.1f} s; good answers wrong {mix['good_wrong']}, "
            f"slowest {mix['good_max_s']:.2f} s; answers {mix['statuses']}; a good upload "
            f"afterwards {'right' if mix['good_after']['good'] else 'WRONG'}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=4, help="fmnist-serve --workers")
    parser.add_argument("--rounds", type=int, default=2, help="uploads per client and case")
    parser.add_argument(
        "--before", default=None, help="also run every case on the server of this checkout"
    )
    parser.add_argument("--out", default=None, help="also write the report as JSON here")
    args = parser.parse_args(argv)
    if args.before and not (Path(args.before) / "fmnist_edge").is_dir():
        parser.error(f"--before {args.before}: not a checkout of fmnist-edge")
    check_paths(parser, args)
    report = measure(args)
    print_and_save(render(report), report, args.out)


if __name__ == "__main__":
    main()
