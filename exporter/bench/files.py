"""``rfconv-deploy bench FILE [FILE ...]``: latency of the user's own files.

An ``.onnx`` file runs on every ONNX backend here (:data:`FILE_BACKENDS`: ONNX Runtime CPU,
OpenVINO CPU, ONNX Runtime CUDA / TensorRT EP and TensorRT when present), through the one backend
factory (:func:`exporter.backends.runners.make_runner`); a ``.plan`` (a serialized TensorRT
engine) runs on TensorRT only. For each backend and batch size, the files that backend runs are
timed in interleaved blocks (:mod:`exporter.bench.timing`); each row gives the median and p90
latency in milliseconds, images per second and, when several files are timed together, the
ratio to the first of them. Dynamic first dimensions take each batch size, other dynamic
dimensions the config's ``size``; a file with a static batch is timed at that batch only.

Checked before any work (``ValueError`` / ``FileNotFoundError``): that every file exists and ends in
``.onnx`` or ``.plan``, that a ``.plan`` has TensorRT here (one line saying so), that a named
backend runs here (:func:`exporter.backends.availability.check_named`) and can run files (not
``torch``). Of the default list, backends that cannot run here are skipped and counted; a backend
that refuses one file (OpenVINO and a plugin-mode export) is skipped for that file, with why.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from exporter.backends.availability import check_named, why_not
from exporter.bench.report import summary

SUFFIXES = (".onnx", ".plan")
FILE_BACKENDS = ("ort-cpu", "ov-cpu", "ort-cuda", "ort-trt", "trt")
"""Backends that run an ONNX file (the default list for ``bench FILE``)."""
PLAN_BACKENDS = ("trt",)


def is_file(target: str | Path) -> bool:
    """Whether a positional ``bench`` argument names a file (by its suffix) rather than a registry model."""
    return Path(target).suffix.lower() in SUFFIXES


def backends_for(path: Path) -> tuple[str, ...]:
    return PLAN_BACKENDS if path.suffix.lower() == ".plan" else FILE_BACKENDS


@dataclass
class FileRow:
    """One (backend, batch, file) measurement; times in milliseconds. ``ratio`` is to ``baseline``
    (the first file timed in the same interleaved run), None when the file ran alone."""

    backend: str
    batch: int
    file: str
    median_ms: float
    p90_ms: float
    images_per_s: float
    baseline: str | None = None
    ratio: float | None = None
    ratio_min: float | None = None
    ratio_max: float | None = None


def check_files(files, backends: tuple[str, ...] | None) -> None:
    """Raise before any work for a file that is missing or of an unknown kind, a ``.plan`` without
    TensorRT here, or a named backend that cannot run here or cannot run files."""
    for path in map(Path, files):
        if not is_file(path):
            raise ValueError(f"{path}: bench times .onnx files and TensorRT .plan files, not {path.suffix or 'this'}")
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist")
        if path.suffix.lower() == ".plan" and (reason := why_not("trt")) is not None:
            raise ValueError(f"{path}: a TensorRT plan runs on TensorRT only, which cannot run here ({reason}); "
                             "bench the .onnx file it was built from instead")
    if backends is None:
        return
    not_files = [b for b in backends if b not in FILE_BACKENDS]
    if not_files:
        raise ValueError(f"backend(s) {', '.join(not_files)} cannot time a file (torch runs a PyTorch model); "
                         f"choose from {', '.join(FILE_BACKENDS)}")
    check_named(backends)
    for path in map(Path, files):
        if not set(backends) & set(backends_for(path)):
            raise ValueError(f"{path}: none of the named backends ({', '.join(backends)}) runs a "
                             f"{path.suffix} file; name {' or '.join(backends_for(path))}")


def _plan_runner(path: Path):
    from polygraphy.backend.common import BytesFromPath
    from polygraphy.backend.trt import EngineFromBytes, TrtRunner

    try:  # plugin-mode engines need the RFConvRectify plugin registered before they deserialize
        from plugins import load_library

        load_library(None)
    except (FileNotFoundError, OSError):
        pass  # a plan without plugin nodes needs none; one with them fails to deserialize, reported
    return TrtRunner(EngineFromBytes(BytesFromPath(str(path))), name="trt")


def _runner(backend: str, path: Path):
    """A not yet activated runner of ``path`` on ``backend``; raises
    :class:`~exporter.backends.availability.BackendSkipped` when it cannot run it here."""
    if path.suffix.lower() == ".plan":
        return _plan_runner(path)
    import onnx

    from exporter.backends.runners import RunnerOptions, make_runner
    from exporter.onnx.precision import file_precision

    model = onnx.load(str(path), load_external_data=False)
    precision = file_precision(model)
    options = RunnerOptions(model_precision=precision if precision in ("fp16", "int8") else "fp32")
    return make_runner(backend, str(path), model, options)


def _feed(runner, batch: int, size: int, rng) -> dict | None:
    """Random inputs for ``runner`` at ``batch`` (dynamic first dimension) and ``size`` (other dynamic
    dimensions); None when the runner's static batch is not ``batch``."""
    import numpy as np
    from polygraphy.datatype import DataType

    feeds = {}
    for name, (dtype, shape) in runner.get_input_metadata(use_numpy_dtypes=False).items():
        dims = []
        for i, dim in enumerate(shape):
            static = isinstance(dim, int) and dim >= 0
            if i == 0:
                if static and dim != batch:
                    return None
                dims.append(batch)
            else:
                dims.append(dim if static else size)
        np_dtype = DataType.to_dtype(dtype, "numpy")
        if np.issubdtype(np_dtype, np.floating):
            feeds[name] = rng.standard_normal(dims).astype(np_dtype)
        else:
            feeds[name] = rng.integers(0, 2, dims).astype(np_dtype)
    return feeds


