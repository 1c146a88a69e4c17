"""ONNX Runtime CPU latency of the two ONNX Runtime packages, ``onnxruntime`` and ``onnxruntime-gpu``
(its CPU EP), on the exported RF-ResNet-50 and ResNet-50: do the CPU numbers move when the
development environment installs the GPU package?

The two packages cannot live in one environment, so each runs in its own interpreter
(``--python-a`` / ``--python-b``, each with one of the packages and this project importable), in
alternating blocks: block k runs package A then B (B then A on odd blocks), each block a fresh
process timing ``--runs`` runs per model at batch 1 after a warm-up. Reports each package's
median over blocks per model, and B / A with its spread over blocks.

Run: ``python -m benchmarks.ort_package --python-a CPU_VENV/bin/python --python-b GPU_VENV/bin/python
[--blocks 6] [--runs 20]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.harness import cpu_flags, cpu_name, export_rf_and_plain

TIMER = """
import json, sys, time, numpy as np, onnxruntime
from benchmarks.harness import ort_session
runs, paths = int(sys.argv[1]), sys.argv[2:]
x = np.random.default_rng(0).standard_normal((1, 3, 224, 224), dtype=np.float32)
out = {"version": onnxruntime.__version__, "providers": onnxruntime.get_available_providers(), "ms": {}}
for path in paths:
    session = ort_session(path)
    name = session.get_inputs()[0].name
    for _ in range(3):
        session.run(None, {name: x})
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, {name: x})
        times.append(1000 * (time.perf_counter() - start))
    out["ms"][path] = sorted(times)[len(times) // 2]
print(json.dumps(out))
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python-a", required=True, help="interpreter with the onnxruntime (CPU) package")
    parser.add_argument("--python-b", required=True, help="interpreter with the onnxruntime-gpu package")
    parser.add_argument("--blocks", type=int, default=6)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        paths = export_rf_and_plain(Path(tmp))
        files = [str(paths["rf"]), str(paths["plain"])]
        medians: dict[str, dict[str, list[float]]] = {"a": {f: [] for f in files}, "b": {f: [] for f in files}}
        versions = {}
        for block in range(args.blocks):
            order = ("a", "b") if block % 2 == 0 else ("b", "a")
            for which in order:
                python = args.python_a if which == "a" else args.python_b
                done = subprocess.run([python, "-c", TIMER, str(args.runs), *files], capture_output=True, text=True,
                                      cwd=root, check=True, env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})
                result = json.loads(done.stdout.strip().splitlines()[-1])
                versions[which] = f"onnxruntime {result['version']} ({', '.join(result['providers'])})"
                for f in files:
                    medians[which][f].append(result["ms"][f])
            print(f"block {block + 1}/{args.blocks} done", file=sys.stderr, flush=True)
    report = {"machine": cpu_name(), "cpu_flags": " ".join(cpu_flags()),
              "a": versions["a"], "b": versions["b"], "models": {}}
    print(f"A: {versions['a']}\nB: {versions['b']}\nCPU flags: {report['cpu_flags']}")
    print(f"{'model':<8} {'A ms':>8} {'B ms':>8} {'B / A':>7} {'block range':>14}")
    for f, label in zip(files, ("RF", "plain"), strict=True):
        a, b = medians["a"][f], medians["b"][f]
        ratios = [y / x for x, y in zip(a, b, strict=True)]
        row = {"a_ms": statistics.median(a), "b_ms": statistics.median(b), "ratio": statistics.median(ratios),
               "ratio_min": min(ratios), "ratio_max": max(ratios)}
        report["models"][label] = row
        print(f"{label:<8} {row['a_ms']:8.2f} {row['b_ms']:8.2f} {row['ratio']:7.3f} "
              f"{row['ratio_min']:6.3f}-{row['ratio_max']:.3f}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
