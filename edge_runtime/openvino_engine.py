"""OpenVINO as an engine for the same .tflite file: ``--runtime openvino``.

OpenVINO reads the .tflite itself (its TFLite frontend: no second export, no conversion step
for the user) and compiles it for this CPU with oneDNN's kernels, which on an x86
CPU without VNNI keep int8 products in 32 bits where XNNPACK widens to 16 (docs/benchmarks.md,
"Runtimes against the silicon"). The compiled model takes and returns the tensors the .tflite
declares (int8 in, int8 logits out for the bundled model), so the Classifier's contract code is
the same for both engines; that contract (shape, dtype, scale, zero point) is read by a LiteRT
interpreter of the same bytes, so it is exactly LiteRT's.

The THROUGHPUT hint for batches (OpenVINO picks its streams for the threads it has), LATENCY
for an image at a time (one stream: the server's workers). A LATENCY model is compiled twice:
for any batch, and for a batch of one with every shape fixed, which the server's single images
take (oneDNN then plans the whole graph once, where a dynamic batch is shaped at every call).
On the 2-core EPYC, one image at a time, in-process: 0.48-0.64 against 0.55-0.68 ms back to
back, 0.65-0.84 against 0.82-1.0 with 1 ms of sleep between images (a server's case); the same
logits for all 2,000 images compared. Threads follow ``threads``
(--threads), else the cores this process may use (its affinity), as for LiteRT. A large batch
is split over the compiled model's idle infer requests, one per stream, and run asynchronously;
``run`` is thread-safe (each call borrows its own requests), so a folder job compiles one model
of every core, THROUGHPUT, and lends it to all its workers (threads.InterpreterPool.for_plan):
a folder's chunk of 64 images takes one request, and while the requests run, other workers
decode the next chunks.
"""

from __future__ import annotations

import os
import queue
import tempfile
from importlib import metadata
from typing import Any

import numpy as np

from fmnist_edge.common.errors import ModelError, RuntimeUnavailable, UsageError
from fmnist_edge.common.machine import usable_cores
from fmnist_edge.common.nativelog import native_stderr_quieted

from .interpreter import ModelIO, Runtime, TFLiteModel

WORKLOADS = {"latency": "LATENCY", "throughput": "THROUGHPUT"}  # -> OpenVINO's PERFORMANCE_HINT
# Images: a batch is split over several requests only in parts at least this big. A folder's
# chunk (64) is not split: splitting it (at 16) left the cores idle while the next chunk decoded.
MIN_PART = 64


def load_openvino() -> Runtime:
    """The openvino package as a Runtime (its ``interpreter_class`` is ``openvino.Core``).
    A missing or broken one raises RuntimeUnavailable with the install line."""
    try:
        import openvino
    except ImportError as exc:
        raise RuntimeUnavailable(
            f"openvino is not installed ({exc}): pip install openvino"
        ) from None
    except Exception as exc:  # a wheel for another glibc or CPU fails at import, not later
        raise RuntimeUnavailable(
            f"openvino failed to import ({type(exc).__name__}: {exc})"
        ) from None
    try:
        version = metadata.version("openvino")
    except metadata.PackageNotFoundError:  # __version__ is "2026.4.1-22982-e213a14..."
        version = openvino.__version__.split("-")[0]
    return Runtime("openvino", version, openvino.Core)


def _numpy_dtype(element_type: Any) -> np.dtype:
    return np.dtype(element_type.to_dtype())


