"""How a batch job spreads over the cores: the plan (how many interpreters, how many threads
each), the pool that lends those interpreters to worker threads, and an ordered, bounded map
that runs the work in those threads.

A TFLite interpreter is not thread-safe, and LiteRT's ``invoke`` releases the GIL. So a batch
can use N cores as one interpreter of N threads, or as N interpreters of one thread, each
borrowed by one worker thread at a time. On a folder of PNGs (decode, then a batched invoke)
the second was faster on the 2-core AMD EPYC, in 8 of 12 alternating pairs, and cheaper, 1.17
against 1.23 CPU ms per image (docs/benchmarks.md, "A folder at the interpreter's speed"),
likely because a worker decodes its chunk while another's interpreter runs, where the threads of
one interpreter wait at each op's barrier for a core a decoder holds. It is the default layout;
the other stays here so that the benchmark keeps measuring both.
"""

from __future__ import annotations

import contextlib
import queue
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from fmnist_edge.common.errors import UsageError
from fmnist_edge.common.machine import usable_cores

if TYPE_CHECKING:  # numpy and the interpreter load only when a Classifier is made
    from .classifier import Classifier

T = TypeVar("T")
R = TypeVar("R")

# "interpreters": N interpreters of 1 thread; "threads": 1 interpreter of N threads.
LAYOUTS = ("interpreters", "threads")
DEFAULT_LAYOUT = "interpreters"  # the faster for folder work, measured (module docstring)


@dataclass(frozen=True)
class ThreadPlan:
    """How a batch job uses ``cores`` cores. Every plan has ``cores`` worker threads, which
    decode in parallel and take turns on the ``interpreters``."""

    cores: int  # the cores it is for: usable_cores(), or what --threads said
    interpreters: int  # Classifiers at work at once, each used by one thread at a time
    threads: int  # interpreter threads inside each
    source: str  # where ``cores`` came from: "usable cores" or "--threads"

    @property
    def workers(self) -> int:
        """Threads that decode and classify chunks, one per core (1: no thread at all, the
        caller's); a thread-safe engine gets one more per run it computes at once
        (InterpreterPool.for_plan)."""
        return self.cores

    @property
    def layout(self) -> str:
        return "threads" if self.interpreters == 1 and self.threads > 1 else "interpreters"

    def __str__(self) -> str:
        interps = f"{self.interpreters} interpreter{'s' * (self.interpreters > 1)}"
        threads = f"{self.threads} thread{'s' * (self.threads > 1)}"
        return f"{interps} x {threads} ({self.source}: {self.cores})"

    def to_dict(self) -> dict[str, int | str]:
        """What reports record."""
        return {
            "cores": self.cores,
            "interpreters": self.interpreters,
            "threads_per_interpreter": self.threads,
            "workers": self.workers,
            "layout": self.layout,
            "source": self.source,
            "text": str(self),
        }


def plan_threads(
    cores: int | None = None, layout: str = DEFAULT_LAYOUT, source: str = "--threads"
) -> ThreadPlan:
    """The plan for ``cores`` (None: every core this process may use, its CPU affinity) in
    ``layout``: "interpreters" (N of one thread, the default) or "threads" (one of N).
    ``source`` names where a given ``cores`` came from, for messages and reports."""
    if layout not in LAYOUTS:
        raise UsageError(f"layout must be one of {', '.join(LAYOUTS)} (got {layout!r})")
    if cores is not None and cores < 1:
        raise UsageError(f"{source} must be >= 1 (got {cores})")
    source = "usable cores" if cores is None else source
    n = usable_cores() if cores is None else cores
    if layout == "threads":
        return ThreadPlan(cores=n, interpreters=1, threads=n, source=source)
    return ThreadPlan(cores=n, interpreters=n, threads=1, source=source)


