"""Log lines a client can trigger at will, bounded: :class:`RateLimitedLog` (one warning per
interval for a recurring event) and :class:`TracebackLog` (one traceback per kind of failure per
interval, the rest counted).

A flood of requests that fail the same way costs one line per interval, never one per request.
"""

from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger("exporter.serving")

DISCONNECT_LOG_INTERVAL_S = 10.0
TRACEBACK_LOG_INTERVAL_S = 60.0


class RateLimitedLog:
    """At most one warning per ``interval_s`` for a recurring event, counting the ones it held back."""

    def __init__(self, message: str, interval_s: float = DISCONNECT_LOG_INTERVAL_S,
                 logger: logging.Logger | None = None):
        self.message = message
        self.interval_s = interval_s
        self.count = 0
        self._held = 0
        self._last = -float("inf")
        self._log = logger or log
        self._lock = threading.Lock()

    def note(self, detail: str) -> None:
        with self._lock:
            self.count += 1
            now = time.monotonic()
            if now - self._last < self.interval_s:
                self._held += 1
                return
            held, self._last, self._held = self._held, now, 0
        more = f" ({held} more since the last such line)" if held else ""
        self._log.warning("%s: %s%s", self.message, detail, more)


class TracebackLog:
    """Server-side failures logged with their traceback at most once per ``interval_s`` per kind
    (the exception's type and where it was raised); the others of that kind are counted and the
    next logged line says how many there were. Thread-safe."""

    def __init__(self, interval_s: float = TRACEBACK_LOG_INTERVAL_S, logger: logging.Logger | None = None):
        self.interval_s = interval_s
        self.count = 0
        self._log = logger or log
        self._kinds: dict[tuple, tuple[float, int]] = {}  # kind -> (last logged, held back since)
        self._lock = threading.Lock()

    @staticmethod
    def kind(err: BaseException) -> tuple:
        tb = err.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        where = (tb.tb_frame.f_code.co_filename, tb.tb_lineno) if tb is not None else ()
        return (type(err).__qualname__, *where)

    def failed(self, what: str, err: BaseException) -> None:
        """Log ``what`` failed with ``err`` (its traceback), unless one of its kind was logged within the interval."""
        key = self.kind(err)
        with self._lock:
            self.count += 1
            last, held = self._kinds.get(key, (-float("inf"), 0))
            now = time.monotonic()
            if now - last < self.interval_s:
                self._kinds[key] = (last, held + 1)
                return
            self._kinds[key] = (now, 0)
        more = f" ({held} more of this kind since the last such traceback)" if held else ""
        self._log.error("%s failed: %s: %s%s", what, type(err).__name__, err, more, exc_info=err)


class ConnectionLog:
    """The logger aiohttp's connection handler writes to: a malformed request (an HTTP parse
    error, answered 400 by aiohttp) is one rate-limited line without traceback; any other
    exception goes to ``failures`` (one traceback per kind per interval); debug lines pass."""

    def __init__(self, failures: TracebackLog, logger: logging.Logger | None = None):
        self._log = logger or log
        self._failures = failures
        self.malformed = RateLimitedLog("malformed HTTP request", logger=self._log)

    def debug(self, msg, *args, **kwargs) -> None:
        kwargs.pop("exc_info", None)
        self._log.debug(msg, *args, **kwargs)

    def exception(self, msg, *args, exc_info=None, **kwargs) -> None:
        err = exc_info if isinstance(exc_info, BaseException) else None
        from aiohttp.http_exceptions import HttpProcessingError

        if isinstance(err, HttpProcessingError):
            detail = " ".join(str(err).split())
            self.malformed.note(f"{msg % args if args else msg}: {type(err).__name__}: {detail}")
        elif err is not None:
            self._failures.failed(msg % args if args else msg, err)
        else:
            self._log.error(msg, *args)

    error = exception
    warning = exception

    def isEnabledFor(self, level: int) -> bool:  # noqa: N802 - the logging.Logger method aiohttp calls
        return self._log.isEnabledFor(level)
