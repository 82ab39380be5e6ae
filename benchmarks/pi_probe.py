"""What the emulated-Pi check runs on both sides: the fixed image set, one classification pass
through the Python API (labels and the raw int8 output tensors), and the comparisons.

It runs inside the arm64 rootfs as well as on the host, so it imports only the standard library,
numpy, Pillow and edge_runtime; run as a script it blocks TensorFlow outright (only then: a
process that imports this module, such as the test suite, keeps its TensorFlow):

    python -m fmnist_edge.benchmarks.pi_probe images OUT_DIR [--count 256] [--photos 8]
    python -m fmnist_edge.benchmarks.pi_probe classify IMAGE_DIR OUT.json [--model M] [--runtime R]
    python -m fmnist_edge.benchmarks.pi_probe serve IMAGE OUT.json [--model M]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import platform
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

IMAGE_DIRS = ("raw", "photo")  # relative to the image directory; fmnist-infer is given these
# aarch64 AT_HWCAP bits: they show which CPU QEMU emulates (cortex-a72: none of these;
# cortex-a76: atomics and asimddp; QEMU's default "max": all three, SVE included).
HWCAP_BITS = {"atomics": 8, "asimddp": 20, "sve": 22}
AT_HWCAP = 16


# --- the image set (host side) ---------------------------------------------------------------


def test_indices(total: int, count: int) -> list[int]:
    """``count`` test-set indices spread evenly over the split: fixed, no random state."""
    count = min(count, total)
    return sorted({round(i * (total - 1) / max(count - 1, 1)) for i in range(count)})


def write_images(out_dir: Path, count: int, photos: int, data_dir: str | None = None) -> int:
    """Write ``count`` official test images as 28x28 PNGs under OUT/raw and ``photos`` of them as
    product-photo-like JPEGs under OUT/photo (upscaled, negated to dark-on-light, padded).
    Returns the number of files written."""
    from PIL import Image

    from fmnist_edge.dataset.files import load_split

    split = load_split("test", data_dir)
    indices = test_indices(len(split.images), count)
    (out_dir / "raw").mkdir(parents=True, exist_ok=True)
    (out_dir / "photo").mkdir(parents=True, exist_ok=True)
    for i in indices:
        Image.fromarray(split.images[i], mode="L").save(out_dir / "raw" / f"test-{i:05d}.png")
    for k, i in enumerate(indices[:: max(1, len(indices) // max(photos, 1))][:photos]):
        # (28, 28) light-on-dark -> a 5x larger dark-on-light RGB picture on a wide white margin
        big = Image.fromarray(255 - split.images[i], mode="L").resize(
            (140, 140), Image.Resampling.BICUBIC
        )
        canvas = Image.new("L", (140 + 40 * (k % 3), 140 + 20 * (k % 2)), 255)
        canvas.paste(big, ((canvas.width - 140) // 2, (canvas.height - 140) // 2))
        rgb = Image.merge("RGB", [canvas, canvas, canvas.point(lambda v: max(v - 6, 0))])
        rgb.save(out_dir / "photo" / f"photo-{i:05d}.jpg", quality=90)
    return len(indices) + min(photos, len(indices))


def image_paths(image_dir: Path) -> list[str]:
    """The image files, relative to ``image_dir``, in fmnist-infer's order (sorted per dir)."""
    return [
        f"{d}/{p.name}"
        for d in IMAGE_DIRS
        if (image_dir / d).is_dir()
        for p in sorted((image_dir / d).iterdir())
        if p.suffix in (".png", ".jpg")
    ]


# --- one classification pass (both sides) ----------------------------------------------------


def _hwcap() -> dict[str, bool] | None:
    if platform.machine() != "aarch64":
        return None
    libc = ctypes.CDLL(None)
    libc.getauxval.restype = ctypes.c_ulong
    value = libc.getauxval(AT_HWCAP)
    return {name: bool(value >> bit & 1) for name, bit in HWCAP_BITS.items()}


