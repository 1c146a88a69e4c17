"""The interleaved timing helper: ordering, ratios and percentiles on controlled workloads."""

import time

from exporter.bench.timing import interleaved


def test_interleaved_ratio_tracks_relative_cost():
    calls = []

    def work(seconds, tag):
        def go():
            calls.append(tag)
            time.sleep(seconds)
        return go

    result = interleaved({"slow": work(0.004, "s"), "fast": work(0.002, "f")}, "fast",
                         blocks=4, runs_per_block=3, warmup=1)
    assert len(result.seconds["slow"]) == 4 and len(result.samples["fast"]) == 12
    assert all(r > 1.3 for r in result.ratios("slow"))  # sleep(4 ms) / sleep(2 ms), with slack
    # blocks alternate their order: warm-up (s, f), then s,s,s f,f,f | f,f,f s,s,s | ...
    assert calls[2:8] == ["s"] * 3 + ["f"] * 3 and calls[8:14] == ["f"] * 3 + ["s"] * 3
    assert result.percentile_s("slow", 90) >= result.median_s("slow") >= 0.004
