"""`make demo`: the whole deployment path for RF-ResNet-50, end to end, on whatever this machine has.

1. `rfconv-deploy info`: which backends exist here.
2. `rfconv-deploy export`: static ONNX (Conv -> Mul(scale), BN folded), dynamic-H/W ONNX, and the
   plugin-mode ONNX for TensorRT; `rfconv-deploy quantize`: the static file as INT8 Q/DQ.
3. `rfconv-deploy compare`: every available backend against PyTorch (unavailable ones are listed
   as skipped with the reason), for each file (the INT8 one by the int8 verdict).
4. `rfconv-deploy bench`: RF vs plain latency on every available backend.
5. One summary table: what passed, the largest error per backend, latency ratios, and where the
   files are.

It runs the same CLI a user would, in-process, and reads back the JSON reports. Usage:
`python deploy_examples/demo.py [--out artifacts/demo] [--model resnet50] [--quick]`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from exporter.cli import main as cli

STEPS = 10


class Progress:
    """Numbered step headers with elapsed time."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.step = 0

    def __call__(self, text: str) -> None:
        self.step += 1
        print(f"\n[{self.step}/{STEPS}] {text}  (t={time.perf_counter() - self.start:.0f}s)", flush=True)


def run(argv: list[str]) -> int:
    print("$ rfconv-deploy " + " ".join(argv), flush=True)
    return cli(argv)


def max_error(report: dict) -> dict[str, float | None]:
    """The largest scaled error (max |err| / max |reference|) of each compared backend."""
    found = {}
    for pair in report["comparisons"]:
        errors = [o["scaled_error"] for o in pair["outputs"] if o["scaled_error"] is not None]
        found[pair["backend"]] = max(errors) if errors else None
    return found


def cosines(report: dict) -> dict[str, float]:
    """The smallest output cosine similarity of each compared backend."""
    return {pair["backend"]: min(o["cosine_similarity"] for o in pair["outputs"]) for pair in report["comparisons"]
            if all(o["cosine_similarity"] is not None for o in pair["outputs"])}


def int8_latency(reports: dict) -> str:
    """ONNX Runtime CPU mean latency of the INT8 file against the static fp32 one (from compare; one run each)."""
    def latency(report):
        ran = [b for b in report["backends"] if b["name"] == "ort-cpu" and b["status"] == "ran"]
        return ran[0]["mean_latency_ms"] if ran else None

    fp32, int8 = latency(reports["static"]), latency(reports["int8"])
    if not fp32 or not int8:
        return "int8 ort-cpu latency: not measured"
    return f"int8 ort-cpu latency {int8:.1f} ms vs fp32 {fp32:.1f} ms ({int8 / fp32:.2f} x; batch 1, from compare)"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("artifacts/demo"))
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--quick", action="store_true", help="fewer timing blocks (for smoke tests)")
    args = parser.parse_args(argv)
    out, model = args.out, args.model
    out.mkdir(parents=True, exist_ok=True)
    progress = Progress()
    files = {"static": out / f"{model}_static.onnx", "dynamic": out / f"{model}_dynamic.onnx",
             "plugin": out / f"{model}_plugin.onnx", "int8": out / f"{model}_int8.onnx"}

    progress("Backends on this machine")
    run(["info"])

    progress(f"Export RF-{model}: static 224x224, dynamic batch")
    exports = {"static": run(["export", model, "-o", str(files["static"])])}
    progress("Export with dynamic H and W (the factor is computed in the graph)")
    exports["dynamic"] = run(["export", model, "-o", str(files["dynamic"]), "--dynamic-hw"])
    progress("Export in plugin mode (Conv -> RFConvRectify, for TensorRT)")
    exports["plugin"] = run(["export", model, "-o", str(files["plugin"]), "--mode", "plugin"])
    progress("Quantize the static file to INT8 Q/DQ (TensorRT-ready; factors in fp32)")
    exports["int8"] = run(["quantize", str(files["static"]), "-o", str(files["int8"])])
    if any(exports.values()):
        print(f"export failed: {exports}", file=sys.stderr)
        return 1

    checks = [
        ("static", files["static"], []),
        ("dynamic 224", files["dynamic"], ["--input-shape", "1,3,224,224"]),
        ("dynamic 193x171", files["dynamic"], ["--input-shape", "2,3,193,171"]),
        ("plugin", files["plugin"], []),
        ("int8", files["int8"], []),
    ]
    reports = {}
    for label, path, extra in checks:
        progress(f"Compare {label}: every available backend against PyTorch")
        report_path = out / f"compare_{label.replace(' ', '_')}.json"
        run(["compare", str(path), "--model", model, "--report", str(report_path), *extra])
        reports[label] = json.loads(report_path.read_text())

    progress("Benchmark RF vs plain on every available backend")
    timing = ["--blocks", "2", "--runs", "1"] if args.quick else ["--blocks", "5", "--runs", "2"]
    run(["bench", "--model", model, "--batch-sizes", "1,8", "--out", str(out / "bench"), *timing])
    bench = json.loads((out / "bench" / "bench.json").read_text())

    print(f"\n{'=' * 78}\nSummary: RF-{model}\n{'=' * 78}")
    print(f"{'check':<17} {'result':<6} largest error per backend against PyTorch float64 (max|err| / max|ref|; "
          "int8: against fp32, with cosine)")
    reasons: dict[tuple[str, str], list[str]] = {}
    for label, report in reports.items():
        errors = ", ".join(f"{b} {e:.1e}" if e is not None else f"{b} n/a" for b, e in max_error(report).items())
        if report["verdict_mode"] == "int8":
            errors += "; cosine " + ", ".join(f"{b} {c:.4f}" for b, c in cosines(report).items())
        skipped = [b for b in report["backends"] if b["status"] == "skipped"]
        for b in skipped:
            reasons.setdefault((b["name"], b["detail"]), []).append(label)
        skips = f"; skipped {', '.join(b['name'] for b in skipped)}" if skipped else ""
        print(f"{label:<17} {'PASS' if report['passed'] else 'FAIL':<6} {errors}{skips}")
    for (name, why), labels in reasons.items():
        print(f"  {name} skipped ({', '.join(labels)}): {why.removeprefix(f'{name}: ')}")
    print(f"\n{'latency':<17} {'batch':>5} {'RF ms':>9} {'plain ms':>9} {'RF/plain':>9}")
    for row in bench["rows"]:
        print(f"{row['backend']:<17} {row['batch']:>5} {row['rf_median_ms']:>9.1f} {row['plain_median_ms']:>9.1f} "
              f"{row['ratio']:>9.3f}")
    for name, why in bench["skipped"].items():
        print(f"{name:<17} skipped: {why.removeprefix(f'{name}: ')}")
    print(int8_latency(reports))
    print(f"\nFiles in {out}/: " + ", ".join(p.name for p in files.values())
          + ", compare_*.json, bench/bench.json, bench/bench.png")
    print(f"Total time: {time.perf_counter() - progress.start:.0f} s")
    return 0 if all(r["passed"] for r in reports.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
