"""Large JSON request parts parsed in worker processes, off the server's GIL.

Python's JSON decoder holds the GIL for the whole parse (about 70 ms for a 4 MiB part on the
project's 2-core machine), so a codec *thread* parsing a flood of large JSON bodies stalls the
event loop, health checks included. Parts of :data:`OFF_PROCESS_BYTES` or more are parsed by
:func:`~exporter.serving.protocol.decode_request` in a ``spawn`` process pool of ``workers``
processes (started at the first such part); the caller's thread only waits, GIL released. Smaller
parts are parsed in the calling thread, where a process hop would cost more than the parse.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from exporter.serving.protocol import InferRequest, decode_request

OFF_PROCESS_BYTES = 256 << 10  # JSON bytes from which a part is parsed in a worker process (~5 ms in-thread)
NICENESS = 10  # the workers' scheduling priority below the server's: the model's threads go first


def json_workers() -> int:
    """Worker processes for a machine: one per four cores, at least one (JSON decoding is the
    cheapest work a client can make the server do; it never gets more than a share of the CPU)."""
    return max(1, (os.cpu_count() or 1) // 4)


def _lower_priority() -> None:
    os.nice(NICENESS)


class DecodePool:
    """:meth:`decode` = :func:`~exporter.serving.protocol.decode_request`, large JSON parts in worker
    processes. A :class:`~exporter.serving.protocol.RequestError` raised there reaches the caller
    with its status; a worker that died raises :class:`RuntimeError` (a server failure) and the
    pool is started again for the next request."""

    def __init__(self, workers: int, off_process_bytes: int = OFF_PROCESS_BYTES):
        self.workers = workers
        self.off_process_bytes = off_process_bytes
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self.closed = False

    def decode(self, data: bytes, split: int | None) -> InferRequest:
        """The request in ``data`` (JSON part ``data[:split]``, all of it when ``split`` is None)."""
        if (len(data) if split is None else split) < self.off_process_bytes:
            return decode_request(data, split)
        pool = self._started()
        try:
            return pool.submit(decode_request, data, split).result()
        except BrokenProcessPool as err:
            with self._lock:
                if self._pool is pool:
                    self._pool = None
            raise RuntimeError("a JSON decoding worker process died; it is started again") from err

    def _started(self) -> ProcessPoolExecutor:
        with self._lock:
            if self.closed:
                raise RuntimeError("the server is shutting down")
            if self._pool is None:
                self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                                 initializer=_lower_priority)
            return self._pool

    def pids(self) -> list[int]:
        """The worker processes' ids (none before the first large part)."""
        with self._lock:
            return [] if self._pool is None else [p.pid for p in self._pool._processes.values()]

    def close(self) -> None:
        """Stop the workers (a decode in progress there is abandoned)."""
        with self._lock:
            self.closed, pool, self._pool = True, self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
