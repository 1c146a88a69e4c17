"""``make bench``: every benchmark, one after the other, each printing its own summary.

Each entry is a module under ``benchmarks/`` with ``main(argv) -> int``; run one alone with
``python -m benchmarks.<name>``. Results go to ``artifacts/bench/<name>.json``. What they share
(percentiles, ONNX Runtime sessions, the RF-vs-plain exports) is :mod:`benchmarks.harness`; the
results and the finished studies are in benchmarks/README.md.
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path

BENCHMARKS = (
    "torch_overhead",  # PyTorch CPU forward / forward+backward, RF vs plain ResNet-50
    "export_latency",  # ONNX Runtime CPU latency and file size of the export, RF vs plain
    "rectify_kernel",  # RFConvRectify CUDA kernel vs D2D copy and torch multiply (GPU only)
    "serving_load",  # KServe server with dynamic batching vs in-process ONNX Runtime at batch 8
    "serving_abuse",  # serving throughput and p50/p99 with and without abusive clients
    "serving_protocols",  # gRPC vs HTTP binary vs HTTP JSON vs in-process ORT, batch 1 and 8
    "light_paths",  # serve idle RSS and --help time vs the tree before the package layout
    "quantize_latency",  # ONNX Runtime CPU latency of INT8 RF vs plain and vs fp32, kernels picked
    "quantize_accuracy",  # INT8 accuracy, trained digits CNNs and RF-ResNet-50 vs plain
)


def main() -> int:
    out = Path("artifacts/bench")
    out.mkdir(parents=True, exist_ok=True)
    failed = []
    for name in BENCHMARKS:
        print(f"\n=== benchmarks.{name}", flush=True)
        start = time.perf_counter()
        code = importlib.import_module(f"benchmarks.{name}").main(["--json", str(out / f"{name}.json")])
        print(f"=== {name}: {'ok' if code == 0 else f'exit {code}'} in {time.perf_counter() - start:.0f} s")
        if code:
            failed.append(name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
