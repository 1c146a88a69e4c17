"""One server-wide memory budget for everything a client can make the server hold.

Every byte a request brings in is reserved here before the server keeps it: a body being read
(its ``Content-Length`` before any byte is read, or chunk by chunk without one), the decoded
tensors while they are queued and run, and the computed answer until it has been written. Over
HTTP and gRPC, streams included, all draw on one :class:`MemoryBudget`; a reservation that does
not fit is refused at once with 503 / RESOURCE_EXHAUSTED and ``Retry-After``, never waited for.
"""

from __future__ import annotations

import os
import threading

from exporter.serving.protocol import RETRY_AFTER_S, RequestError

MIB = 1024 * 1024


def default_budget_bytes() -> int:
    """A quarter of the machine's physical memory (1 GiB where it cannot be read)."""
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        total = 4 * 1024 * MIB
    return max(64 * MIB, total // 4)


def over_budget(what: str, nbytes: int, used: int, limit: int) -> RequestError:
    """The 503 for a reservation that does not fit; the gRPC front end maps it to RESOURCE_EXHAUSTED."""
    return RequestError(
        f"the server holds {used / MIB:.1f} MiB of requests and answers in flight; {what} needs "
        f"{nbytes / MIB:.1f} MiB more than its {limit / MIB:.0f} MiB (--max-inflight-mb); retry later",
        503, {"Retry-After": str(RETRY_AFTER_S)}, grpc_code="RESOURCE_EXHAUSTED",
    )


class MemoryBudget:
    """At most ``limit`` bytes reserved at once, across threads. ``used`` is what is reserved now,
    ``peak`` the most ever reserved, ``refused`` how many reservations did not fit."""

    def __init__(self, limit: int):
        if limit < 1:
            raise ValueError(f"the memory budget must be at least 1 byte, got {limit}")
        self.limit = limit
        self.used = 0
        self.peak = 0
        self.refused = 0
        self._lock = threading.Lock()

    def reserve(self, nbytes: int = 0, what: str = "this request") -> Reservation:
        """A :class:`Reservation` of ``nbytes``; the 503 of :func:`over_budget` when they do not fit."""
        reservation = Reservation(self)
        reservation.grow(nbytes, what)
        return reservation

    def _take(self, nbytes: int, what: str | None) -> None:
        with self._lock:
            if what is not None and nbytes > 0 and self.used + nbytes > self.limit:
                self.refused += 1
                raise over_budget(what, nbytes, self.used, self.limit)
            self.used += nbytes
            self.peak = max(self.peak, self.used)

    def _give(self, nbytes: int) -> None:
        with self._lock:
            self.used -= nbytes


class Reservation:
    """Bytes one request holds in a :class:`MemoryBudget`; :meth:`release` (idempotent) gives them all back."""

    def __init__(self, budget: MemoryBudget):
        self._budget = budget
        self.nbytes = 0
        self._released = False

    def grow(self, nbytes: int, what: str | None = "this request") -> None:
        """Reserve ``nbytes`` more: refused (503) when they do not fit, unless ``what`` is None
        (work already done, such as a computed answer, is always counted, never refused)."""
        if self._released:
            return
        self._budget._take(nbytes, what)
        self.nbytes += nbytes

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._budget._give(self.nbytes)

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, *exc) -> None:
        self.release()
