"""``fmnist-infer --engine ray``: the local engine's classification on a Ray cluster, for a
catalog beyond one machine (the ``[ray]`` extra; Ray is imported only here, and only then).

Ray Data reads the files (``read_binary_files``) and ``map_batches`` hands them, a batch at a
time, to a callable class that holds one Classifier (one interpreter of one thread) per actor,
as many actors as the cluster has CPUs. Each image is decoded in the actor by the runtime's own
``open_image_bytes`` and ``to_array``, so preprocessing, labels and scores are the local
engine's. The inputs are expanded on the driver exactly as the local engine expands them
(files, sorted directories, globs) and the results come back in that order.

On a cluster, every path (the images, and ``--model`` when given) must be reachable under the
same name from every node, a shared file system, and fmnist-edge installed on every node.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from fmnist_edge.common.errors import FmnistError, ImageError, ModelError, UsageError
from fmnist_edge.common.machine import usable_cores
from fmnist_edge.common.nativelog import native_stderr_quieted

from .batch import CHUNK, Outcome, expand_inputs
from .classifier import Classifier
from .preprocess import open_image, open_image_bytes

READ_CPUS = 0.1  # a read task mostly waits on storage
ACTOR_CPUS = 0.9  # leaves a read task room on a node whose every CPU holds an actor


class RayClassifier:
    """What ``map_batches`` runs in each actor: one Classifier, built once, for every batch
    it is given. A batch ``{"path", "bytes"}`` becomes ``{"path", "error", "prediction"}``:
    an image that fails gets its one-line error and the others are still classified."""

    def __init__(self, model: str | None, runtime: str | None, tta: str, mode: str, top_k: int):
        self.clf = Classifier(model, threads=1, runtime=runtime, tta=tta)
        self.mode, self.top_k = self.clf.resolve_mode(mode), top_k

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        paths = [str(p) for p in batch["path"]]
        arrays, errors = [], []
        for path, data in zip(paths, batch["bytes"], strict=True):
            try:
                side = max(self.clf.image_size)  # exactly to_array(path)'s steps
                img = open_image_bytes(bytes(data), path, side=side)
                arrays.append(self.clf.to_array(img, self.mode))
                errors.append("")
            except ImageError as exc:
                errors.append(str(exc))
        preds = iter(self.clf.predict_batch(arrays, mode="raw", top_k=self.top_k))
        predictions = np.empty(len(paths), dtype=object)
        for i, error in enumerate(errors):
            predictions[i] = None if error else next(preds)
        return {"path": np.array(paths), "error": np.array(errors), "prediction": predictions}


@contextlib.contextmanager
def ray_session(address: str | None) -> Iterator[Any]:
    """Ray, connected to ``address`` (a running cluster), or to a new local instance on this
    process's usable cores when None; shut down at the end if it was started here. A Ray
    already initialized in this process (a notebook, a test) is used as it is."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise UsageError("--engine ray needs Ray Data: pip install 'fmnist-edge[ray]'") from None
    # Ray Data logs to the console itself, a failure as a traceback; a run's failure reaches the
    # user as one line of ours, so only its log file (in Ray's session folder) keeps them.
    for handler in logging.getLogger("ray.data").handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setLevel(logging.CRITICAL + 1)
    started = False
    if not ray.is_initialized():
        if address:
            _check_reachable(address)
        try:
            with warnings.catch_warnings():  # Ray warns before it raises: one line is enough
                warnings.simplefilter("ignore")
                ray.init(
                    address=address or "local",
                    num_cpus=None if address else usable_cores(),
                    include_dashboard=False,
                    logging_level=logging.ERROR,
                    log_to_driver=False,
                )
        except (ConnectionError, ValueError, RuntimeError) as exc:
            shown = f"--ray-address {address}" if address else "a local Ray instance"
            why = str(exc) if exc.__cause__ is None else f"{exc}: {_first_line(exc.__cause__)}"
            raise UsageError(f"{shown}: cannot start or reach Ray ({why})") from None
        started = True
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True  # the results in the inputs' order
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.enable_auto_log_stats = False
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def _check_reachable(address: str) -> None:
    """One line now, when nothing listens at a HOST:PORT address, rather than Ray retrying
    for many minutes. "auto" and anything without a port are left to Ray."""
    host, sep, port = address.split("://", 1)[-1].rpartition(":")
    if not sep or not port.isdigit():
        return
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=10):
            pass
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise UsageError(
            f"--ray-address {address}: nothing answers at {host}:{port} ({why})"
        ) from None


