"""``make bench``: every benchmark, one after the other, each printing its own summary.

Each entry is a module under ``benchmarks/`` with ``main(argv) -> int``; run one alone with
``python -m benchmarks.<name>``. Results go to ``artifacts/bench/<name>.json``.
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path

BENCHMARKS = (
    "torch_overhead",  # issue 2: PyTorch CPU forward / forward+backward, RF vs plain ResNet-50
    "export_latency",  # issue 3: ONNX Runtime CPU latency and file size of the export, RF vs plain
    "rectify_kernel",  # issue 5: RFConvRectify CUDA kernel vs D2D copy and torch multiply (GPU only)
    "serving_load",  # issue 6: KServe server with dynamic batching vs in-process ONNX Runtime at batch 8
    "serving_abuse",  # issue 15: serving throughput and p50/p99 with and without abusive clients
    "serving_protocols",  # issue 14: gRPC vs HTTP binary vs HTTP JSON vs in-process ORT, batch 1 and 8
    "light_paths",  # issue 11: serve idle RSS and --help time vs the tree before the package layout
    "quantize_latency",  # issue 17: ONNX Runtime CPU latency of INT8 RF vs plain and vs fp32, kernels picked
    "quantize_accuracy",  # issue 17: INT8 accuracy, trained digits CNNs and RF-ResNet-50 vs plain
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
