"""fmnist-serve on two runtimes, interleaved: the latency of one runtime's server as a fraction
of another's, at the same load, in one run.

    python -m fmnist_edge.benchmarks.serve_runtimes [--runtimes ai-edge-litert,openvino] \
        [--clients 1] [--rounds 5] [--requests 1000] [--workers 2] [--out serve_runtimes.json]

Both servers are started (``fmnist-serve --port 0 --runtime R``, 127.0.0.1 only) and warmed up,
then each round runs the same phase (serve_load.run_phase: ``clients`` keep-alive clients, the
official test images as PNG uploads) on each server in turn, the order alternating between
rounds, so that a change in the machine's load falls on both. Each round gives the ratio of
every runtime's p50 and requests/s to the first runtime's; the median and range over rounds
are reported. Labels that differ from the in-process LiteRT Classifier's are counted, not failed
(another runtime may round an int8 tie the other way).
"""

from __future__ import annotations

import argparse
import os
import statistics

from fmnist_edge.edge_runtime.interpreter import ALL_RUNTIMES

from .report import check_paths, print_and_save
from .serve_load import Upload, _request, in_process_rate, launch, make_uploads, run_phase

GOAL = {"runtime": "openvino", "clients": 1, "p50_ratio": 0.8}  # issue 30: p50 <= 0.8x LiteRT's


def measure(args: argparse.Namespace) -> dict:
    from fmnist_edge.common.machine import cpu_model, usable_cores

    pngs, _ = make_uploads(args.images, args.data_dir)
    _, _, labels = in_process_rate(pngs, args.model, 0.2)  # LiteRT's labels for the checks
    good = [Upload(_request(p), 200, label) for p, label in zip(pngs, labels, strict=True)]
    options = ["--workers", str(args.workers)] + (["--model", args.model] if args.model else [])
    if args.threads:
        options += ["--threads", str(args.threads)]
    servers = {}
    try:
        for runtime in args.runtimes:
            servers[runtime] = launch([*options, "--runtime", runtime])
        for proc, port in servers.values():
            run_phase(port, good, args.clients, min(300, args.requests), args.seconds, proc.pid)
        rounds = []
        for r in range(args.rounds):
            order = args.runtimes if r % 2 == 0 else args.runtimes[::-1]
            row = {}
            for runtime in order:
                proc, port = servers[runtime]
                row[runtime] = run_phase(
                    port, good, args.clients, args.requests, args.seconds, proc.pid
                )
            rounds.append(row)
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(30)
    base = args.runtimes[0]
    summary = {}
    for runtime in args.runtimes:
        p50 = [row[runtime]["p50_ms"] for row in rounds]
        ratio = [row[runtime]["p50_ms"] / row[base]["p50_ms"] for row in rounds]
        rps = [row[runtime]["requests_per_s"] / row[base]["requests_per_s"] for row in rounds]
        summary[runtime] = {
            "p50_ms": [min(p50), statistics.median(p50), max(p50)],
            "p99_ms_median": statistics.median(row[runtime]["p99_ms"] for row in rounds),
            "p50_ratio": [
                round(min(ratio), 3),
                round(statistics.median(ratio), 3),
                round(max(ratio), 3),
            ],
            "requests_per_s_ratio_median": round(statistics.median(rps), 3),
            "labels_differing": sum(row[runtime]["good_lost"] for row in rounds),
            "errors": sum(row[runtime]["transport_errors"] for row in rounds),
            "requests": sum(row[runtime]["requests"] for row in rounds),
        }
    goal = summary.get(GOAL["runtime"])
    met = bool(
        goal
        and args.clients == GOAL["clients"]
        and base == "ai-edge-litert"
        and goal["p50_ratio"][1] <= GOAL["p50_ratio"]
    )
    return {
        "environment": {
            "cpu": cpu_model(),
            "cores": usable_cores(),
            "load_average_before": [round(x, 2) for x in os.getloadavg()],
            "workers": args.workers,
            "threads": args.threads,
            "clients": args.clients,
        },
        "rounds": rounds,
        "summary": summary,
        "goal": {**GOAL, "met": met},
    }


def render(r: dict) -> str:
    env, base = r["environment"], next(iter(r["summary"]))
    lines = [
        f"CPU {env['cpu']}, {env['cores']} cores, load average {env['load_average_before']}; "
        f"fmnist-serve --workers {env['workers']}, {env['clients']} client(s), "
        f"{len(r['rounds'])} interleaved rounds",
        "",
        f"| runtime | p50 ms (min / median / max) | p99 ms (median) | p50 x {base} (min / median "
        f"/ max) | req/s x {base} | labels unlike LiteRT's | errors |",
        "| --- | --- | ---: | --- | ---: | ---: | ---: |",
    ]
    for runtime, s in r["summary"].items():
        lines.append(
            f"| {runtime} | {' / '.join(f'{v:.3f}' for v in s['p50_ms'])} | "
            f"{s['p99_ms_median']:.3f} | {' / '.join(f'{v:.2f}' for v in s['p50_ratio'])} | "
            f"{s['requests_per_s_ratio_median']:.2f} | {s['labels_differing']} of "
            f"{s['requests']:,} | {s['errors']} |"
        )
    g = r["goal"]
    lines.append(
        f"\ngoal ({g['runtime']} p50 <= {g['p50_ratio']}x ai-edge-litert's at {g['clients']} "
        f"client): {'met' if g['met'] else 'not met'}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runtimes",
        default="ai-edge-litert,openvino",
        help="fmnist-serve --runtime values; ratios are to the first",
    )
    parser.add_argument("--model", default=None, help="a .tflite (default: the bundled model)")
    parser.add_argument("--workers", type=int, default=2, help="fmnist-serve --workers")
    parser.add_argument("--threads", type=int, default=None, help="fmnist-serve --threads")
    parser.add_argument("--clients", type=int, default=1, help="concurrent clients")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--requests", type=int, default=1000, help="requests per phase (cap)")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per phase (cap)")
    parser.add_argument("--images", type=int, default=256, help="distinct test images")
    parser.add_argument("--data-dir", default=None, help="Fashion-MNIST IDX files")
    parser.add_argument("--out", default=None, help="also write the report as JSON here")
    args = parser.parse_args(argv)
    args.runtimes = [r.strip() for r in args.runtimes.split(",") if r.strip()]
    if len(args.runtimes) < 2 or len(set(args.runtimes)) != len(args.runtimes):
        parser.error("--runtimes: give two or more different runtimes, comma-separated")
    unknown = [r for r in args.runtimes if r not in ALL_RUNTIMES]
    if unknown:
        parser.error(f"--runtimes: {', '.join(unknown)}: not one of {', '.join(ALL_RUNTIMES)}")
    for name, value in (
        ("--rounds", args.rounds),
        ("--clients", args.clients),
        ("--requests", args.requests),
        ("--workers", args.workers),
    ):
        if value < 1:
            parser.error(f"{name} must be >= 1 (got {value})")
    check_paths(parser, args)
    report = measure(args)
    print_and_save(render(report), report, args.out)


if __name__ == "__main__":
    main()