def _not_a_file(path: str) -> str | None:
    """None for a regular file, else its one line: the runtime's own for a missing file or a
    directory (open_image says it), ours for anything else (a pipe would block a reader)."""
    if os.path.isfile(path):
        return None
    if not os.path.exists(path) or os.path.isdir(path):
        try:
            open_image(path)
        except ImageError as exc:
            return str(exc)
    return f"{path}: not a regular file"


def _respell(error: str, path: str, shown: str) -> str:
    """The actor names the absolute path; say the input as the user gave it."""
    return shown + error[len(path) :] if error.startswith(path) else error


def classify_on_ray(
    args: Iterable[str | os.PathLike],
    model: str | None = None,
    runtime: str | None = None,
    tta: str = "none",
    mode: str = "auto",
    top_k: int = 1,
    address: str | None = None,
    chunk: int = CHUNK,
    announce: Callable[[str], None] | None = None,
) -> Iterator[Outcome]:
    """``batch.classify_inputs``'s Outcomes, in the same order, computed by Ray actors on the
    cluster at ``address`` (None: a local instance; see ``ray_session``). ``announce`` hears
    one line saying where and with how many actors. The expanded input list is held on the
    driver (a few hundred bytes per image)."""
    items = list(expand_inputs(args))
    files = []
    for n, item in enumerate(items):
        error = _not_a_file(item.path) if item.ok else None
        if error is not None:
            items[n] = Outcome(item.path, error=error)
        elif item.ok:
            files.append(os.path.abspath(item.path))  # a Ray worker's cwd is not ours
    if not files:  # nothing to read: no cluster to start
        yield from items
        return
    # Ray's C++ start-up and actor notices go to descriptor 2: off the user's screen
    with native_stderr_quieted(), ray_session(address) as ray:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        actors = max(1, min(cpus, -(-len(files) // chunk)))  # no actor without a batch
        if announce is not None:
            where = address or "a local instance"
            announce(f"engine ray ({where}): {actors} actor{'s' * (actors > 1)}, 1 thread each")
        rows = _ray_rows(ray, files, actors, model, runtime, tta, mode, top_k, chunk)
        for item in items:
            if not item.ok:
                yield item
                continue
            path, error, prediction = next(rows)
            if path != os.path.abspath(item.path):  # preserve_order broken: never mislabel
                raise FmnistError(f"Ray returned {path} where {item.path} was expected")
            if error:
                yield Outcome(item.path, error=_respell(error, path, item.path))
            else:
                yield Outcome(item.path, prediction=prediction)


def _ray_rows(ray, files, actors, model, runtime, tta, mode, top_k, chunk) -> Iterator[tuple]:
    """(absolute path, error, prediction) for each file, in order, streamed."""
    model = os.path.abspath(model) if model else None
    ds = ray.data.read_binary_files(files, include_paths=True, num_cpus=READ_CPUS)
    ds = ds.map_batches(
        RayClassifier,
        fn_constructor_kwargs=dict(model=model, runtime=runtime, tta=tta, mode=mode, top_k=top_k),
        compute=ray.data.ActorPoolStrategy(size=actors),
        batch_size=chunk,
        batch_format="numpy",
        num_cpus=ACTOR_CPUS,
    )
    try:
        for batch in ds.iter_batches(batch_format="numpy", batch_size=None):
            yield from zip(
                batch["path"].tolist(), batch["error"].tolist(), batch["prediction"], strict=True
            )
    except (ray.exceptions.RayError, ray.data.exceptions.SystemException) as exc:
        raise ModelError(f"Ray: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    """A Ray error in one line: the last line of its text (which may span a traceback), less
    the class name when that is one of our errors an actor raised ("...ModelError: m.tflite:
    model file not found" -> "m.tflite: model file not found")."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    last = lines[-1] if lines else type(exc).__name__
    return re.sub(r"^fmnist_edge\.[\w.]+Error: ", "", last)
