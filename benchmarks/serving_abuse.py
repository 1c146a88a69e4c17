"""``make bench``'s serving-under-abuse run: throughput and p50/p99 of well-behaved clients with and
without abusive ones, the server's RSS and readiness.

The traffic, the abusers and the measurements are :mod:`tests.helpers.serving_chaos` (one
definition, shared with the chaos test). Run: ``python -m benchmarks.serving_abuse [--clients N]
[--duration-s S] [--model FILE --image C,H,W]``.
"""

from __future__ import annotations

import sys

from tests.helpers.serving_chaos import main

if __name__ == "__main__":
    sys.exit(main())
