"""A .tflite's accuracy on the official test images through a bare LiteRT interpreter: none of
fmnist_edge's inference code between the file and the number, only the input contract that the
interpreter reports. The cross-check of the Classifier's figure for a model card.

    python -m fmnist_edge.benchmarks.bare_accuracy [--model M.tflite] [--limit N]

Input: x = pixel / 255 (the contract our exporter writes into every file's metadata), quantized
with the input tensor's own scale and zero point when it is integer; the predicted class is the
argmax of the output tensor as it comes (dequantizing and softmax are monotonic, so they cannot
change it). Prints the bare accuracy and the Classifier's, and how many predictions differ.
"""

from __future__ import annotations

import argparse

import numpy as np

from fmnist_edge.common.errors import FmnistError

CHUNK = 1000  # images per invoke


def bare_predictions(content: bytes, images: np.ndarray) -> np.ndarray:
    """A .tflite's bytes and (N, 28, 28) uint8 images -> (N,) predicted class indices, with
    ai-edge-litert's Interpreter."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=content, num_threads=1)
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    dtype = np.dtype(inp["dtype"])
    scale, zero_point = inp["quantization"]
    preds, size = [], None
    for start in range(0, len(images), CHUNK):
        x = images[start : start + CHUNK, ..., None].astype(np.float32) / 255.0  # (n, 28, 28, 1)
        if dtype.kind in "iu":
            info = np.iinfo(dtype)
            x = np.clip(np.round(x / scale) + zero_point, info.min, info.max)
        if len(x) != size:
            size = len(x)
            interpreter.resize_tensor_input(inp["index"], [size, 28, 28, 1])
            interpreter.allocate_tensors()
        interpreter.set_tensor(inp["index"], x.astype(dtype))
        interpreter.invoke()
        preds.append(np.argmax(interpreter.get_tensor(out["index"]), axis=1))
    return np.concatenate(preds)


def measure(model: str | None, limit: int | None = None, data_dir: str | None = None) -> dict:
    """Bare and Classifier accuracy of ``model`` (None: the bundled one) on the test images."""
    from fmnist_edge.dataset import load_split
    from fmnist_edge.edge_runtime.classifier import Classifier, read_model_bytes

    test = load_split("test", data_dir)
    images, labels = test.images[:limit], test.labels[:limit]
    clf = Classifier(model, threads=1)
    bare = bare_predictions(read_model_bytes(model)[0], images)
    ours = np.argmax(clf.predict_proba(images), axis=1)
    return {
        "model": clf.name,
        "runtime": clf.runtime,
        "images": int(len(labels)),
        "bare_accuracy": float(np.mean(bare == labels)),
        "classifier_accuracy": float(np.mean(ours == labels)),
        "differ": int(np.sum(bare != ours)),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="a .tflite (default: the bundled model)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N test images")
    parser.add_argument("--data-dir", default=None, help="Fashion-MNIST IDX files")
    args = parser.parse_args(argv)
    try:
        r = measure(args.model, args.limit, args.data_dir)
    except FmnistError as exc:  # a missing or broken model, no dataset: one line
        parser.exit(exc.exit_code, f"error: {exc}\n")
    print(
        f"{r['model']} on {r['images']:,} test images ({r['runtime']}): "
        f"bare interpreter {100 * r['bare_accuracy']:.2f}%, "
        f"Classifier {100 * r['classifier_accuracy']:.2f}%, {r['differ']} predictions differ"
    )


if __name__ == "__main__":
    main()
