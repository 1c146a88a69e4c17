"""Dynamic batching: requests that arrive within a short window are stacked and run once.

A worker thread takes the oldest waiting request, then takes further waiting requests that can
be stacked with it (same input names, dtypes and shapes past the first dimension), in arrival
order, until the batch holds ``max_batch`` rows or ``max_delay_s`` has passed since the first one
arrived. It concatenates the inputs along dimension 0, runs the model once and gives request *i*
rows ``[offset_i, offset_i + rows_i)`` of every output, the rows its own inputs occupied. When a
stacked run fails, each request in it is run alone, so an error reaches only the request that
caused it. With ``stack=False`` (models whose batch dimension is fixed) every request runs alone.

Admission control (as Triton's queue policy): the queue holds at most ``max_queue`` rows, and
with ``max_batch_pixels`` set at most as many pixels as ``max_queue / max_batch`` full batches;
a request beyond either is refused at once with :class:`Overloaded`, and so is one that cannot start
within its ``max_wait_s``: the rows ahead of it times the measured seconds per row (a moving
average over recent runs; no estimate before the first run). A batch also holds at most
``max_batch_pixels`` pixels (:func:`pixels`), so images of any size are bounded by their area,
not only by their rows, in the queue as in a run. A request whose future is cancelled before its
run (its client left, or it waited too long) is removed from the queue at once and never computed.

Timing (what Triton's statistics report): a request's queue time runs from ``submit`` to the
start of its run; each run splits into compute input (stacking the requests' inputs), compute
infer (the model call) and compute output (slicing each request's rows back out), in nanoseconds.
:meth:`DynamicBatcher.stats` sums them per batch size; a :class:`Timing` passed to ``submit`` gets
its own request's numbers before its future resolves.
"""

from __future__ import annotations

import collections
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

Feeds = dict[str, np.ndarray]
RunFn = Callable[[Feeds], Feeds]


class Overloaded(RuntimeError):
    """The queue is full or the batcher is closing: answer 503 and let the client retry."""


def pixels(feeds: Feeds) -> int:
    """Pixels of a request: its rows times the largest ``H*W`` (product of dims 2 onwards) of any input.

    Inputs of rank 2 or less count one pixel per row. This is the one measure of an image
    request's size that ``max_batch_pixels`` bounds.
    """
    return max(array.shape[0] * math.prod(array.shape[2:]) for array in feeds.values())


@dataclass
class Timing:
    """One request's time in the batcher, nanoseconds: waiting (``queue_ns``), then its run's stacking
    (``input_ns``), model call (``infer_ns``) and slicing (``output_ns``); the whole run's, when it
    shared the run with others (as Triton counts them)."""

    queue_ns: int = 0
    input_ns: int = 0
    infer_ns: int = 0
    output_ns: int = 0


@dataclass(eq=False)  # a job is itself: found and removed from the queue by identity, never by its arrays
class _Job:
    feeds: Feeds
    rows: int
    pixels: int
    key: tuple
    arrived: float
    timing: Timing
    future: Future = field(default_factory=Future)


@dataclass(frozen=True)
class BatchStats:
    """What the worker has run: ``runs`` model calls for ``requests`` requests.

    ``sizes`` maps the rows of a run to how many runs had that many; ``compute_ns`` maps the
    same rows to the runs' summed (input, infer, output) nanoseconds (see :class:`Timing`).
    """

    runs: int
    requests: int
    sizes: dict[int, int]
    compute_ns: dict[int, tuple[int, int, int]] = field(default_factory=dict)


def _stack_key(feeds: Feeds) -> tuple:
    return tuple((name, array.dtype.str, array.shape[1:]) for name, array in feeds.items())


