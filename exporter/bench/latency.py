"""``rfconv-deploy bench``: latency of rectified vs plain models on every available backend.

For each backend and batch size, the rectified model and the plain model with identical weights
run in interleaved blocks in one process (see :mod:`exporter.bench.timing`); the report gives median
and p90 latency in milliseconds, throughput in images per second and the RF/plain ratio, as a
terminal table, JSON and a PNG chart. Heavy imports (numpy, torch, the runners) happen inside
the functions.

Backends named in the config must each run here: one that cannot is a ``ValueError`` before the
models are built. Of the default list, those that cannot run here are skipped; a backend whose
runner fails to start inside the run (a GPU provider that ONNX Runtime lists but cannot load) is
recorded as skipped with the reason, and the report is written all the same.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from exporter.backends.availability import check_named, why_not
from exporter.bench.config import ALL_BACKENDS, BenchConfig
from exporter.bench.report import summary
from exporter.bench.timing import interleaved

__all__ = ["ALL_BACKENDS", "BenchConfig", "Row", "check_named", "format_table", "run_bench", "summary"]


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


def _start(backend: str, models: dict, paths: dict, device: str) -> dict:
    """Each model's ``(runner, input name)`` for ``backend``, activated; deactivates those it
    started when one fails, and raises what it raised."""
    runners = {kind: _runner(backend, models[kind], paths[kind], device) for kind in models}
    started = []
    try:
        for runner, _ in runners.values():
            runner.activate()
            started.append(runner)
    except BaseException:
        for runner in started:
            runner.deactivate()
        raise
    return runners


def run_bench(config: BenchConfig | None = None, log: Callable[[str], None] = print, **options) -> dict:
    """Measure the backends of ``config`` (keyword ``options`` are :class:`BenchConfig` fields,
    applied on top); returns the JSON-ready report and writes it to ``config.out_dir``. With
    ``config.files``, times those files instead (:func:`exporter.bench.files.run_files`).

    Raises ``ValueError`` before any work when a named backend cannot run here.
    """
    config = dataclasses.replace(config, **options) if config is not None else BenchConfig(**options)
    if config.files:
        from exporter.bench.files import run_files

        return run_files(config, log)
    if config.backends_named:
        check_named(config.backends)
    import numpy as np
    import torch

    from exporter.backends.runners import BackendSkipped
    from exporter.model.registry import build_model
    from exporter.onnx.export import export_onnx

    out_dir, size = config.out_dir, config.size
    out_dir.mkdir(parents=True, exist_ok=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    skipped = {name: reason for name in config.backend_names if (reason := why_not(name)) is not None}
    models, paths = {}, {}
    for kind, rectify in (("rf", True), ("plain", False)):
        log(f"building and exporting {kind} {config.model_name} ...")
        models[kind] = build_model(config.model_name, rectify=rectify)
        paths[kind] = out_dir / f"{config.model_name}_{kind}.onnx"
        with warnings.catch_warnings():  # the plain baseline has no rectified conv, by design
            warnings.simplefilter("ignore", UserWarning)
            export_onnx(models[kind], torch.randn(1, 3, size, size), paths[kind], dynamic_batch=True)
    rows: list[Row] = []
    for backend in config.backend_names:
        if backend in skipped:
            continue
        try:
            runners = _start(backend, models, paths, device)
        except (BackendSkipped, ValueError, RuntimeError) as why:  # e.g. a GPU provider that did not load
            skipped[backend] = str(why).strip().splitlines()[0] if str(why).strip() else type(why).__name__
            log(f"{backend} skipped: {skipped[backend]}")
            continue
        try:
            for batch in config.batch_sizes:
                x = np.random.default_rng(0).standard_normal((batch, 3, size, size), dtype=np.float32)
                log(f"timing {backend} batch {batch} ({config.blocks} blocks x {config.runs} runs per model) ...")
                calls = {kind: (lambda r=runner, n=name, x=x: r.infer({n: x}, check_inputs=False))
                         for kind, (runner, name) in runners.items()}
                t = interleaved(calls, "plain", config.blocks, config.runs)
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
    ran = [b for b in config.backend_names if b not in skipped]
    report = {
        "model": config.model_name, "input_size": size, "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()} {platform.processor()}".strip(),
        "threads": torch.get_num_threads(), "blocks": config.blocks, "runs_per_block": config.runs,
        "rows": [asdict(r) for r in rows], "ran": ran, "skipped": skipped,
        "named": list(config.backends) if config.backends_named else None,
    }
    report["summary"] = summary(report)
    (out_dir / "bench.json").write_text(json.dumps(report, indent=2))
    if rows:
        plot(report, out_dir / "bench.png")
    return report


def format_table(report: dict) -> str:
    if "files" in report:
        from exporter.bench.files import format_table as files_table

        return files_table(report)
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
    lines.append(f"Backends: {summary(report)}")
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