def classify(image_dir: Path, model: str | None, runtime: str | None) -> dict[str, Any]:
    """Classify every image under ``image_dir`` with edge_runtime's Python API.

    Returns the labels and scores from ``predict_batch``, the raw output tensor per image
    (``Classifier.output_tensor``: int8 logits for a default export) and, for a model exported
    with --keep-softmax, the final SOFTMAX op's raw input (see ``softmax_inputs``)."""
    import numpy as np
    import PIL

    from fmnist_edge.common.machine import cpu_model
    from fmnist_edge.edge_runtime import Classifier
    from fmnist_edge.edge_runtime.classifier import read_model_bytes
    from fmnist_edge.edge_runtime.preprocess import to_array

    paths = image_paths(image_dir)
    clf = Classifier(model, runtime=runtime)
    files = [image_dir / p for p in paths]
    preds = clf.predict_batch(files, mode="auto", top_k=1)
    pixels = np.stack([to_array(f, "auto") for f in files])  # (N, 28, 28) uint8
    out = clf.model.output
    if not out.quantized:
        raise ValueError(f"{clf.name}: {out.dtype} output; the check compares quantized outputs")
    raw = clf.output_tensor(pixels)
    if clf.output_values == "logits":  # the default export: the output is the logits
        logits, logits_scale = raw, out.scale
    else:
        logits, logits_scale = softmax_inputs(clf, read_model_bytes(model)[0], pixels, raw)
    return {
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "hwcap": _hwcap(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pillow": PIL.__version__,
        "runtime": clf.runtime,
        "model": clf.name,
        "output_dtype": out.dtype.name,
        "output_values": clf.output_values,
        "output_scale": out.scale,
        "logits_scale": logits_scale,
        "tensorflow_importable": _tensorflow_importable(),
        "paths": paths,
        "labels": [p.label for p in preds],
        "indices": [p.index for p in preds],
        "scores": [p.score for p in preds],
        "outputs": raw.astype(int).tolist(),
        "logits": None if logits is None else logits.astype(int).tolist(),
    }


def serve_once(image: Path, model: str | None, timeout: float = 600.0) -> dict[str, Any]:
    """Start fmnist-serve (the [serve] extra) on a free 127.0.0.1 port, POST ``image`` to
    /v1/classify, ask /healthz, stop it with SIGTERM; what it answered and how it exited."""
    import signal
    import subprocess
    import threading
    import time
    import urllib.request

    cmd = [sys.executable, "-m", "fmnist_edge.edge_runtime.serve.cli", "--port", "0"]
    cmd += ["--workers", "1", *(["--model", model] if model else [])]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    found: list[str] = []
    lines: list[str] = []
    ready = threading.Event()

    def drain() -> None:
        for line in proc.stderr:
            lines.append(line)
            if "listening on http://" in line and not found:
                found.append(line.split("listening on ", 1)[1].split()[0])
                found.append(line.rstrip().rstrip(")").rsplit("; ", 1)[-1])  # the HTTP parser
                ready.set()
        ready.set()

    threading.Thread(target=drain, daemon=True).start()
    no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only
    try:
        if not ready.wait(timeout) or not found:
            raise RuntimeError("fmnist-serve did not start: " + " | ".join(lines[-3:]))
        startup_s = time.monotonic() - start
        request = urllib.request.Request(
            found[0] + "/v1/classify?top_k=3",
            data=image.read_bytes(),
            headers={"Content-Type": "image/png"},
            method="POST",
        )
        t0 = time.monotonic()
        with no_proxy.open(request, timeout=timeout) as response:
            answer = json.loads(response.read())
        request_s = time.monotonic() - t0
        with no_proxy.open(found[0] + "/healthz", timeout=timeout) as response:
            health = json.loads(response.read())
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            exit_code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            exit_code = proc.wait()
    return {
        "image": image.name,
        "label": answer["label"],
        "score": answer["score"],
        "top_k": answer["top_k"],
        "healthz": health.get("status"),
        "http_parser": found[1],
        "exit_code": exit_code,
        "startup_s": round(startup_s, 2),
        "request_s": round(request_s, 3),
    }


def softmax_inputs(clf: Any, content: bytes, pixels: Any, outputs: Any) -> tuple[Any, float]:
    """The raw input of the model's final SOFTMAX op per image and its scale, or (None, 0.0)
    for a model without one.

    Why: XNNPACK runs the convolutions, pooling and dense layers and is bit-exact across
    x86 and arm64, but it does not take an int8 SOFTMAX: TFLite's own kernel runs it, with a
    NEON path on arm64, and rounds differently in rare cases (1 LSB). Softmax also magnifies:
    one LSB of the logits can move the int8 probabilities by several LSB. So the logits are
    the tensor to hold to bit-exactness. A second interpreter with every tensor preserved
    reads them, fed by the Classifier's own input preparation; its outputs must equal the
    Classifier's."""
    import numpy as np

    from fmnist_edge.edge_runtime.interpreter import load_runtime

    rt = load_runtime(clf.runtime.rsplit(" ", 1)[0])
    with warnings.catch_warnings():  # "intended for debugging purposes only": so it is
        warnings.simplefilter("ignore")
        interp = rt.interpreter_class(model_content=content, experimental_preserve_all_tensors=True)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    ops = [o for o in interp._get_ops_details() if out["index"] in list(o["outputs"])]
    if not ops or ops[0]["op_name"] != "SOFTMAX":
        return None, 0.0
    logits_index = int(ops[0]["inputs"][0])
    details = {d["index"]: d for d in interp.get_tensor_details()}
    logits_scale = float(details[logits_index]["quantization"][0])
    interp.resize_tensor_input(inp["index"], [1, *inp["shape"][1:]])
    interp.allocate_tensors()
    logits, again = [], []
    for image in pixels:
        x = clf._input(image[None])  # the Classifier's own normalization and quantization
        interp.set_tensor(inp["index"], x.reshape(1, *inp["shape"][1:]))
        interp.invoke()
        logits.append(interp.get_tensor(logits_index)[0].copy())
        again.append(interp.get_tensor(out["index"])[0].copy())
    if not np.array_equal(np.stack(again), outputs):
        raise RuntimeError("the logits interpreter disagrees with the Classifier's outputs")
    return np.stack(logits), logits_scale


def _tensorflow_importable() -> bool:
    """Is a tensorflow package installed at all? (PathFinder ignores our sys.modules block.)"""
    from importlib.machinery import PathFinder

    return PathFinder.find_spec("tensorflow") is not None


# --- comparisons (host side) -----------------------------------------------------------------


@dataclass(frozen=True)
class Agreement:
    """How a run on the emulated Pi matches its reference run."""

    name: str  # e.g. "ai-edge-litert: int8 logits"
    compared: int  # images compared
    labels_agree: int  # images with the same top label
    differing: int  # raw tensor values (API) or JSON records (CLI) that differ
    max_lsb: int | None = None  # largest |difference| of the raw int8 tensor (API runs)
    allowed_lsb: int | None = None  # bound on max_lsb (None: none)
    identical: bool = False  # every value or record must match exactly
    near_ties: int = 0  # labels that differ where the reference's logits are a near-tie

    @property
    def ok(self) -> bool:
        if self.compared == 0 or self.labels_agree + self.near_ties != self.compared:
            return False
        if self.allowed_lsb is not None:
            if self.max_lsb is None or self.max_lsb > self.allowed_lsb:
                return False
        return not (self.identical and self.differing)

    def line(self) -> str:
        text = f"{self.name:38s} {self.labels_agree}/{self.compared} labels agree"
        if self.near_ties:
            text += f" (+{self.near_ties} near-tie)"
        if self.max_lsb is not None:
            text += f", max diff {self.max_lsb} LSB (allowed {self.allowed_lsb})"
            text += f", {self.differing} values differ"
        else:
            text += f", {self.differing} records differ"
        return text + (": ok" if self.ok else ": MISMATCH")


def softmax_bound(logits_lsb: int, logits_scale: float, output_scale: float) -> int:
    """Largest int8 probability difference (LSB) that logits differing by ``logits_lsb`` can
    cause through softmax: |d p_i / d z_j| summed over j is 2 p_i (1 - p_i) <= 1/2, so
    |dp| <= logits_lsb * logits_scale / 2; plus 1 LSB for the kernels' own rounding."""
    return math.ceil(0.5 * logits_lsb * logits_scale / output_scale - 1e-9) + 1


def compare_tensors(
    name: str, ref: dict, other: dict, key: str, allowed_lsb: int, logits_lsb: int = 0
) -> Agreement:
    """Python-API runs: the same images, the raw int8 tensors ``key`` ("outputs" or "logits")
    within ``allowed_lsb`` (0: bit-identical), and the same labels, except where the logits
    may differ by ``logits_lsb`` and the reference's logits for the two labels are within
    twice that (a near-tie: either label is a correct result of the tolerance)."""
    import numpy as np

    if ref["paths"] != other["paths"] or ref.get(key) is None or other.get(key) is None:
        return Agreement(name, 0, 0, 0, None, allowed_lsb)
    agree = near = 0
    for i, (a, b) in enumerate(zip(ref["indices"], other["indices"], strict=True)):
        if a == b:
            agree += 1
        elif ref.get("logits") is not None:
            near += 0 <= ref["logits"][i][a] - ref["logits"][i][b] <= 2 * logits_lsb
    diff = np.abs(np.asarray(ref[key], np.int64) - np.asarray(other[key], np.int64))
    max_lsb = int(diff.max()) if diff.size else 0
    return Agreement(
        name,
        len(ref["paths"]),
        agree,
        int((diff > 0).sum()),
        max_lsb,
        allowed_lsb,
        identical=allowed_lsb == 0,
        near_ties=near,
    )


def label_agreement(ref: dict, other: dict) -> tuple[int, int]:
    """(images with the same label, images compared): for information across runtimes."""
    same = sum(a == b for a, b in zip(ref["labels"], other["labels"], strict=True))
    return same, len(ref["labels"])


def read_json_lines(text: str) -> dict[str, dict]:
    """fmnist-infer --json output -> {path: record}."""
    records = [json.loads(line) for line in text.splitlines() if line.strip()]
    return {r["path"]: r for r in records}


def compare_cli(name: str, cli: dict[str, dict], api: dict) -> Agreement:
    """fmnist-infer --json against the Python API on the same machine and runtime: every image
    present, no errors, the same label, class index and score (rounded as the CLI prints)."""
    expected = {
        path: (label, round(score, 6))
        for path, label, score in zip(api["paths"], api["labels"], api["scores"], strict=True)
    }
    failed = sum("error" in r for r in cli.values())
    if set(cli) != set(expected) or failed:
        return Agreement(name, len(set(cli) & set(expected)), 0, failed, identical=True)
    agree = sum(cli[p]["label"] == expected[p][0] for p in expected)
    differing = sum((cli[p]["label"], cli[p]["score"]) != expected[p] for p in expected)
    return Agreement(name, len(expected), agree, differing, identical=True)


# --- command line (both sides) ---------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fmnist_edge.benchmarks.pi_probe")
    sub = parser.add_subparsers(dest="command", required=True)
    images = sub.add_parser("images", help="write the fixed image set")
    images.add_argument("out_dir", type=Path)
    images.add_argument("--count", type=int, default=256)
    images.add_argument("--photos", type=int, default=8)
    images.add_argument("--data-dir", default=None)
    run = sub.add_parser("classify", help="classify the image set, write JSON")
    run.add_argument("image_dir", type=Path)
    run.add_argument("out_json", type=Path)
    run.add_argument("--model", default=None)
    run.add_argument("--runtime", default=None)
    serve = sub.add_parser("serve", help="classify one image through fmnist-serve, write JSON")
    serve.add_argument("image", type=Path)
    serve.add_argument("out_json", type=Path)
    serve.add_argument("--model", default=None)
    args = parser.parse_args(argv)
    if args.command == "images":
        print(write_images(args.out_dir, args.count, args.photos, args.data_dir))
    elif args.command == "serve":
        args.out_json.write_text(json.dumps(serve_once(args.image, args.model)))
    else:
        result = classify(args.image_dir, args.model, args.runtime)
        args.out_json.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.modules.setdefault("tensorflow", None)  # type: ignore[arg-type]  # any import of it fails
    sys.exit(main())