class DynamicBatcher:
    """Queue of requests in front of ``run(feeds) -> outputs``, served by one worker thread.

    ``run`` takes and returns dicts of arrays whose first dimension is the batch. ``submit`` returns
    a :class:`concurrent.futures.Future` that resolves to this request's outputs (or its error).
    ``max_queue`` (rows waiting) and ``max_batch_pixels`` (pixels per run; None: no bound) are the
    admission bounds described above.
    """

    def __init__(
        self,
        run: RunFn,
        *,
        max_batch: int = 8,
        max_delay_s: float = 0.002,
        stack: bool = True,
        max_queue: int = 64,
        max_batch_pixels: int | None = None,
    ):
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        if max_delay_s < 0:
            raise ValueError(f"max_delay_s must be >= 0, got {max_delay_s}")
        if max_queue < 1:
            raise ValueError(f"max_queue must be at least 1, got {max_queue}")
        self._run = run
        self.max_batch = max_batch
        self.max_delay_s = max_delay_s
        self.stack = stack
        self.max_queue = max_queue
        self.max_batch_pixels = max_batch_pixels
        self._queue: collections.deque[_Job] = collections.deque()
        self._queued_rows = 0
        self._queued_pixels = 0
        self.max_queue_pixels = None if max_batch_pixels is None else max_batch_pixels * max_queue // max_batch
        self._cond = threading.Condition()
        self._closing = False
        self._drain_deadline: float | None = None
        self._dropped = 0
        self._runs = 0
        self._requests = 0
        self._sizes: collections.Counter[int] = collections.Counter()
        self._compute_ns: dict[int, tuple[int, int, int]] = {}
        self._row_s: float | None = None  # moving average of a run's seconds per row
        self._worker = threading.Thread(target=self._loop, name="rfconv-batcher", daemon=True)
        self._worker.start()

    def submit(self, feeds: Feeds, timing: Timing | None = None, max_wait_s: float | None = None) -> Future:
        """Queue one request; its arrays must share their first dimension (its rows).

        Raises :class:`Overloaded` when the batcher is closing, the queue has no room for its rows,
        or (with ``max_wait_s``) the work queued ahead of it is estimated to take longer than
        ``max_wait_s`` seconds (:meth:`estimated_wait_s`). Cancelling the returned future before
        its run removes the request from the queue. ``timing``, when given, holds this request's
        queue and compute times once the future is done.
        """
        rows = next(iter(feeds.values())).shape[0] if self.stack else 1
        job = _Job(feeds, rows, pixels(feeds), _stack_key(feeds), time.monotonic(), timing or Timing())
        with self._cond:
            if self._closing:
                raise Overloaded("the server is shutting down and takes no new requests")
            if self._queued_rows + rows > self.max_queue:
                raise Overloaded(
                    f"the queue is full ({self._queued_rows} of --max-queue {self.max_queue} rows waiting); "
                    "retry later"
                )
            if self.max_queue_pixels is not None and self._queued_pixels + job.pixels > self.max_queue_pixels:
                raise Overloaded(
                    f"the queue is full ({self._queued_pixels} of {self.max_queue_pixels} pixels waiting: "
                    "--max-queue / --max-batch batches of --max-batch-pixels); retry later"
                )
            wait_s = self._estimate(self._queued_rows + rows)
            if max_wait_s is not None and wait_s is not None and wait_s > max_wait_s:
                raise Overloaded(
                    f"the queue holds an estimated {wait_s:.2f} s of work ({self._queued_rows} rows at the measured "
                    f"{self._row_s * 1000:.1f} ms per row), more than this request may wait ({max_wait_s:g} s); "
                    "retry later"
                )
            self._queue.append(job)
            self._queued_rows += rows
            self._queued_pixels += job.pixels
            self._cond.notify()
        job.future.add_done_callback(lambda future: future.cancelled() and self._discard(job))
        return job.future

    def close(self, grace_s: float | None = None) -> int:
        """Take no new requests, run the queued ones for up to ``grace_s`` seconds (None: all of
        them), then fail the rest with :class:`Overloaded`; returns how many were dropped.

        Returns by the deadline even while a run is still going (the worker finishes it alone).
        """
        with self._cond:
            self._closing = True
            if grace_s is not None and self._drain_deadline is None:
                self._drain_deadline = time.monotonic() + grace_s
            deadline = self._drain_deadline
            self._cond.notify_all()
        self._worker.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        with self._cond:
            self._drop_after_deadline()
            return self._dropped

    def _estimate(self, rows: int) -> float | None:
        return None if self._row_s is None else rows * self._row_s

    def estimated_wait_s(self, rows: int = 0) -> float | None:
        """Seconds until a request of ``rows`` rows submitted now would finish its run, from the
        measured seconds per row; None before the first run."""
        with self._cond:
            return self._estimate(self._queued_rows + rows)

    @property
    def queued(self) -> int:
        """Requests waiting for a run."""
        with self._cond:
            return len(self._queue)

    @property
    def queued_rows(self) -> int:
        """Rows waiting for a run (what ``max_queue`` bounds)."""
        with self._cond:
            return self._queued_rows

    @property
    def saturated(self) -> bool:
        """True while the queue is full (rows or pixels): readiness reports not-ready until it drains."""
        with self._cond:
            return self._queued_rows >= self.max_queue or (
                self.max_queue_pixels is not None and self._queued_pixels >= self.max_queue_pixels
            )

    @property
    def dropped(self) -> int:
        """Requests failed unrun because the shutdown grace period ran out."""
        with self._cond:
            return self._dropped

    def stats(self) -> BatchStats:
        with self._cond:
            return BatchStats(self._runs, self._requests, dict(self._sizes), dict(self._compute_ns))

    def _loop(self) -> None:
        while (batch := self._next_batch()) is not None:
            self._execute(batch)

    def _discard(self, job: _Job) -> None:
        with self._cond:
            if job in self._queue:
                self._queue.remove(job)
                self._queued_rows -= job.rows
                self._queued_pixels -= job.pixels

    def _take(self, index: int) -> _Job:
        job = self._queue[index]
        del self._queue[index]
        self._queued_rows -= job.rows
        self._queued_pixels -= job.pixels
        return job

    def _drop_after_deadline(self) -> None:
        """Once the shutdown grace period is over, fail every queued job unrun."""
        if self._drain_deadline is None or time.monotonic() < self._drain_deadline:
            return
        while self._queue:
            job = self._take(0)
            if job.future.set_running_or_notify_cancel():
                self._dropped += 1
                job.future.set_exception(Overloaded("the server shut down before this request ran"))

    def _room(self, job: _Job, rows: int, pixels_used: int) -> bool:
        if rows + job.rows > self.max_batch:
            return False
        return self.max_batch_pixels is None or pixels_used + job.pixels <= self.max_batch_pixels

    def _take_compatible(self, key: tuple, rows: int, pixels_used: int) -> _Job | None | bool:
        """The oldest queued job stackable under ``key``; False when it does not fit the batch."""
        for index, job in enumerate(self._queue):
            if job.key == key:
                if not self._room(job, rows, pixels_used):
                    return False
                return self._take(index)
        return None

    def _next_batch(self) -> list[_Job] | None:
        with self._cond:
            while True:
                self._drop_after_deadline()
                if self._queue:
                    break
                if self._closing:
                    return None
                self._cond.wait()
            first = self._take(0)
            batch, rows, pixels_used = [first], first.rows, first.pixels
            deadline = first.arrived + self.max_delay_s
            while self.stack and rows < self.max_batch:
                job = self._take_compatible(first.key, rows, pixels_used)
                if job is False:
                    break
                if job is not None:
                    batch.append(job)
                    rows += job.rows
                    pixels_used += job.pixels
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closing:
                    break
                self._cond.wait(remaining)
            return batch

    def _run_stacked(self, batch: list[_Job]) -> tuple[list[Feeds], tuple[int, int, int]]:
        """Each job's outputs, and the run's (input, infer, output) nanoseconds."""
        t0 = time.perf_counter_ns()
        if len(batch) == 1:
            outputs = self._run(batch[0].feeds)
            return [outputs], (0, time.perf_counter_ns() - t0, 0)
        feeds = {name: np.concatenate([job.feeds[name] for job in batch]) for name in batch[0].feeds}
        total = sum(job.rows for job in batch)
        t1 = time.perf_counter_ns()
        outputs = self._run(feeds)
        t2 = time.perf_counter_ns()
        for name, array in outputs.items():
            if array.shape[:1] != (total,):
                raise RuntimeError(
                    f"output '{name}' has shape {list(array.shape)} for a batch of {total} rows; "
                    "its first dimension is not the batch"
                )
        offsets = np.cumsum([0] + [job.rows for job in batch]).tolist()
        results = [
            {name: array[start:stop] for name, array in outputs.items()}
            for start, stop in zip(offsets[:-1], offsets[1:], strict=True)
        ]
        return results, (t1 - t0, t2 - t1, time.perf_counter_ns() - t2)

    def _execute(self, batch: list[_Job]) -> None:
        # Counted before the futures resolve, so stats read after an answer include its run.
        batch = [job for job in batch if job.future.set_running_or_notify_cancel()]
        if not batch:
            return
        started = time.monotonic()
        for job in batch:
            job.timing.queue_ns = int((started - job.arrived) * 1e9)
        try:
            results, compute = self._run_stacked(batch)
        except Exception as err:  # noqa: BLE001 - any model error belongs to the requests' futures
            if len(batch) == 1:
                self._count(batch, (0, 0, 0))
                batch[0].future.set_exception(err)
                return
            for job in batch:
                self._run_alone(job)
            return
        self._count(batch, compute)
        for job, result in zip(batch, results, strict=True):
            job.future.set_result(result)

    def _run_alone(self, job: _Job) -> None:
        try:
            (result,), compute = self._run_stacked([job])
        except Exception as err:  # noqa: BLE001 - the error goes to this request's future
            self._count([job], (0, 0, 0))
            job.future.set_exception(err)
            return
        self._count([job], compute)
        job.future.set_result(result)

    def _count(self, batch: list[_Job], compute: tuple[int, int, int]) -> None:
        for job in batch:
            job.timing.input_ns, job.timing.infer_ns, job.timing.output_ns = compute
        rows = sum(job.rows for job in batch)
        seconds = sum(compute) / 1e9
        with self._cond:
            if seconds > 0:
                per_row = seconds / rows
                self._row_s = per_row if self._row_s is None else 0.8 * self._row_s + 0.2 * per_row
            self._runs += 1
            self._requests += len(batch)
            self._sizes[rows] += 1
            summed = self._compute_ns.get(rows, (0, 0, 0))
            self._compute_ns[rows] = tuple(a + b for a, b in zip(summed, compute, strict=True))
