"""Dynamic batching: requests that arrive within a short window are stacked and run once.

A worker thread takes the oldest waiting request, then takes further waiting requests that can
be stacked with it (same input names, dtypes and shapes past the first dimension), in arrival
order, until the batch holds ``max_batch`` rows or ``max_delay_s`` has passed since the first one
arrived. It concatenates the inputs along dimension 0, runs the model once and gives request *i*
rows ``[offset_i, offset_i + rows_i)`` of every output, the rows its own inputs occupied. When a
stacked run fails, each request in it is run alone, so an error reaches only the request that
caused it. With ``stack=False`` (models whose batch dimension is fixed) every request runs alone.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

Feeds = dict[str, np.ndarray]
RunFn = Callable[[Feeds], Feeds]


@dataclass
class _Job:
    feeds: Feeds
    rows: int
    key: tuple
    arrived: float
    future: Future = field(default_factory=Future)


@dataclass(frozen=True)
class BatchStats:
    """What the worker has run: ``runs`` model calls for ``requests`` requests.

    ``sizes`` maps the rows of a run to how many runs had that many.
    """

    runs: int
    requests: int
    sizes: dict[int, int]


def _stack_key(feeds: Feeds) -> tuple:
    return tuple((name, array.dtype.str, array.shape[1:]) for name, array in feeds.items())


class DynamicBatcher:
    """Queue of requests in front of ``run(feeds) -> outputs``, served by one worker thread.

    ``run`` takes and returns dicts of arrays whose first dimension is the batch. ``submit`` returns
    a :class:`concurrent.futures.Future` that resolves to this request's outputs (or its error).
    """

    def __init__(self, run: RunFn, *, max_batch: int = 8, max_delay_s: float = 0.002, stack: bool = True):
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        if max_delay_s < 0:
            raise ValueError(f"max_delay_s must be >= 0, got {max_delay_s}")
        self._run = run
        self.max_batch = max_batch
        self.max_delay_s = max_delay_s
        self.stack = stack
        self._queue: collections.deque[_Job] = collections.deque()
        self._cond = threading.Condition()
        self._closing = False
        self._runs = 0
        self._requests = 0
        self._sizes: collections.Counter[int] = collections.Counter()
        self._worker = threading.Thread(target=self._loop, name="rfconv-batcher", daemon=True)
        self._worker.start()

    def submit(self, feeds: Feeds) -> Future:
        """Queue one request; its arrays must share their first dimension (its rows)."""
        rows = next(iter(feeds.values())).shape[0] if self.stack else 1
        job = _Job(feeds, rows, _stack_key(feeds), time.monotonic())
        with self._cond:
            if self._closing:
                raise RuntimeError("the server is shutting down and takes no new requests")
            self._queue.append(job)
            self._cond.notify()
        return job.future

    def close(self, timeout: float | None = None) -> None:
        """Take no new requests, run every queued one, and stop the worker."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._worker.join(timeout)

    @property
    def queued(self) -> int:
        """Requests waiting for a run."""
        with self._cond:
            return len(self._queue)

    def stats(self) -> BatchStats:
        with self._cond:
            return BatchStats(self._runs, self._requests, dict(self._sizes))

    def _loop(self) -> None:
        while (batch := self._next_batch()) is not None:
            self._execute(batch)

    def _take_compatible(self, key: tuple, room: int) -> _Job | None | bool:
        """The oldest queued job stackable under ``key``; False when it does not fit in ``room`` rows."""
        for index, job in enumerate(self._queue):
            if job.key == key:
                if job.rows > room:
                    return False
                del self._queue[index]
                return job
        return None

    def _next_batch(self) -> list[_Job] | None:
        with self._cond:
            while not self._queue:
                if self._closing:
                    return None
                self._cond.wait()
            first = self._queue.popleft()
            batch, rows = [first], first.rows
            deadline = first.arrived + self.max_delay_s
            while self.stack and rows < self.max_batch:
                job = self._take_compatible(first.key, self.max_batch - rows)
                if job is False:
                    break
                if job is not None:
                    batch.append(job)
                    rows += job.rows
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closing:
                    break
                self._cond.wait(remaining)
            return batch

    def _run_stacked(self, batch: list[_Job]) -> list[Feeds]:
        if len(batch) == 1:
            return [self._run(batch[0].feeds)]
        feeds = {name: np.concatenate([job.feeds[name] for job in batch]) for name in batch[0].feeds}
        total = sum(job.rows for job in batch)
        outputs = self._run(feeds)
        for name, array in outputs.items():
            if array.shape[:1] != (total,):
                raise RuntimeError(
                    f"output '{name}' has shape {list(array.shape)} for a batch of {total} rows; "
                    "its first dimension is not the batch"
                )
        offsets = np.cumsum([0] + [job.rows for job in batch]).tolist()
        return [
            {name: array[start:stop] for name, array in outputs.items()}
            for start, stop in zip(offsets[:-1], offsets[1:], strict=True)
        ]

    def _execute(self, batch: list[_Job]) -> None:
        # Counted before the futures resolve, so stats read after an answer include its run.
        batch = [job for job in batch if job.future.set_running_or_notify_cancel()]
        if not batch:
            return
        try:
            results = self._run_stacked(batch)
        except Exception as err:  # noqa: BLE001 - any model error belongs to the requests' futures
            if len(batch) == 1:
                self._count([batch[0].rows])
                batch[0].future.set_exception(err)
                return
            for job in batch:
                self._run_alone(job)
            return
        self._count([job.rows for job in batch])
        for job, result in zip(batch, results, strict=True):
            job.future.set_result(result)

    def _run_alone(self, job: _Job) -> None:
        try:
            result = self._run(job.feeds)
        except Exception as err:  # noqa: BLE001 - the error goes to this request's future
            self._count([job.rows])
            job.future.set_exception(err)
            return
        self._count([job.rows])
        job.future.set_result(result)

    def _count(self, rows: list[int]) -> None:
        with self._cond:
            self._runs += 1
            self._requests += len(rows)
            self._sizes[sum(rows)] += 1