class OpenVINOModel(ModelIO):
    """A .tflite compiled by OpenVINO for this CPU, with ``contract``'s tensors (a TFLiteModel
    of the same bytes). ``run`` is thread-safe: each call borrows its own infer requests."""

    thread_safe = True

    def __init__(
        self,
        content: bytes,
        contract: TFLiteModel,
        runtime: Runtime,
        threads: int | None = None,
        workload: str = "latency",
    ):
        if workload not in WORKLOADS:
            raise UsageError(f"workload must be one of {', '.join(WORKLOADS)} (got {workload!r})")
        self.name, self.runtime = contract.name, runtime
        self.input, self.output = contract.input, contract.output
        self.threads = threads or usable_cores()
        self.workload = workload
        self._sample_shape = self.input.shape[1:]
        from openvino import Tensor

        self._tensor = Tensor
        core = runtime.interpreter_class()
        config = {
            "PERFORMANCE_HINT": WORKLOADS[workload],
            "INFERENCE_NUM_THREADS": str(self.threads),
            # Pinned stream threads fight the workers' decoding, and a server worker's model
            # another's, for one core: 0.92x against 1.28x LiteRT's images/s on a folder,
            # pinned or not (docs/benchmarks.md).
            "ENABLE_CPU_PINNING": "NO",
        }
        single = None
        with native_stderr_quieted(), tempfile.TemporaryDirectory(prefix="fmnist-ov-") as tmp:
            try:  # compiled inside: the constants may still map the copy until then
                model = self._read(core, content, tmp)
                if workload == "latency":
                    single = self._compile_single(core, model, config)
                self._free_batch(model)
                self._compiled = core.compile_model(model, "CPU", config)
            except RuntimeError as exc:
                first = str(exc).strip().splitlines()[-1] if str(exc).strip() else ""
                raise ModelError(f"{self.name}: OpenVINO cannot compile it ({first})") from None
        self._check_types()
        self.streams = int(self._compiled.get_property("NUM_STREAMS"))
        n = int(self._compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        self.requests = self.parallel_runs = max(n, 1)
        self._idle: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._idle_single: queue.SimpleQueue[Any] | None = None
        for _ in range(self.requests):
            self._idle.put(self._compiled.create_infer_request())
        if single is not None:  # as many as the other: a call never waits for the wrong kind
            self._idle_single = queue.SimpleQueue()
            for _ in range(self.requests):
                self._idle_single.put(single.create_infer_request())

    def _read(self, core: Any, content: bytes, tmp: str) -> Any:
        """The .tflite as an OpenVINO model, as the file declares it. OpenVINO's TFLite
        frontend reads only files: the bytes already read and checked go to a private copy in
        ``tmp`` (so they are exactly the contract's, whatever happens to the user's file)."""
        path = os.path.join(tmp, "model.tflite")
        with open(path, "wb") as fh:
            fh.write(content)
        model = core.read_model(path)
        if len(model.inputs) != 1 or len(model.outputs) != 1:
            raise ModelError(
                f"{self.name}: OpenVINO sees {len(model.inputs)} inputs and "
                f"{len(model.outputs)} outputs, expected 1 and 1"
            )
        return model

    def _compile_single(self, core: Any, model: Any, config: dict[str, str]) -> Any | None:
        """A copy of ``model`` compiled for exactly one image; None where it cannot be (the
        model for any batch then takes single images too, as it can)."""
        from openvino import PartialShape

        one = model.clone()
        try:
            one.reshape({one.inputs[0]: PartialShape([1, *self._sample_shape])})
            return core.compile_model(one, "CPU", config)
        except RuntimeError:
            return None

    def _free_batch(self, model: Any) -> None:
        """Let ``model``'s batch dimension take any N (a fixed-batch file is reshaped)."""
        from openvino import PartialShape

        if model.inputs[0].get_partial_shape()[0].is_static:
            model.reshape({model.inputs[0]: PartialShape([-1, *self._sample_shape])})

    def _check_types(self) -> None:
        """The compiled model must take and give exactly the .tflite's tensor types, or the
        contract (quantization tables, output tables) would be applied to the wrong values."""
        pairs = (
            ("input", self._compiled.inputs[0], self.input),
            ("output", self._compiled.outputs[0], self.output),
        )
        for what, port, spec in pairs:
            got = _numpy_dtype(port.get_element_type())
            if got != spec.dtype:
                raise ModelError(
                    f"{self.name}: OpenVINO's {what} is {got}, the .tflite declares {spec.dtype}"
                )

    def describe(self) -> str:
        hint = WORKLOADS[self.workload]
        return (
            f"{hint} hint: {self.streams} stream{'s' * (self.streams > 1)}, "
            f"{self.threads} thread{'s' * (self.threads > 1)}, {self.requests} infer requests"
            + (", and as many compiled for one image" if self._idle_single is not None else "")
        )

    def _borrow(self, n: int) -> list[Any]:
        """One idle request (waiting for it), and more if idle now, up to one per MIN_PART
        images: a worker never waits for a second request another worker holds."""
        held = [self._idle.get()]
        want = min(self.requests, -(-n // MIN_PART))
        while len(held) < want:
            try:
                held.append(self._idle.get_nowait())
            except queue.Empty:
                break
        return held

    def run(self, x: np.ndarray) -> np.ndarray:
        """(N, H, W[, C]) in the input dtype -> (N, classes) in the output dtype."""
        n = len(x)
        x = np.ascontiguousarray(x.reshape((n, *self._sample_shape)))
        if n == 1 and self._idle_single is not None:  # the model compiled for one image
            request = self._idle_single.get()
            try:
                return self._infer(request, x)
            finally:
                self._idle_single.put(request)
        held = self._borrow(n)
        try:
            if len(held) == 1:
                return self._infer(held[0], x)
            parts = np.array_split(x, len(held))
            for request, part in zip(held, parts, strict=True):
                request.set_input_tensor(self._tensor(part, shared_memory=True))
                request.start_async()
            for request in held:
                request.wait()
            return np.concatenate([r.get_output_tensor().data for r in held])
        finally:
            for request in held:
                self._idle.put(request)

    def _infer(self, request: Any, x: np.ndarray) -> np.ndarray:
        """``x`` run on ``request``, in this thread (infer releases the GIL while it runs).
        A tensor over the numpy memory, set directly: infer({0: x}) builds a dict of results
        and costs about 0.1 ms more a call, a fifth of a batch-1 inference."""
        request.set_input_tensor(self._tensor(x, shared_memory=True))
        request.infer()
        return request.get_output_tensor().data.copy()
