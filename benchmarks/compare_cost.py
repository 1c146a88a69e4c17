"""Cost of the default ``compare`` (noise floor, every rectified layer) against the check as it
was before (fixed tolerance, outputs only), on RF-ResNet-50 exported static at 224 (issue #12).

Both run the default backends (those this machine lacks are skipped) on the same file, one
batch of seeded random inputs, interleaved round by round so that load on the shared cores
hits both alike; the wall time of each ``compare`` call is taken, model and file loading
included, and the process CPU time (all threads; less moved by other load than wall time).

    python -m benchmarks.compare_cost --rounds 5 --json artifacts/bench/compare_cost.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from exporter.comparison.compare import compare
from exporter.model.registry import load_model
from exporter.onnx.export import export_onnx

VARIANTS = {
    "before (tolerance, outputs only)": {"verdict": "tolerance", "outputs_only": True},
    "default (noise floor, every layer)": {},
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--hw", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    model = load_model(args.model)
    times = {name: [] for name in VARIANTS}
    cpu = {name: [] for name in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        export_onnx(model, torch.randn(1, 3, args.hw, args.hw), path)
        for round_ in range(args.rounds):
            order = list(VARIANTS) if round_ % 2 == 0 else list(reversed(VARIANTS))
            for name in order:
                start, cpu_start = time.perf_counter(), time.process_time()
                report = compare(path, model, **VARIANTS[name])
                times[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - cpu_start)
                assert report.passed, report.format_table()
    medians = {name: statistics.median(values) for name, values in times.items()}
    cpu_medians = {name: statistics.median(values) for name, values in cpu.items()}
    before, after = medians.values()
    cpu_before, cpu_after = cpu_medians.values()
    for name, values in times.items():
        print(f"{name:<36} median {medians[name]:6.2f} s (CPU {cpu_medians[name]:.2f} s)  "
              f"runs {', '.join(f'{v:.2f}' for v in values)}")
    print(f"ratio default / before: {after / before:.2f} wall, {cpu_after / cpu_before:.2f} CPU")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"model": args.model, "hw": args.hw, "times_s": times, "cpu_s": cpu,
                                         "median_s": medians, "cpu_median_s": cpu_medians,
                                         "ratio": after / before, "cpu_ratio": cpu_after / cpu_before},
                                        indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
