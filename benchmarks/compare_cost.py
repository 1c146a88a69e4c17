"""Cost of the default ``compare`` (noise floor, every rectified layer) against the check as it
was before (fixed tolerance, outputs only), on RF-ResNet-50 exported static at 224 (issue #12).

Variants, all on the same file with the default backends (those this machine lacks are
skipped), one batch of seeded random inputs, interleaved round by round (the order alternates)
so that load on the shared cores hits them alike:

* ``before``: this code with ``verdict="tolerance", outputs_only=True``, the check before #12;
* ``default``: this code's default;
* with ``--baseline REV``, ``REV default``: the default ``compare`` of the code at git revision
  ``REV`` (its files are extracted to a temporary folder and run in a worker process that loads
  the model once), which is "today's time" as the issue measured it.

For each call the wall time (model and file loading included) and the process CPU time (all
threads; less moved by other load than wall time) are taken.

    python -m benchmarks.compare_cost --rounds 7 --baseline b331959 --json artifacts/bench/compare_cost.json
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
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
DEFAULT = "default (noise floor, every layer)"

WORKER = r"""
import json, sys, time
from exporter.comparison.compare import compare
from exporter.model.registry import load_model
model = load_model(sys.argv[1])
print("ready", flush=True)
for _ in sys.stdin:
    start, cpu = time.perf_counter(), time.process_time()
    passed = compare(sys.argv[2], model).passed
    print(json.dumps([time.perf_counter() - start, time.process_time() - cpu, passed]), flush=True)
"""


class _Baseline:
    """The default ``compare`` of the code at a git revision, in a worker process."""

    def __init__(self, rev: str, model: str, onnx_path: Path, workdir: Path):
        tree = workdir / "baseline"
        tree.mkdir()
        archive = subprocess.run(["git", "archive", "--format=tar", rev], check=True, capture_output=True,
                                 cwd=Path(__file__).resolve().parents[1]).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(tree, filter="data")
        env = dict(os.environ, PYTHONPATH=str(tree))
        self.proc = subprocess.Popen([sys.executable, "-c", WORKER, model, str(onnx_path)], cwd=tree, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the baseline worker at {rev} did not start")

    def run(self) -> tuple[float, float, bool]:
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        return tuple(json.loads(self.proc.stdout.readline()))

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--hw", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--baseline", metavar="REV", help="also time the default compare of this git revision")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    model = load_model(args.model)
    names = list(VARIANTS) + ([f"{args.baseline} default"] if args.baseline else [])
    wall = {name: [] for name in names}
    cpu = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        export_onnx(model, torch.randn(1, 3, args.hw, args.hw), path)
        baseline = _Baseline(args.baseline, args.model, path, Path(tmp)) if args.baseline else None
        try:
            for round_ in range(args.rounds):
                for name in names if round_ % 2 == 0 else list(reversed(names)):
                    if name in VARIANTS:
                        start, cpu_start = time.perf_counter(), time.process_time()
                        passed = compare(path, model, **VARIANTS[name]).passed
                        took = (time.perf_counter() - start, time.process_time() - cpu_start)
                    else:
                        *took, passed = baseline.run()
                    assert passed, f"{name}: the honest export failed"
                    wall[name].append(took[0])
                    cpu[name].append(took[1])
        finally:
            if baseline is not None:
                baseline.close()
    medians = {name: statistics.median(values) for name, values in wall.items()}
    cpu_medians = {name: statistics.median(values) for name, values in cpu.items()}
    for name in names:
        print(f"{name:<36} median {medians[name]:6.2f} s (CPU {cpu_medians[name]:.2f} s)  "
              f"runs {', '.join(f'{v:.2f}' for v in wall[name])}")
    ratios = {other: {"wall": medians[DEFAULT] / medians[other], "cpu": cpu_medians[DEFAULT] / cpu_medians[other]}
              for other in names if other != DEFAULT}
    for other, ratio in ratios.items():
        print(f"ratio default / {other}: {ratio['wall']:.2f} wall, {ratio['cpu']:.2f} CPU")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"model": args.model, "hw": args.hw, "baseline": args.baseline,
                                         "wall_s": wall, "cpu_s": cpu, "median_wall_s": medians,
                                         "median_cpu_s": cpu_medians, "ratios": ratios}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
