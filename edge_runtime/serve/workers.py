"""Where images are decoded and classified: a few worker threads, each with its own Classifier.

A Classifier (a TFLite interpreter) is not thread-safe. The two safe designs are one shared
interpreter behind a lock, or one interpreter per worker thread; this is the second. LiteRT's
``invoke`` and Pillow's decoders release the GIL, so on a Pi's four cores two to four requests
really do run at once, while a lock would serialize them. An interpreter for a model this size
costs a few MiB, so ``workers`` of them are cheap. Each thread takes one Classifier when it
starts and only ever uses that one: no lock, nothing shared between threads but the job queue.
The event loop stays free to accept and parse requests while the workers compute; requests
beyond ``workers`` wait in the executor's queue (uvicorn's connection limit bounds it).

Decoding happens here too, not on the event loop: a large photo takes tens of milliseconds to
decode on a Pi and must not stall every other connection.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import queue
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from fmnist_edge.common.errors import TooManyPixelsError
from fmnist_edge.edge_runtime.classifier import BUNDLED_MODEL, Classifier, read_model_bytes
from fmnist_edge.edge_runtime.decode import Decoded, decode_bytes
from fmnist_edge.edge_runtime.preprocess import MODES

from .oip import Contract, InferRequest
from .settings import ServeSettings

# Decoders offered to strangers' bytes: the formats a camera, phone or browser produces. Pillow's
# rarer plugins (EPS hands data to Ghostscript, for one) are never tried on an upload.
UPLOAD_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF")


def model_stem(settings: ServeSettings) -> str:
    """The model's name in the Open Inference Protocol: its file's stem ("default" bundled)."""
    return Path(settings.model).stem if settings.model else Path(BUNDLED_MODEL).stem


def model_info(settings: ServeSettings, clf: Classifier) -> dict[str, Any]:
    """What GET /v1/model answers: the model's name, hash, class names, input contract and the
    modes it takes (photo and auto are Fashion-MNIST's)."""
    content, _ = read_model_bytes(settings.model)
    record = clf.record
    provenance = record.provenance
    return {
        "name": Path(settings.model).name if settings.model else "default.tflite (bundled)",
        "oip_name": model_stem(settings),  # the {name} of /v2/models/{name}
        "sha256": hashlib.sha256(content).hexdigest(),
        "bytes": len(content),
        "format": record.format if clf.has_record else None,  # None: a bare .tflite
        "runtime": clf.runtime,
        "class_names": list(clf.class_names),
        "input": {**record.input.to_dict(), "dtype": clf.input_dtype},
        "output": {"values": clf.output_values},
        "normalization": record.to_dict()["normalization"] if clf.has_record else None,
        "quantization": record.mode,
        "modes": list(MODES) if record.is_fashion_mnist else ["auto", "raw"],
        "dataset": record.dataset,
        "arch": provenance.get("arch"),
        "training_metrics": provenance.get("training_metrics"),
        "validation": record.validation,
    }


class ClassifierPool:
    """``settings.workers`` threads, each holding its own Classifier for its whole life.

    The Classifiers are built here, in the caller's thread, so that a bad model stops the
    server before it listens; ``close()`` waits for the jobs still running.
    """

    def __init__(self, settings: ServeSettings):
        self.settings = settings
        self._spare: queue.SimpleQueue[Classifier] = queue.SimpleQueue()
        first = None
        for _ in range(settings.workers):
            clf = Classifier(settings.model, threads=settings.threads, runtime=settings.runtime)
            clf.predict_proba(np.zeros((1, *clf.image_shape), np.uint8))  # the first is slow
            first = first or clf
            self._spare.put(clf)
        self.info = model_info(settings, first)
        self.num_classes = len(first.class_names)
        self.modes = tuple(self.info["modes"])
        self.image_size = first.image_size
        self.model_name = self.info["name"]
        height, width = first.image_size
        self.contract = Contract(
            name=self.info["oip_name"],
            height=height,
            width=width,
            channels=3 if first.color == "rgb" else 1,  # as predict_proba takes them
            class_names=tuple(first.class_names),
            modes=self.modes,
        )
        self._local = threading.local()
        self._executor = ThreadPoolExecutor(
            max_workers=settings.workers,
            thread_name_prefix="fmnist-serve-worker",
            initializer=self._adopt,
        )

    def _adopt(self) -> None:
        # The executor starts at most max_workers threads, one per Classifier put above.
        self._local.clf = self._spare.get_nowait()

    def _decode(self, name: str, data: bytes, spent: int) -> Decoded:
        """One upload decoded within what is left of its request's pixel budget."""
        limits = self.settings.decode
        left = dataclasses.replace(limits, max_pixels=max(1, limits.max_pixels - spent))
        try:
            side = max(self.image_size)  # decoded and reduced for the model's own size
            return decode_bytes(data, name, limits=left, formats=UPLOAD_FORMATS, side=side)
        except TooManyPixelsError as exc:
            if not spent:
                raise
            raise TooManyPixelsError(
                name, exc.what, exc.pixels, limits.max_pixels, spent=spent
            ) from None

    def _decoded(
        self, uploads: list[tuple[str, bytes]], gone: threading.Event | None
    ) -> Iterator[tuple[Decoded, float]]:
        """Each upload decoded in order (ImageError stops), all of them within one pixel
        budget, and none once ``gone`` is set; with the time it started."""
        spent = 0
        for name, data in uploads:
            if gone is not None and gone.is_set():
                return  # nobody waits for the answer: the rest costs nothing
            start = time.perf_counter()
            decoded = self._decode(name, data, spent)
            spent += decoded.pixels
            yield decoded, start

    def _classify(
        self,
        uploads: list[tuple[str, bytes]],
        mode: str,
        top_k: int,
        gone: threading.Event | None = None,
    ) -> list[dict[str, Any]]:
        """In a worker thread: decode and classify each upload (see ``_decoded``)."""
        clf: Classifier = self._local.clf
        results = []
        for decoded, start in self._decoded(uploads, gone):
            pred = clf.predict(decoded.image, mode=mode, top_k=top_k)
            results.append(
                {
                    "label": pred.label,
                    "index": pred.index,
                    "score": pred.score,
                    "top_k": [{"label": label, "score": p} for label, p in pred.top_k],
                    "model": self.model_name,
                    "ms": round((time.perf_counter() - start) * 1000.0, 3),
                }
            )
        return results

    def _infer(self, request: InferRequest, gone: threading.Event) -> np.ndarray | None:
        """In a worker thread: (N, K) probabilities of a request's pixels or files, each file
        prepared exactly as /v1/classify prepares it; None once ``gone`` is set."""
        clf: Classifier = self._local.clf
        if request.pixels is not None:
            return None if gone.is_set() else clf.predict_proba(request.pixels)
        files = request.files or []
        arrays = [clf.to_array(d.image, request.mode) for d, _ in self._decoded(files, gone)]
        return clf.predict_proba(np.stack(arrays)) if len(arrays) == len(files) else None

    def infer(self, request: InferRequest, gone: threading.Event) -> asyncio.Future:
        """A future of ``request``'s (N, K) probabilities, computed in a worker."""
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(self._executor, self._infer, request, gone)

    def classify(
        self,
        uploads: list[tuple[str, bytes]],
        mode: str,
        top_k: int,
        gone: threading.Event | None = None,
    ) -> asyncio.Future[list[dict[str, Any]]]:
        """Decode and classify ``uploads`` in a worker: a future of one result dict per upload,
        in order (fewer once ``gone`` is set: the worker stops before its next image).
        Cancelling the future drops the job if it has not started."""
        loop = asyncio.get_running_loop()
        job = self._classify
        return loop.run_in_executor(self._executor, job, uploads, mode, top_k, gone)

    def close(self) -> None:
        """Wait for the images being decoded (each within its budget); drop queued jobs."""
        self._executor.shutdown(wait=True, cancel_futures=True)