def static_batch(runner) -> int | None:
    first = next(iter(runner.get_input_metadata(use_numpy_dtypes=False).values()))
    dim = first.shape[0] if len(first.shape) else None
    return dim if isinstance(dim, int) and dim >= 0 else None


def run_files(config, log: Callable[[str], None] = print) -> dict:
    """Time ``config.files`` (a :class:`~exporter.bench.config.BenchConfig` with files) on its
    backends; returns the JSON-ready report and writes ``bench.json`` (and ``bench.png``) to
    ``config.out_dir``. Raises as :func:`check_files` before any work."""
    import numpy as np

    from exporter.backends.availability import BackendSkipped
    from exporter.bench.timing import interleaved

    files = [Path(f) for f in config.files]
    check_files(files, config.backends)
    names = config.backends if config.backends is not None else \
        tuple(b for b in FILE_BACKENDS if any(b in backends_for(f) for f in files))
    skipped = {} if config.backends is not None else \
        {name: reason for name in names if (reason := why_not(name)) is not None}
    out_dir = config.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    labels = _labels(files)
    rows: list[FileRow] = []
    for backend in names:
        if backend in skipped:
            continue
        started = {}
        try:
            for path in files:
                if backend not in backends_for(path):
                    continue
                try:
                    runner = _runner(backend, path)
                    runner.activate()
                except (BackendSkipped, ValueError, RuntimeError) as why:
                    text = str(why).strip()
                    reason = text.splitlines()[0] if text else type(why).__name__
                    skipped[f"{backend} {labels[path]}"] = reason
                    log(f"{backend} skipped for {labels[path]}: {reason}")
                    continue
                started[path] = runner
            for path, runner in started.items():
                fixed = static_batch(runner)
                if fixed is not None and fixed not in config.batch_sizes:
                    log(f"{labels[path]} has a static batch of {fixed}: timed at batch {fixed} only")
            batches = sorted({*config.batch_sizes, *(b for r in started.values() if (b := static_batch(r)))})
            for batch in batches:
                rng = np.random.default_rng(0)
                calls = {}
                for path, runner in started.items():
                    if static_batch(runner) is None and batch not in config.batch_sizes:
                        continue
                    feed = _feed(runner, batch, config.size, rng)
                    if feed is not None:
                        calls[labels[path]] = lambda r=runner, f=feed: r.infer(f, check_inputs=False)
                if not calls:
                    continue
                log(f"timing {backend} batch {batch}: {', '.join(calls)} "
                    f"({config.blocks} blocks x {config.runs} runs per file) ...")
                baseline = next(iter(calls))
                t = interleaved(calls, baseline, config.blocks, config.runs)
                for label in calls:
                    row = FileRow(backend, batch, label, t.median_s(label) * 1e3, t.percentile_s(label, 90) * 1e3,
                                  batch / t.median_s(label))
                    if len(calls) > 1:
                        ratios = sorted(t.ratios(label))
                        row.baseline, row.ratio = baseline, float(np.median(ratios))
                        row.ratio_min, row.ratio_max = ratios[0], ratios[-1]
                    rows.append(row)
        finally:
            for runner in started.values():
                runner.deactivate()
    ran = sorted({r.backend for r in rows}, key=list(names).index)
    report = {
        "files": [str(f) for f in files], "labels": [labels[f] for f in files], "size": config.size,
        "date": time.strftime("%Y-%m-%d"), "machine": _machine(), "blocks": config.blocks,
        "runs_per_block": config.runs, "rows": [asdict(r) for r in rows], "ran": ran, "skipped": skipped,
        "named": list(config.backends) if config.backends is not None else None,
    }
    report["summary"] = summary(report)
    import json

    (out_dir / "bench.json").write_text(json.dumps(report, indent=2))
    if rows:
        plot(report, out_dir / "bench.png")
    return report


