"""ONNX Runtime CPU latency of the exported RF-ResNet-50 vs the plain ResNet-50 (same BN-folded weights).

Both models come from :func:`exporter.onnx.export.export_onnx` (static 224x224, dynamic batch, BN
folded); they share every weight, so the ratio is the cost of rectification alone. Each batch size
runs all candidates in interleaved blocks in one process (:mod:`exporter.bench.timing`) and reports the
median ratio to the plain model with the spread over blocks, and the ratio of the 10th-percentile
run times (the runs least disturbed by other processes). Blocks of one run each (the default)
alternate the candidates run by run, which cancels most of the drift of a shared machine.
``--compact-scales`` adds the ``compact_scales`` export (checked against the default export before
it is timed). Also reports the file-size overhead. (The alternative graph layouts once timed here
are a finished study: benchmarks/README.md, "export_latency".)

Target: ratio <= 1.02 at batch 1; file size <= +0.05 %.
Run: ``python -m benchmarks.export_latency [--compact-scales] [--batch 1 8] [--blocks 41] [--spin]``.

ONNX Runtime's worker threads spin while they wait for work by default. On a machine whose
cores are shared with other processes that turns every small parallel op into a wait for a
descheduled thread, which penalises graphs with more nodes far beyond their real cost; the
benchmark therefore disables spinning (``session.intra_op.allow_spinning=0``) unless ``--spin``.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.harness import export_rf_and_plain, ort_session
from exporter.bench.timing import interleaved

MODEL = "resnet50"
SIZE = 224


def check_same_function(reference, candidates: dict, batch: int = 2) -> dict[str, float]:
    """Max error of each candidate relative to the reference's largest logit; raises above 1e-5."""
    x = np.random.default_rng(0).standard_normal((batch, 3, SIZE, SIZE), dtype=np.float32)
    want = reference.run(None, {"input": x})[0]
    errors = {}
    for name, candidate in candidates.items():
        got = candidate.run(None, {"input": x})[0]
        errors[name] = float(np.abs(got - want).max() / np.abs(want).max())
        if errors[name] > 1e-5:
            raise RuntimeError(f"export {name} does not compute the rectified model (error {errors[name]:.2e})")
    return errors


def run(batches=(1, 8), blocks: int = 41, runs: int = 1, threads: int = 2, spin: bool = False,
        compact_scales: bool = False, folder: Path | None = None) -> dict:
    folder = Path(folder or tempfile.mkdtemp(prefix="export_latency_"))
    folder.mkdir(parents=True, exist_ok=True)
    variants = {"rf_compact_scales": {"compact_scales": True}} if compact_scales else {}
    paths = export_rf_and_plain(folder, MODEL, SIZE, rf_variants=variants)
    sessions = {name: ort_session(p, threads, spin) for name, p in paths.items()}
    errors = check_same_function(sessions["rf"], {n: sessions[n] for n in variants})
    sizes = {name: p.stat().st_size for name, p in paths.items()}
    result = {
        "model": MODEL, "input_size": SIZE, "threads": threads, "spinning": spin,
        "machine": f"{platform.machine()} {platform.processor()}".strip(),
        "blocks": blocks, "runs_per_block": runs,
        "file_bytes": sizes,
        "file_overhead_percent": {n: 100 * (sizes[n] / sizes["plain"] - 1) for n in sizes if n != "plain"},
        "variant_errors": errors, "batches": {},
    }
    for batch in batches:
        x = np.random.default_rng(batch).standard_normal((batch, 3, SIZE, SIZE), dtype=np.float32)
        calls = {name: (lambda s=s, x=x: s.run(None, {"input": x})) for name, s in sessions.items()}
        timing = interleaved(calls, "plain", blocks=blocks, runs_per_block=runs)
        result["batches"][str(batch)] = {
            name: {"median_ms": timing.median_s(name) * 1e3, "ratio": float(np.median(timing.ratios(name))),
                   "ratio_min": min(timing.ratios(name)), "ratio_max": max(timing.ratios(name)),
                   "ratio_p10": timing.percentile_s(name, 10) / timing.percentile_s("plain", 10),
                   "ratios": timing.ratios(name)}
            for name in calls
        }
    return result


def print_report(result: dict) -> None:
    spin = "on" if result["spinning"] else "off"
    print(f"ONNX Runtime CPU, {result['model']} {result['input_size']}x{result['input_size']}, "
          f"{result['threads']} threads, spinning {spin}, {result['blocks']} interleaved blocks "
          f"x {result['runs_per_block']} runs ({result['machine']})")
    for batch, rows in result["batches"].items():
        print(f"  batch {batch}")
        for name, row in rows.items():
            print(f"    {name:<20} {row['median_ms']:8.2f} ms  ratio {row['ratio']:.3f} "
                  f"(blocks {row['ratio_min']:.3f}..{row['ratio_max']:.3f}, fastest 10 % {row['ratio_p10']:.3f})")
    for name, pct in result["file_overhead_percent"].items():
        print(f"  file size {name:<20} {result['file_bytes'][name] / 1e6:9.3f} MB  {pct:+.3f} % vs plain")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--blocks", type=int, default=41)
    parser.add_argument("--runs", type=int, default=1, help="runs per block")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--spin", action="store_true", help="let ORT's worker threads spin (ORT's default)")
    parser.add_argument("--compact-scales", action="store_true", help="also time the compact_scales export")
    parser.add_argument("--keep", type=Path, help="write the ONNX files here instead of a temporary folder")
    parser.add_argument("--json", help="also write the result here")
    args = parser.parse_args(argv)
    result = run(tuple(args.batch), args.blocks, args.runs, args.threads, args.spin, args.compact_scales, args.keep)
    print_report(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