class InterpreterPool:
    """Up to ``size`` Classifiers, each lent to one thread at a time (``with pool.borrow() as
    clf``). ``make()`` builds one; they are made as the work grows (``reserve``), in the
    caller's thread, so one image never pays for a second interpreter and a model's C++
    notices are quieted where nothing else writes to stderr."""

    def __init__(
        self,
        make: Callable[[], Classifier],
        size: int,
        first: Classifier | None = None,
        workers: int | None = None,
    ):
        if size < 1:
            raise UsageError(f"an interpreter pool needs at least 1 interpreter (got {size})")
        self.size = size
        self.workers = workers or size  # the threads a batch job feeds it from
        self._make = make
        self.first = first if first is not None else make()
        self._made = 1
        self._free: queue.SimpleQueue[Classifier] = queue.SimpleQueue()
        self._free.put(self.first)

    @classmethod
    def of(cls, clf: Classifier) -> InterpreterPool:
        """A pool of one: ``clf`` itself."""
        return cls(lambda: clf, 1, first=clf)

    @classmethod
    def for_plan(
        cls,
        plan: ThreadPlan,
        model: str | None = None,
        runtime: str | None = None,
        tta: str | None = None,
    ) -> InterpreterPool:
        """``plan.interpreters`` Classifiers of ``model`` with ``plan.threads`` threads each; the
        first is made now (a bad model fails here). An engine that is thread-safe (OpenVINO's
        compiled model, which gives each call its own infer requests) is made once, compiled
        for throughput with every thread of the plan, and lent to all ``plan.workers`` at once:
        on 10,000 PNGs it beat a model of one thread per worker, 1.38 against 1.28 times
        LiteRT's images/s (docs/benchmarks.md, "OpenVINO on a folder"). It gets as many more
        workers as it computes runs at once (``parallel_runs``, its infer requests), which
        decode the next chunks while those run: 8-16% less wall time on 10,000 PNGs.
        Interpreters get one worker each: files not in the page cache are read ahead by the
        kernel (batch._read_ahead), so no worker's core waits for the disk, and a third worker
        only took turns with the two on two cores (10,000 PNGs after drop_caches: 5.4-5.9 s
        against 6.4-7.3 with a third worker and no read-ahead; from the cache, the same)."""
        from .classifier import Classifier

        def make() -> Classifier:
            return Classifier(
                model, threads=plan.threads, runtime=runtime, tta=tta, workload="throughput"
            )

        first = make()
        if first.model.thread_safe:
            return cls(lambda: first, plan.workers + first.model.parallel_runs, first=first)
        return cls(make, plan.interpreters, first=first, workers=plan.workers)

    @property
    def made(self) -> int:
        """How many Classifiers exist so far (``size`` at most)."""
        return self._made

    def reserve(self, n: int) -> None:
        """Have ``min(n, size)`` Classifiers made."""
        while self._made < min(n, self.size):
            self._free.put(self._make())
            self._made += 1

    def feeding(self, items: Iterable[T]) -> Iterator[T]:
        """``items`` as they are, with an interpreter made ready for each of the first ``size``
        (in the thread that iterates: give this to ``ordered_map``)."""
        for n, item in enumerate(items, start=1):
            self.reserve(n)
            yield item

    @contextlib.contextmanager
    def borrow(self) -> Iterator[Classifier]:
        """A Classifier for this thread alone until the block ends (waits for a free one)."""
        clf = self._free.get()
        try:
            yield clf
        finally:
            self._free.put(clf)


def ordered_map(
    fn: Callable[[T], R], items: Iterable[T], workers: int, depth: int | None = None
) -> Iterator[R]:
    """``fn(item)`` for each item, run in ``workers`` threads, yielded in the items' order.
    At most ``depth`` (default ``2 * workers``) items are taken and not yet yielded, so memory
    stays flat however many items come. With one worker, ``fn`` runs in the caller's thread.
    Closing the iterator early cancels what has not started and waits for what has."""
    if workers <= 1:
        yield from map(fn, items)
        return
    depth = max(depth or 2 * workers, 1)
    pending: deque[Future[R]] = deque()
    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fmnist-worker")
    try:
        for item in items:
            pending.append(executor.submit(fn, item))
            if len(pending) >= depth:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
