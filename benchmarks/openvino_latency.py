"""OpenVINO CPU (``ov-cpu``) vs ONNX Runtime CPU (``ort-cpu``) latency of RF-ResNet-50 and ResNet-50.

Both files come from :func:`benchmarks.harness.export_rf_and_plain` (static 224x224, dynamic batch,
BN folded, the same weights), exactly as ``rfconv-deploy export`` writes them; OpenVINO reads them
as they are. The four candidates (RF and plain on each engine) run in one process in interleaved
blocks (:func:`exporter.bench.timing.interleaved`), and every ratio is taken block by block:
RF / plain on ``ov-cpu`` (the cost of rectification there), RF / plain on ``ort-cpu``, and
``ov-cpu`` / ``ort-cpu`` for each model. Both engines get the same thread count; OpenVINO computes
in fp32 (``INFERENCE_PRECISION_HINT f32``) unless ``--precision bf16``. Before timing, each
OpenVINO output is checked against ONNX Runtime's. The report names the CPU and its AVX-512 / AMX /
AVX2 flags, which decide which engine wins.

Target: RF / plain on ``ov-cpu`` <= 1.02 (median of blocks) at batch 1.
Run: ``python -m benchmarks.openvino_latency [--blocks 31] [--runs 5] [--threads 2] [--precision bf16]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.harness import cpu_flags, cpu_name, export_rf_and_plain, ort_session, percentile
from exporter.backends.openvino import compile_model, ov_cpu
from exporter.bench.timing import interleaved

MODEL = "resnet50"
SIZE = 224
def _block_ratios(seconds: dict[str, list[float]], a: str, b: str) -> list[float]:
    return [x / y for x, y in zip(seconds[a], seconds[b], strict=True)]


def run(blocks: int = 31, runs: int = 5, threads: int = 2, precision: str = "fp32", batch: int = 1,
        folder: Path | None = None) -> dict:
    import onnxruntime

    found = ov_cpu()
    if not found.available:
        raise RuntimeError(found.detail)
    folder = Path(folder or tempfile.mkdtemp(prefix="openvino_latency_"))
    folder.mkdir(parents=True, exist_ok=True)
    paths = export_rf_and_plain(folder, MODEL, SIZE)
    x = np.random.default_rng(batch).standard_normal((batch, 3, SIZE, SIZE), dtype=np.float32)
    calls, errors = {}, {}
    for kind, path in paths.items():
        session = ort_session(path, threads)
        compiled = compile_model(path, precision, threads)
        request = compiled.create_infer_request()
        want = session.run(None, {"input": x})[0]
        got = request.infer({"input": x})[compiled.outputs[0]]
        errors[kind] = float(np.abs(got - want).max() / np.abs(want).max())
        limit = 1e-4 if precision == "fp32" else 5e-2
        if errors[kind] > limit:
            raise RuntimeError(f"OpenVINO's {kind} output differs from ONNX Runtime's by {errors[kind]:.2e}")
        calls[f"ov_{kind}"] = lambda r=request: r.infer({"input": x})
        calls[f"ort_{kind}"] = lambda s=session: s.run(None, {"input": x})
    timing = interleaved(calls, "ov_plain", blocks=blocks, runs_per_block=runs)
    pairs = {"ov rf/plain": ("ov_rf", "ov_plain"), "ort rf/plain": ("ort_rf", "ort_plain"),
             "rf ov/ort": ("ov_rf", "ort_rf"), "plain ov/ort": ("ov_plain", "ort_plain")}
    ratios = {}
    for label, (a, b) in pairs.items():
        r = _block_ratios(timing.seconds, a, b)
        ratios[label] = {"median": statistics.median(r), "min": min(r), "max": max(r),
                         "p10": timing.percentile_s(a, 10) / timing.percentile_s(b, 10), "blocks": r}
    return {
        "model": MODEL, "input_size": SIZE, "batch": batch, "threads": threads, "precision": precision,
        "cpu": cpu_name(), "cpu_flags": cpu_flags(), "cores": _cores(), "openvino": found.detail,
        "onnxruntime": onnxruntime.__version__, "blocks": blocks, "runs_per_block": runs,
        "output_errors": errors,
        "ms": {name: {"median": timing.median_s(name) * 1e3,
                      "p10": percentile(timing.samples[name], 10) * 1e3,
                      "block_min": min(timing.seconds[name]) * 1e3, "block_max": max(timing.seconds[name]) * 1e3}
               for name in calls},
        "ratios": ratios,
    }


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def print_report(result: dict) -> None:
    print(f"{result['model']} {result['input_size']}x{result['input_size']}, batch {result['batch']}, "
          f"{result['threads']} threads, OpenVINO {result['precision']}, {result['blocks']} interleaved blocks "
          f"x {result['runs_per_block']} runs")
    print(f"  CPU: {result['cpu']} ({result['cores']} cores); flags: {' '.join(result['cpu_flags']) or 'none'}")
    print(f"  {result['openvino']}; ONNX Runtime {result['onnxruntime']}")
    for name, row in result["ms"].items():
        print(f"    {name:<10} {row['median']:8.2f} ms  (blocks {row['block_min']:.2f}..{row['block_max']:.2f}, "
              f"fastest 10 % {row['p10']:.2f})")
    for label, row in result["ratios"].items():
        print(f"    {label:<13} {row['median']:.3f} (blocks {row['min']:.3f}..{row['max']:.3f}, "
              f"fastest 10 % {row['p10']:.3f})")
    print("  OpenVINO vs ONNX Runtime output (max abs / max |ref|): "
          + ", ".join(f"{k} {v:.1e}" for k, v in result["output_errors"].items()))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=31)
    parser.add_argument("--runs", type=int, default=5, help="runs per block")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--keep", type=Path, help="write the ONNX files here instead of a temporary folder")
    parser.add_argument("--json", help="also write the result here")
    args = parser.parse_args(argv)
    found = ov_cpu()
    if not found.available:
        print(f"skipped: {found.detail}")
        return 0
    result = run(args.blocks, args.runs, args.threads, args.precision, args.batch, args.keep)
    print_report(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
