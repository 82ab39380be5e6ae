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

One exception, for latency: a request the server holds alone (no other request parsed, no job
in a worker, and neither for CALM_SECONDS), of one image that is a small PNG by its header
(INLINE_PIXELS), is classified on the event loop itself when the model answers an image within
INLINE_SECONDS. It borrows the first worker's Classifier, which is safe because no worker has a
job and none can be given one until the loop is free again. The hop to a worker thread and back
is 0.15-0.2 ms of a 1.5 ms request on the 2-core EPYC (docs/benchmarks.md); a request that
arrives meanwhile waits for at most that one image. Under load every job goes to the workers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import queue
import statistics
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
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
# A request may be computed on the event loop (module docstring) when its one image is a PNG of
# at most this many pixels (a 64x64 thumbnail; Fashion-MNIST's are 28x28) and the model takes
# at most INLINE_SECONDS an image: the loop is then never held for more than a few ms.
INLINE_PIXELS = 64 * 64
INLINE_SECONDS = 0.002
CALM_SECONDS = 1.0  # ... and when the server held no other request or job for this long
_PNG_HEAD = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR"  # signature, IHDR's length and type


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


def small_png(data: bytes) -> bool:
    """Whether ``data`` begins as a PNG of at most INLINE_PIXELS pixels (by its header: the
    decoder still checks all of it)."""
    if not data.startswith(_PNG_HEAD) or len(data) < 24:
        return False
    width, height = struct.unpack_from(">II", data, 16)
    return 0 < width * height <= INLINE_PIXELS


def seconds_per_image(clf: Classifier, runs: int = 5) -> float:
    """The median time of ``runs`` single-image predictions (after one to warm up)."""
    x = np.zeros((1, *clf.image_shape), np.uint8)
    clf.predict_proba(x)  # the first is slow
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        clf.predict_proba(x)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


class ClassifierPool:
    """``settings.workers`` threads, each holding its own Classifier for its whole life.

    The Classifiers are built here, in the caller's thread, so that a bad model stops the
    server before it listens; ``close()`` waits for the jobs still running. A job may run on
    the event loop instead (module docstring) once ``requests_held`` says how many requests
    the server holds (serve() sets it); ``ran`` counts the jobs by where they ran.
    """

    def __init__(self, settings: ServeSettings):
        self.settings = settings
        self._spare: queue.SimpleQueue[Classifier] = queue.SimpleQueue()
        first = None
        for _ in range(settings.workers):
            clf = Classifier(settings.model, threads=settings.threads, runtime=settings.runtime)
            if first is None:
                first = clf
                self.inline = seconds_per_image(clf) <= INLINE_SECONDS
            else:
                clf.predict_proba(np.zeros((1, *clf.image_shape), np.uint8))  # the first is slow
            self._spare.put(clf)
        self._loop_clf = first  # lent to the event loop while no worker has a job
        self.requests_held: Callable[[], int] | None = None  # None: every job to a worker
        self.ran: Counter[str] = Counter(event_loop=0, worker=0)
        self._jobs = 0  # in the executor, not finished; counted down in the workers
        self._jobs_lock = threading.Lock()
        self._crowded = -CALM_SECONDS  # when the server last held another request or job
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
        """A future of ``request``'s (N, K) probabilities, computed in a worker (or now, on
        the event loop: ``_alone``)."""
        if request.pixels is not None:  # decoded already: the model's own size
            one = len(request.pixels) == 1
        else:
            one = len(request.files or []) == 1 and small_png(request.files[0][1])
        return self._run(one, self._infer, request, gone)

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
        one = len(uploads) == 1 and small_png(uploads[0][1])
        return self._run(one, self._classify, uploads, mode, top_k, gone)

    def _alone(self) -> bool:
        """Whether the request at hand is the only one the server holds, no worker has a job
        (a stale count only ever sends a job to a worker), and neither was so for CALM_SECONDS
        (under load the server often holds one request for a moment: at 8 clients, computing
        those on the loop cost LiteRT 9% of its requests/s)."""
        held = self.requests_held
        if not self.inline or held is None:
            return False
        now = time.monotonic()
        if held() > 1 or self._jobs:
            self._crowded = now
            return False
        return now - self._crowded >= CALM_SECONDS

    def _run(self, small: bool, job: Callable[..., Any], *args: Any) -> asyncio.Future:
        """A future of ``job(*args)``: computed now, on the event loop, for a ``small`` job
        while the server holds no other request; else in a worker. Cancelling it drops a job
        that has not started."""
        loop = asyncio.get_running_loop()
        if self._alone() and small:  # _alone first: every request may mark the server crowded
            self.ran["event_loop"] += 1
            self._local.clf = self._loop_clf  # its worker has no job, and takes none meanwhile
            future = loop.create_future()
            try:
                future.set_result(job(*args))
            except Exception as exc:
                future.set_exception(exc)
            return future
        self.ran["worker"] += 1
        with self._jobs_lock:
            self._jobs += 1
        submitted = self._executor.submit(job, *args)
        submitted.add_done_callback(self._job_done)
        return asyncio.wrap_future(submitted, loop=loop)

    def _job_done(self, job: Future) -> None:  # in the worker (the loop, for a cancelled job)
        with self._jobs_lock:
            self._jobs -= 1

    def close(self) -> None:
        """Wait for the images being decoded (each within its budget); drop queued jobs."""
        self._executor.shutdown(wait=True, cancel_futures=True)
