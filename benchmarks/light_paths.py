"""Light paths: idle RSS of ``rfconv-deploy serve`` and wall time of ``rfconv-deploy --help``,
this tree against a baseline revision, in one interleaved run.

    python -m benchmarks.light_paths [--baseline 842545c] [--json FILE]

The default baseline, 842545c, is the last commit before the layout of one package per step.

The baseline is extracted with ``git archive`` into a temporary folder; both trees run from
their own source (``PYTHONPATH``) with this virtual environment's packages. The served model is
RF-ResNet-50 (seeded weights, 224x224, dynamic batch) written once by this tree's
:func:`exporter.export_onnx`. Each run measures, for baseline then current (alternating which
goes first), one ``--help`` wall time and one server's resident set size (``VmRSS``, MiB) once
it prints that it listens. Reports medians and current/baseline ratios; writes
``artifacts/light_paths.json``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from benchmarks.harness import export_registry_model

ROOT = Path(__file__).resolve().parents[1]
BASELINE = "842545c"  # the last commit before the one-package-per-step layout
HELP = "import sys; from exporter.cli import main; sys.argv = ['rfconv-deploy', '--help']; main()"
SERVE = "import sys; from exporter.cli import main; sys.exit(main(['serve', sys.argv[1], '--port', '0']))"
START_TIMEOUT_S = 120.0


def extract(revision: str, into: Path) -> Path:
    """The tree of ``revision`` (a commit of this repository) under ``into``."""
    result = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", revision], capture_output=True)
    if result.returncode != 0:
        raise SystemExit(f"cannot read revision {revision!r} from {ROOT} ({result.stderr.decode().strip()}); "
                         "this benchmark needs the repository's history (not a shallow clone)")
    archive = result.stdout
    tree = into / "baseline"
    tree.mkdir()
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tree, filter="data")
    return tree


def _env(tree: Path) -> dict:
    return dict(os.environ, PYTHONPATH=str(tree), PYTHONUNBUFFERED="1")


def help_seconds(tree: Path) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", HELP], cwd=tree, env=_env(tree), check=True, capture_output=True)
    return time.perf_counter() - start


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def serve_rss_mib(tree: Path, model: Path) -> float:
    """RSS of a server of ``model`` from ``tree``, read once it listens, then stopped with SIGTERM."""
    server = subprocess.Popen([sys.executable, "-c", SERVE, str(model)], cwd=tree, env=_env(tree),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        for line in server.stdout:
            if line.startswith("listening on"):
                time.sleep(0.5)  # idle: let start-up allocations settle
                return rss_mib(server.pid)
            if time.monotonic() > deadline:
                break
        raise RuntimeError(f"the server from {tree} did not start (exit {server.poll()})")
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default=BASELINE, help=f"git revision to compare against (default {BASELINE})")
    parser.add_argument("--runs", type=int, default=5, help="interleaved runs (default 5)")
    parser.add_argument("--json", dest="out", type=Path, default=ROOT / "artifacts" / "light_paths.json",
                        help="where to write the report (default artifacts/light_paths.json)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="rfconv-light-") as tmp:
        baseline = extract(args.baseline, Path(tmp))
        model = Path(tmp) / "rf_resnet50.onnx"
        print(f"exporting RF-ResNet-50 to {model} ...", flush=True)
        export_registry_model("resnet50", 224, model)
        trees = {"baseline": baseline, "current": ROOT}
        samples = {f"{kind}_{tree}": [] for kind in ("help_s", "serve_rss_mib") for tree in trees}
        for run in range(args.runs):
            order = list(trees) if run % 2 == 0 else list(reversed(trees))
            for name in order:
                samples[f"help_s_{name}"].append(help_seconds(trees[name]))
                samples[f"serve_rss_mib_{name}"].append(serve_rss_mib(trees[name], model))
            print(f"run {run + 1}/{args.runs}: " + ", ".join(f"{k} {v[-1]:.3g}" for k, v in samples.items()),
                  flush=True)
    medians = {key: statistics.median(values) for key, values in samples.items()}
    report = {
        "date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()} {platform.processor()}".strip(),
        "cpus": os.cpu_count(), "baseline": args.baseline, "runs": args.runs, "samples": samples,
        "medians": medians,
        "help_ratio": medians["help_s_current"] / medians["help_s_baseline"],
        "serve_rss_ratio": medians["serve_rss_mib_current"] / medians["serve_rss_mib_baseline"],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"rfconv-deploy --help: {medians['help_s_baseline']:.3f} s -> {medians['help_s_current']:.3f} s "
          f"(ratio {report['help_ratio']:.3f}, goal <= 0.2)")
    print(f"serve RF-ResNet-50 idle RSS: {medians['serve_rss_mib_baseline']:.0f} MiB -> "
          f"{medians['serve_rss_mib_current']:.0f} MiB (ratio {report['serve_rss_ratio']:.3f}, goal <= 0.35)")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