def _machine() -> str:
    import platform

    return f"{platform.machine()} {platform.processor()}".strip()


def _labels(files: list[Path]) -> dict[Path, str]:
    """Each file's name, or its path where two files share a name."""
    names = [f.name for f in files]
    return {f: (f.name if names.count(f.name) == 1 else str(f)) for f in files}


def format_table(report: dict) -> str:
    width = max([4, *(len(r["file"]) for r in report["rows"])])
    head = (f"{'backend':<9} {'batch':>5} {'file':<{width}} {'median':>9} {'p90':>9} {'img/s':>9} "
            f"{'ratio':>7} {'spread':>13}")
    lines = [head, "-" * len(head)]
    for r in report["rows"]:
        ratio = f"{r['ratio']:>7.3f} {r['ratio_min']:>6.3f}-{r['ratio_max']:<6.3f}" if r["ratio"] is not None else ""
        lines.append(f"{r['backend']:<9} {r['batch']:>5} {r['file']:<{width}} {r['median_ms']:>7.2f}ms "
                     f"{r['p90_ms']:>7.2f}ms {r['images_per_s']:>9.1f} {ratio}".rstrip())
    baselines = sorted({r["baseline"] for r in report["rows"] if r["baseline"]})
    if baselines:
        lines.append(f"ratio: median latency over {', '.join(baselines)}'s, in the same interleaved blocks")
    for backend, reason in report["skipped"].items():
        lines.append(f"{backend:<9} skipped: {reason}")
    lines.append(f"Backends: {summary(report)}")
    return "\n".join(lines)


def plot(report: dict, path: Path) -> None:
    """Bar chart: median latency per (backend, batch), one bar per file."""
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(dict.fromkeys((r["backend"], r["batch"]) for r in report["rows"]))
    files = list(dict.fromkeys(r["file"] for r in report["rows"]))
    width = 0.8 / len(files)
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(groups)), 4))
    for k, label in enumerate(files):
        by_group = {(r["backend"], r["batch"]): r["median_ms"] for r in report["rows"] if r["file"] == label}
        pos = [i + (k - (len(files) - 1) / 2) * width for i, g in enumerate(groups) if g in by_group]
        ax.bar(pos, [by_group[g] for g in groups if g in by_group], width, label=label)
    ax.set_xticks(np.arange(len(groups)), [f"{b}\nbatch {n}" for b, n in groups])
    ax.set_yscale("log")
    ax.set_ylabel("median latency (ms, log scale)")
    ax.set_title("bench: median latency per file")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
