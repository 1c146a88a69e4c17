"""Whether a named backend can run on this machine, asked before any work: the one check lives in
:mod:`exporter.backends.availability` (shared with ``bench``); re-exported here for compare."""

from __future__ import annotations

from exporter.backends.availability import check_named, why_not

__all__ = ["check_named", "why_not"]
