"""Fuzz the C decode (edge_runtime/_fastpng.c) under AddressSanitizer and UBSan: every file it
takes must decode to the same pixels in the runtime's own Python decode.

    python -m tools.fastpng_fuzz [--files 100000] [--seed 1]    # gcc, Python's and zlib's headers

It compiles _fastpng.c with -fsanitize=address,undefined into a temporary folder and runs itself
again with the sanitizers' runtimes preloaded (Python itself is not built with them). Half the
files are mutations of plain PNGs (bytes flipped, set, cut, inserted; chunk lengths changed), half
are generated: random sizes, bit depths, colour types, interlacing, row filters (some invalid),
chunk layouts, zlib streams cut or padded. Any sanitizer report stops the run; a file taken with
other pixels than Python's, or refused by Python, is named, and the files are kept.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import struct
import subprocess
import sys
import sysconfig
import tempfile
import zlib
from pathlib import Path

import numpy as np

SOURCE = Path(__file__).resolve().parent.parent / "edge_runtime" / "_fastpng.c"
SIGNATURE = b"\x89PNG\r\n\x1a\n"
BATCH = 500
_CHUNKS = [b"tEXt", b"pHYs", b"gAMA", b"tIME", b"zTXt", b"tRNS", b"sRGB", b"IDAT", b"abcd"]


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def rows_of(pixels: np.ndarray, filters: list[int]) -> bytes:
    """Scanlines, row y filtered with filters[y % len]: 0 None, 1 Sub, 2 Up, 3 Average, 4 Paeth."""
    h, w = pixels.shape
    p = pixels.astype(np.int32)
    out = bytearray()
    for y in range(h):
        up = p[y - 1] if y else np.zeros(w, np.int32)
        left, corner = np.r_[0, p[y, :-1]], np.r_[0, up[:-1]]
        est = left + up - corner
        pa, pb, pc = abs(est - left), abs(est - up), abs(est - corner)
        paeth = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, corner))
        f = filters[y % len(filters)]
        pred = [np.zeros(w, np.int32), left, up, (left + up) >> 1, paeth][f]
        out += bytes([f]) + ((p[y] - pred) % 256).astype(np.uint8).tobytes()
    return bytes(out)


def generated(rng: random.Random) -> bytes:
    h, w = rng.choice([(28, 28), (28, 28), (27, 28), (28, 27), (1, 28)])
    pixels = np.frombuffer(rng.randbytes(h * w), np.uint8).reshape(h, w)
    if rng.random() < 0.5:
        pixels = np.cumsum(pixels % 3, axis=1).astype(np.uint8)
    rows = bytearray(rows_of(pixels, [rng.randrange(5) for _ in range(rng.randint(1, 6))]))
    if rng.random() < 0.05:
        rows[rng.randrange(h) * (w + 1)] = rng.randrange(5, 256)
    if rng.random() < 0.1:
        rows = rows[: rng.randrange(len(rows) + 1)]
    if rng.random() < 0.05:
        rows += bytes(rng.randrange(1, 40))
    stream = zlib.compress(bytes(rows), rng.randrange(10))
    if rng.random() < 0.1:
        stream = stream[: rng.randrange(len(stream) + 1)]
    if rng.random() < 0.05:
        stream += bytes(rng.randrange(1, 4))
    k = rng.randint(1, 6)
    body = [
        chunk(b"IDAT", stream[len(stream) * i // k : len(stream) * (i + 1) // k]) for i in range(k)
    ]
    for _ in range(rng.randrange(4)):
        body.insert(
            rng.randrange(len(body) + 1), chunk(rng.choice(_CHUNKS), bytes(rng.randrange(12)))
        )
    fields = (w, h, rng.choice([8, 8, 8, 16, 4]), rng.choice([0, 0, 0, 2, 3, 4]), 0, 0)
    ihdr = chunk(b"IHDR", struct.pack(">IIBBBBB", *fields, rng.choice([0, 0, 0, 1])))
    data = SIGNATURE + ihdr + b"".join(body) + chunk(b"IEND", b"")
    return data[: rng.randrange(len(data))] if rng.random() < 0.1 else data


def mutated(rng: random.Random, seeds: list[bytes]) -> bytes:
    data = bytearray(rng.choice(seeds))
    for _ in range(rng.randint(1, 4)):
        if len(data) < 20:
            break
        at, how = rng.randrange(len(data)), rng.randrange(5)
        if how == 0:
            data[at] ^= 1 << rng.randrange(8)
        elif how == 1:
            data[at] = rng.randrange(256)
        elif how == 2:
            del data[at:]
            data += bytes(rng.randrange(3))
        elif how == 3:
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
        else:  # a chunk length, or anything else, set to an edge value
            at = rng.randrange(8, len(data) - 8)
            data[at : at + 4] = rng.choice(
                [b"\xff" * 4, b"\x7f\xff\xff\xf0", bytes(4), b"\x80\0\0\0"]
            )
    return bytes(data)


def fuzz(files: int, seed: int, work: Path) -> int:
    """Run in the sanitized process: the number of files taken with wrong pixels."""
    import _fastpng

    from fmnist_edge.common.errors import ImageError
    from fmnist_edge.edge_runtime.budget import DecodeLimits
    from fmnist_edge.edge_runtime.preprocess import to_array

    rng = random.Random(seed)
    seeds = [generated(random.Random(s)) for s in range(40)]
    seeds = [s for s in seeds if len(s) > 60][:8]
    taken = wrong = 0
    for start in range(0, files, BATCH):
        paths = []
        for i in range(min(BATCH, files - start)):
            data = generated(rng) if rng.random() < 0.5 else mutated(rng, seeds)
            paths.append(work / f"{i:03d}.png")
            paths[-1].write_bytes(data)
        chunks, text = rng.choice([(64, 4 << 20), (64, 4 << 20), (5, 4 << 20), (64, 10)])
        out = np.full((len(paths), 28, 28), 7, np.uint8)
        status = _fastpng.decode_gray([str(p) for p in paths], out, 28, 28, chunks, text)
        limits = DecodeLimits(max_segments=chunks, max_metadata=text)
        for path, s, pixels in zip(paths, status, out, strict=True):
            if s != 0:
                continue
            taken += 1
            try:
                same = np.array_equal(to_array(path, "raw", limits=limits), pixels)
                why = "other pixels than Python's"
            except ImageError as exc:
                same, why = False, f"refused by Python: {exc}"
            if not same:
                wrong += 1
                kept = work / f"wrong-{wrong:03d}.png"
                path.rename(kept)
                print(f"{kept}: taken with {why}")
    print(f"{files:,} files, {taken:,} taken by the C decode, {wrong} wrong; no sanitizer report")
    return wrong


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--work", help=argparse.SUPPRESS)  # set in the sanitized process
    args = parser.parse_args()
    if args.work:
        sys.exit(1 if fuzz(args.files, args.seed, Path(args.work)) else 0)
    with tempfile.TemporaryDirectory(prefix="fastpng-fuzz-") as tmp:
        build = Path(tmp)
        target = build / f"_fastpng{sysconfig.get_config_var('EXT_SUFFIX')}"
        flags = ["-O1", "-g", "-fsanitize=address,undefined", "-fno-omit-frame-pointer"]
        include = f"-I{sysconfig.get_paths()['include']}"
        compile_ = ["gcc", *flags, "-shared", "-fPIC", include, str(SOURCE), "-lz", "-o"]
        subprocess.run([*compile_, str(target)], check=True)
        runtimes = [
            subprocess.run(
                ["gcc", f"-print-file-name={lib}"], capture_output=True, text=True
            ).stdout.strip()
            for lib in ("libasan.so", "libubsan.so")
        ]
        env = {
            **os.environ,
            "LD_PRELOAD": " ".join(runtimes),
            "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1",  # Python's own allocations leak
            "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1",
            "PYTHONPATH": os.pathsep.join([str(build), os.environ.get("PYTHONPATH", "")]),
        }
        files = Path(tempfile.mkdtemp(prefix="fastpng-fuzz-files-"))  # kept if one is wrong
        cmd = [sys.executable, "-m", "tools.fastpng_fuzz", "--files", str(args.files)]
        cmd += ["--seed", str(args.seed), "--work", str(files)]
        code = subprocess.run(cmd, env=env, cwd=SOURCE.parent.parent).returncode
    if code == 0:
        shutil.rmtree(files)
    else:
        print(f"kept: {files}", file=sys.stderr)
    sys.exit(code)


if __name__ == "__main__":
    main()
