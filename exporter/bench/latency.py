"""``rfconv-deploy bench``: latency of rectified vs plain models on every available backend.

For each backend and batch size, the rectified model and the plain model with identical weights
run in interleaved blocks in one process (see :mod:`exporter.bench.timing`); the report gives median
and p90 latency in milliseconds, throughput in images per second and the RF/plain ratio, as a
terminal table, JSON and a PNG chart. Heavy imports (numpy, torch, the runners) happen inside
the functions: the command line reads :data:`ALL_BACKENDS` from here for its help.
"""

from __future__ import annotations

import json
import platform
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from exporter.backends.availability import BACKENDS
from exporter.bench.timing import interleaved

ALL_BACKENDS = tuple(b for b in BACKENDS if b != "onnx-ref")  # the reference evaluator is not for timing


@dataclass
class Row:
    """One (backend, batch) measurement; times in milliseconds."""

    backend: str
    batch: int
    rf_median_ms: float
    rf_p90_ms: float
    plain_median_ms: float
    plain_p90_ms: float
    ratio: float
    ratio_min: float
    ratio_max: float
    rf_images_per_s: float


def _runner(backend: str, model, onnx_path: Path, device: str):
    """``(runner, input name)`` for ``backend``, from the one backend factory
    (:func:`exporter.backends.runners.make_runner`), not yet activated.
    Raises :class:`~exporter.backends.runners.BackendSkipped` when ``backend`` cannot run here."""
    import onnx

    from exporter.backends.runners import RunnerOptions, make_runner

    onnx_model = onnx.load(str(onnx_path), load_external_data=False)
    runner = make_runner(backend, str(onnx_path), onnx_model, RunnerOptions(torch_device=device), model)
    return runner, onnx_model.graph.input[0].name


def run_bench(
    model_name: str = "resnet50",
    backend_names=ALL_BACKENDS,
    batch_sizes=(1, 8, 32),
    size: int = 224,
    blocks: int = 5,
    runs: int = 3,
    out_dir: Path = Path("artifacts/bench"),
    log: Callable[[str], None] = print,
) -> dict:
    """Measure every available backend; returns the JSON-ready report and writes it to ``out_dir``."""
    import numpy as np
    import torch

    from exporter.backends.runners import BackendSkipped
    from exporter.model.registry import build_model
    from exporter.onnx.export import export_onnx

    out_dir.mkdir(parents=True, exist_ok=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    models, paths = {}, {}
    for kind, rectify in (("rf", True), ("plain", False)):
        log(f"building and exporting {kind} {model_name} ...")
        models[kind] = build_model(model_name, rectify=rectify)
        paths[kind] = out_dir / f"{model_name}_{kind}.onnx"
        with warnings.catch_warnings():  # the plain baseline has no rectified conv, by design
            warnings.simplefilter("ignore", UserWarning)
            export_onnx(models[kind], torch.randn(1, 3, size, size), paths[kind], dynamic_batch=True)
    skipped, active = {}, {}
    for backend in backend_names:
        try:
            active[backend] = {kind: _runner(backend, models[kind], paths[kind], device) for kind in models}
        except BackendSkipped as why:
            skipped[backend] = str(why)
    rows: list[Row] = []
    for backend, runners in active.items():
        for runner, _ in runners.values():
            runner.activate()
        try:
            for batch in batch_sizes:
                x = np.random.default_rng(0).standard_normal((batch, 3, size, size), dtype=np.float32)
                log(f"timing {backend} batch {batch} ({blocks} blocks x {runs} runs per model) ...")
                calls = {kind: (lambda r=runner, n=name, x=x: r.infer({n: x}, check_inputs=False))
                         for kind, (runner, name) in runners.items()}
                t = interleaved(calls, "plain", blocks, runs)
                ratios = sorted(t.ratios("rf"))
                rows.append(Row(
                    backend, batch,
                    t.median_s("rf") * 1e3, t.percentile_s("rf", 90) * 1e3,
                    t.median_s("plain") * 1e3, t.percentile_s("plain", 90) * 1e3,
                    float(np.median(ratios)), ratios[0], ratios[-1], batch / t.median_s("rf"),
                ))
        finally:
            for runner, _ in runners.values():
                runner.deactivate()
    report = {
        "model": model_name, "input_size": size, "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()} {platform.processor()}".strip(),
        "threads": torch.get_num_threads(), "blocks": blocks, "runs_per_block": runs,
        "rows": [asdict(r) for r in rows], "skipped": skipped,
    }
    (out_dir / "bench.json").write_text(json.dumps(report, indent=2))
    if rows:
        plot(report, out_dir / "bench.png")
    return report


def format_table(report: dict) -> str:
    head = (f"{'backend':<9} {'batch':>5} {'RF median':>10} {'RF p90':>9} {'plain med':>10} "
            f"{'plain p90':>10} {'RF/plain':>9} {'spread':>13} {'RF img/s':>9}")
    lines = [head, "-" * len(head)]
    for r in report["rows"]:
        lines.append(
            f"{r['backend']:<9} {r['batch']:>5} {r['rf_median_ms']:>8.1f}ms {r['rf_p90_ms']:>7.1f}ms "
            f"{r['plain_median_ms']:>8.1f}ms {r['plain_p90_ms']:>8.1f}ms {r['ratio']:>9.3f} "
            f"{r['ratio_min']:>6.3f}-{r['ratio_max']:<6.3f} {r['rf_images_per_s']:>9.1f}"
        )
    for backend, reason in report["skipped"].items():
        lines.append(f"{backend:<9} skipped: {reason}")
    return "\n".join(lines)


def plot(report: dict, path: Path) -> None:
    """Bar chart: median latency per (backend, batch), RF next to plain, RF/plain ratio on top."""
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["rows"]
    labels = [f"{r['backend']}\nbatch {r['batch']}" for r in rows]
    pos = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(rows)), 4))
    ax.bar(pos - 0.2, [r["plain_median_ms"] for r in rows], 0.4, label="plain", color="tab:gray")
    bars = ax.bar(pos + 0.2, [r["rf_median_ms"] for r in rows], 0.4, label="rectified", color="tab:blue")
    for bar, r in zip(bars, rows, strict=True):
        ax.annotate(f"{r['ratio']:.3f}x", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", fontsize=8)
    ax.set_xticks(pos, labels)
    ax.set_yscale("log")
    ax.set_ylabel("median latency (ms, log scale)")
    ax.set_title(f"{report['model']} {report['input_size']}px: rectified vs plain (ratio above bars)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
