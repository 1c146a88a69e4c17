"""``rfconv-deploy bench``: latency of rectified vs plain models on every available backend.

For each backend and batch size, the rectified model and the plain model with identical weights
run in interleaved blocks in one process (see :mod:`exporter.timing`); the report gives median
and p90 latency in milliseconds, throughput in images per second and the RF/plain ratio, as a
terminal table, JSON and a PNG chart.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from . import backends
from .runners import BACKENDS, ORT_PROVIDERS, require_provider
from .timing import interleaved

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


def skip_reason(backend: str) -> str | None:
    """Why ``backend`` cannot run here, or None when it can."""
    if backend == "torch":
        return None
    if backend == "trt":
        trt = backends.tensorrt()
        return None if trt.available else trt.detail
    found = backends.ort_provider(ORT_PROVIDERS[backend], backend)
    return None if found.available else found.detail


def _runner(backend: str, model, onnx_path: Path) -> Callable[[np.ndarray], object]:
    """A callable running one batch (float32 NCHW numpy array) on ``backend``."""
    if backend == "torch":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
        model = model.to(device)

        def run_torch(x):
            with torch.no_grad():
                out = model(torch.from_numpy(x).to(device))
            if device == "cuda":
                torch.cuda.synchronize()
            return out

        return run_torch
    if backend == "trt":
        from polygraphy.backend.trt import EngineFromNetwork, NetworkFromOnnxPath, TrtRunner

        runner = TrtRunner(EngineFromNetwork(NetworkFromOnnxPath(str(onnx_path), strongly_typed=True)))
        runner.activate()
        input_name = next(iter(runner.get_input_metadata()))
        return lambda x: runner.infer({input_name: x})
    import onnxruntime as ort

    opts = ort.SessionOptions()
    # Spinning worker threads wait for descheduled peers on shared cores and distort ratios.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(onnx_path), opts, providers=[ORT_PROVIDERS[backend]])
    require_provider(session, backend)
    input_name = session.get_inputs()[0].name
    return lambda x: session.run(None, {input_name: x})


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
    import torch

    from .export import export_onnx
    from .models import build_model

    out_dir.mkdir(parents=True, exist_ok=True)
    skipped = {b: r for b in backend_names if (r := skip_reason(b)) is not None}
    active = [b for b in backend_names if b not in skipped]
    needs_onnx = any(b != "torch" for b in active)
    models, paths = {}, {}
    for kind, rectify in (("rf", True), ("plain", False)):
        log(f"building {'and exporting ' if needs_onnx else ''}{kind} {model_name} ...")
        models[kind] = build_model(model_name, rectify=rectify)
        paths[kind] = out_dir / f"{model_name}_{kind}.onnx"
        if needs_onnx:
            with warnings.catch_warnings():  # the plain baseline has no rectified conv, by design
                warnings.simplefilter("ignore", UserWarning)
                export_onnx(models[kind], torch.randn(1, 3, size, size), paths[kind], dynamic_batch=True)
    rows: list[Row] = []
    for backend in active:
        runners = {kind: _runner(backend, models[kind], paths[kind]) for kind in models}
        for batch in batch_sizes:
            x = np.random.default_rng(0).standard_normal((batch, 3, size, size), dtype=np.float32)
            log(f"timing {backend} batch {batch} ({blocks} blocks x {runs} runs per model) ...")
            t = interleaved({k: (lambda r=r, x=x: r(x)) for k, r in runners.items()}, "plain", blocks, runs)
            ratios = sorted(t.ratios("rf"))
            rows.append(Row(
                backend, batch,
                t.median_s("rf") * 1e3, t.percentile_s("rf", 90) * 1e3,
                t.median_s("plain") * 1e3, t.percentile_s("plain", 90) * 1e3,
                float(np.median(ratios)), ratios[0], ratios[-1], batch / t.median_s("rf"),
            ))
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


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _backend_list(text: str) -> tuple[str, ...]:
    names = tuple(v.strip() for v in text.split(",") if v.strip())
    unknown = [n for n in names if n not in ALL_BACKENDS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown backend(s) {unknown}; choose from {', '.join(ALL_BACKENDS)}")
    return names


def _bench(args: argparse.Namespace) -> int:
    report = run_bench(args.model, args.backends, args.batch_sizes, args.size, args.blocks, args.runs, args.out)
    print(format_table(report))
    print(f"\nwrote {args.out / 'bench.json'}" + (f" and {args.out / 'bench.png'}" if report["rows"] else ""))
    return 0


def add_subcommand(sub) -> None:
    """Register ``rfconv-deploy bench``."""
    p = sub.add_parser("bench", help="latency of RF vs plain models on every available backend")
    p.add_argument("--model", default="resnet50", help="registry model (default: resnet50)")
    p.add_argument("--backends", type=_backend_list, default=ALL_BACKENDS,
                   help=f"comma-separated subset of {','.join(ALL_BACKENDS)} (unavailable ones are skipped)")
    p.add_argument("--batch-sizes", type=_int_list, default=(1, 8, 32))
    p.add_argument("--size", type=int, default=224, help="input height and width in pixels")
    p.add_argument("--blocks", type=int, default=5, help="interleaved blocks per measurement")
    p.add_argument("--runs", type=int, default=3, help="runs per model per block")
    p.add_argument("--out", type=Path, default=Path("artifacts/bench"), help="output folder")
    p.set_defaults(func=_bench)
