"""Large JSON request parts parsed, and large JSON answers written, in worker processes, off the
server's GIL.

Python's JSON decoder and encoder hold the GIL for the whole call, so a codec *thread* parsing or
writing a large JSON tensor stalls the event loop, health checks included (benchmarks/README.md,
"serving_abuse", has the times). Parts of :data:`OFF_PROCESS_BYTES` or more are parsed by
:func:`~exporter.serving.protocol.decode_request`, answers listing :data:`OFF_PROCESS_VALUES`
values or more as JSON are written by :func:`~exporter.serving.protocol.encode_response`, in a
``spawn`` process pool (started at the first such request); the caller's thread only waits, GIL
released. Smaller ones run in the calling thread, where a process hop would cost more than the work.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import numpy as np

from exporter.serving.protocol import InferRequest, RequestedOutput, decode_request, encode_response

OFF_PROCESS_BYTES = 256 << 10  # JSON bytes from which a part is parsed in a worker process
OFF_PROCESS_VALUES = 32768  # values listed as JSON from which an answer is written in a worker
NICENESS = 10  # the workers' scheduling priority below the server's: the model's threads go first

log = logging.getLogger(__name__)


def json_workers() -> int:
    """Worker processes for a machine: one per four cores, at least one (any client can ask for JSON
    work at no cost to itself: it never gets more than a share of the CPU)."""
    return max(1, (os.cpu_count() or 1) // 4)


def _lower_priority() -> None:
    os.nice(NICENESS)


class JsonPool:
    """:meth:`decode` = :func:`~exporter.serving.protocol.decode_request` and :meth:`encode` =
    :func:`~exporter.serving.protocol.encode_response`, the large ones in worker processes. A
    :class:`~exporter.serving.protocol.RequestError` raised there reaches the caller with its
    status; a worker that died raises :class:`RuntimeError` (a server failure) and the pool is
    started again for the next request. Where worker processes cannot be made (no ``/dev/shm`` in
    a container, say), the pool says so once in the log and does everything in the calling thread."""

    def __init__(self, workers: int, off_process_bytes: int = OFF_PROCESS_BYTES,
                 off_process_values: int = OFF_PROCESS_VALUES):
        self.workers = workers
        self.off_process_bytes = off_process_bytes
        self.off_process_values = off_process_values
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self.closed = False
        self.in_thread_only = False  # worker processes could not be made here

    def decode(self, data: bytes, split: int | None) -> InferRequest:
        """The request in ``data`` (JSON part ``data[:split]``, all of it when ``split`` is None)."""
        if (len(data) if split is None else split) < self.off_process_bytes:
            return decode_request(data, split)
        return self._in_worker(decode_request, data, split)

    def encode(self, model_name: str, model_version: str, request_id: str | None,
               outputs: dict[str, np.ndarray], requested: tuple[RequestedOutput, ...]) -> tuple[bytes, int | None]:
        """:func:`~exporter.serving.protocol.encode_response` of these arguments."""
        listed = sum(outputs[want.name].size for want in requested if not want.binary)
        if listed < self.off_process_values:
            return encode_response(model_name, model_version, request_id, outputs, requested)
        return self._in_worker(encode_response, model_name, model_version, request_id, outputs, requested)

    def _in_worker(self, function, *args):
        pool = self._started()
        if pool is None:
            return function(*args)
        try:
            return pool.submit(function, *args).result()
        except BrokenProcessPool as err:
            with self._lock:
                if self._pool is pool:
                    self._pool = None
            raise RuntimeError("a JSON worker process died; it is started again") from err

    def _started(self) -> ProcessPoolExecutor | None:
        with self._lock:
            if self.closed:
                raise RuntimeError("the server is shutting down")
            if self._pool is None and not self.in_thread_only:
                try:
                    self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                                     initializer=_lower_priority)
                except OSError as err:
                    self.in_thread_only = True
                    log.warning("JSON worker processes cannot be started here (%s): large JSON is parsed on the "
                                "server's threads, which slows its health checks while it runs; send binary data", err)
            return self._pool

    def pids(self) -> list[int]:
        """The worker processes' ids (none before the first large request)."""
        with self._lock:
            return [] if self._pool is None else [p.pid for p in self._pool._processes.values()]

    def close(self) -> None:
        """Stop the workers (a decode in progress there is abandoned)."""
        with self._lock:
            self.closed, pool, self._pool = True, self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
