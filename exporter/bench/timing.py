"""Interleaved timing: the way every benchmark compares a candidate with its baseline.

Timing on shared machines drifts between runs, so candidates are measured in alternating blocks
in one process, and each block yields one ratio; the report gives the median ratio and the
spread over blocks.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Comparison:
    """Timings of each candidate: per-block medians (``seconds``) and every run (``samples``)."""

    seconds: dict[str, list[float]]
    samples: dict[str, list[float]]
    baseline: str

    def median_s(self, name: str) -> float:
        return statistics.median(self.seconds[name])

    def percentile_s(self, name: str, q: float) -> float:
        """The ``q``-th percentile (0-100) of all single-run times of ``name``, in seconds."""
        runs = sorted(self.samples[name])
        return runs[min(len(runs) - 1, round(q / 100 * (len(runs) - 1)))]

    def ratios(self, name: str) -> list[float]:
        return [a / b for a, b in zip(self.seconds[name], self.seconds[self.baseline], strict=True)]

    def summary(self, name: str) -> str:
        r = sorted(self.ratios(name))
        return (f"{name}/{self.baseline} = {statistics.median(r):.3f} "
                f"(blocks: min {r[0]:.3f}, max {r[-1]:.3f}, n={len(r)})")


def interleaved(candidates: dict[str, Callable[[], object]], baseline: str, blocks: int = 7,
                runs_per_block: int = 5, warmup: int = 2) -> Comparison:
    """Time each zero-argument callable in alternating blocks; median seconds per block."""
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    seconds: dict[str, list[float]] = {name: [] for name in candidates}
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for block in range(blocks):
        order = list(candidates) if block % 2 == 0 else list(reversed(candidates))
        for name in order:
            fn = candidates[name]
            times = []
            for _ in range(runs_per_block):
                start = time.perf_counter()
                fn()
                times.append(time.perf_counter() - start)
            seconds[name].append(statistics.median(times))
            samples[name].extend(times)
    return Comparison(seconds, samples, baseline)
