"""This CPU's multiply-accumulate limits, measured: what a runtime's images/s is a fraction of.

    python -m fmnist_edge.benchmarks.silicon [--seconds 1] [--out silicon.json]

A limit is the speed of a tuned kernel on a large layer of known MACs, on 1 thread and on every
usable core: a 3x3 convolution, 64 to 64 channels, 28x28, a batch of 32 (925M MACs), compiled by
OpenVINO (oneDNN's JIT kernels) and timed by OpenVINO's own per-layer counters (PERF_COUNT), so
that only the convolution's kernel counts, not the reorders around it; best of repeated runs.
- int8: u8 activations x s8 weights, 32-bit sums (OpenVINO's low-precision pattern:
  FakeQuantize on the input, dequantized int8 weights), checked to run as an int8 kernel.
  On the AVX2 EPYC this is jit_avx2_I8 at about 93 GMAC/s a core, close to the issue's
  hand-written vpmaddubsw + vpmaddwd + vpaddd microkernel (about 96).
- float32: the same convolution in f32, and numpy's sgemm (its BLAS, 1024 x 1024 x 1024, in a
  process of its own with the thread count set): the faster at each thread count.
It assumes that a model's convolutions can at best run at the speed of this large one, so a
runtime's fraction is ``images/s x MACs per image / limit``. It is a library's best kernel, not
the chip's peak; small layers (ResNet-20's 16-channel ones) reach less of it. Without openvino
there is no int8 limit and float32 comes from numpy alone (the report says so).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from typing import Any

import numpy as np

from fmnist_edge.common.machine import cpu_model, usable_cores

from .report import print_and_save

BATCH, CHANNELS, SIZE, KERNEL = 32, 64, 28, 3
MACS = BATCH * SIZE * SIZE * CHANNELS * CHANNELS * KERNEL * KERNEL  # 925M


_SGEMM = """
import sys, time, numpy as np
a = np.random.default_rng(1).standard_normal((1024, 1024)).astype(np.float32)
a @ a
best, stop = 0.0, time.perf_counter() + float(sys.argv[1])
while time.perf_counter() < stop:
    t0 = time.perf_counter()
    a @ a
    best = max(best, 1024**3 / (time.perf_counter() - t0))
print(best)
"""


def _numpy_sgemm(threads: int, seconds: float) -> float:
    """Best MAC/s of a 1024-cube float32 matmul in numpy's BLAS on ``threads`` threads (in a
    new process: a BLAS reads its thread count once, when it loads)."""
    env = dict(os.environ)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    proc = subprocess.run(
        [sys.executable, "-c", _SGEMM, str(seconds)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60 + 10 * seconds,
    )
    try:
        return float(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return 0.0


def _conv_rate(precision: str, threads: int, seconds: float) -> float:
    """Best MAC/s of the convolution's kernel alone, in ``precision`` ("int8", "float32");
    raises RuntimeError when the int8 one does not run as an int8 kernel."""
    import openvino as ov
    import openvino.opset13 as ops

    rng = np.random.default_rng(0)
    x = ops.parameter([BATCH, CHANNELS, SIZE, SIZE], ov.Type.f32, name="x")
    shape = (CHANNELS, CHANNELS, KERNEL, KERNEL)
    if precision == "int8":
        lo, hi = ops.constant(np.float32(0.0)), ops.constant(np.float32(2.55))
        x_in = ops.fake_quantize(x, lo, hi, lo, hi, 256)  # u8 activations
        w = ops.constant(rng.integers(-127, 128, shape, dtype=np.int8))
        scale = ops.constant(np.full((CHANNELS, 1, 1, 1), 0.01, np.float32))
        weights = ops.multiply(ops.convert(w, ov.Type.f32), scale)
    else:
        x_in, weights = x, ops.constant(rng.standard_normal(shape).astype(np.float32))
    conv = ops.convolution(x_in, weights, [1, 1], [1, 1], [1, 1], [1, 1])
    config = {
        "INFERENCE_NUM_THREADS": str(threads),
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_PRECISION_HINT": "f32",  # no bf16/f16 where the CPU has them: f32 is f32
        "PERF_COUNT": "YES",
    }
    compiled = ov.Core().compile_model(ov.Model([conv], [x]), "CPU", config)
    request = compiled.create_infer_request()
    data = rng.uniform(0, 2.55, (BATCH, CHANNELS, SIZE, SIZE)).astype(np.float32)
    request.infer([data])
    best, stop = 0.0, time.perf_counter() + seconds
    while True:
        request.infer([data])
        kernels = [p for p in request.profiling_info if p.node_type == "Convolution"]
        took = sum(p.real_time.total_seconds() for p in kernels)
        if took > 0:
            best = max(best, MACS / took)
        if time.perf_counter() > stop:
            break
    exec_types = {p.exec_type for p in kernels}
    if precision == "int8" and not any("i8" in e.lower() or "u8" in e.lower() for e in exec_types):
        raise RuntimeError(f"OpenVINO ran the int8 convolution as {sorted(exec_types)}")
    return best


def calibrate(seconds: float = 1.0, cores: int | None = None) -> dict[str, Any]:
    """MAC/s limits, {"int8": {"1": MAC/s, "2": ...}, "float32": {...}} (thread counts as
    strings, as JSON keeps them), plus how each was found."""
    cores = cores or usable_cores()
    counts = sorted({1, cores})
    out: dict[str, Any] = {
        "cpu": cpu_model(),
        "cores": cores,
        "layer": f"conv {KERNEL}x{KERNEL}, {CHANNELS}->{CHANNELS} channels, {SIZE}x{SIZE}, "
        f"batch {BATCH}: {MACS / 1e6:,.0f}M MACs",
        "notes": [],
    }
    f32 = {t: _numpy_sgemm(t, seconds) for t in counts}
    out["numpy_sgemm"] = {str(t): rate for t, rate in f32.items()}
    int8: dict[int, float] = {}
    try:
        for t in counts:
            f32[t] = max(f32[t], _conv_rate("float32", t, seconds))
            int8[t] = _conv_rate("int8", t, seconds)
    except ImportError:
        out["notes"].append("openvino is not installed: no int8 limit, float32 from numpy alone")
    except RuntimeError as exc:
        out["notes"].append(f"no int8 limit: {exc}")
    out["int8"] = {str(t): rate for t, rate in int8.items()}
    out["float32"] = {str(t): rate for t, rate in f32.items()}
    return out


def render(c: dict[str, Any]) -> str:
    lines = [f"CPU {c['cpu']}, {c['cores']} usable cores; {c['layer']}"]
    for precision in ("int8", "float32"):
        for t, rate in sorted(c[precision].items(), key=lambda kv: int(kv[0])):
            lines.append(f"{precision} limit, {t} thread(s): {rate / 1e9:,.1f} GMAC/s")
    for t, rate in sorted(c["numpy_sgemm"].items(), key=lambda kv: int(kv[0])):
        lines.append(f"numpy sgemm, {t} thread(s): {rate / 1e9:,.1f} GMAC/s")
    lines += c["notes"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="timing per measurement")
    parser.add_argument("--out", default=None, help="also write the result as JSON here")
    args = parser.parse_args(argv)
    if args.seconds <= 0:
        parser.error(f"--seconds must be > 0 (got {args.seconds})")
    result = calibrate(args.seconds)
    print_and_save(render(result), result, args.out)


if __name__ == "__main__":
    main()
