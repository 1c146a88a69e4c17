"""What every benchmark of ``make bench`` shares: percentiles, the CPU it ran on, ONNX Runtime CPU sessions, and the
RF-vs-plain exports they time.

Timing itself is :func:`exporter.bench.timing.interleaved` (candidates interleaved in blocks,
ratios taken block by block).
"""

from __future__ import annotations

import platform
import re
import warnings
from collections.abc import Mapping
from pathlib import Path


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values`` by nearest rank, one of the values itself.

    Raises ValueError for an empty list.
    """
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


CPU_FLAGS = re.compile(r"\b(avx512[a-z_0-9]*|amx[a-z_0-9]*|avx2)\b")


def cpu_flags() -> list[str]:
    """The AVX2 / AVX-512 / AMX flags of ``/proc/cpuinfo`` (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    return sorted(set(CPU_FLAGS.findall(text)))


def cpu_name() -> str:
    """The CPU's model name from ``/proc/cpuinfo``, else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def ort_session(path: Path | str, threads: int = 2, spin: bool = False, optimized: Path | None = None,
                config: Mapping[str, str] | None = None):
    """An ONNX Runtime CPU session of the file ``path`` as the benchmarks time it.

    ``threads`` intra-op threads, one inter-op thread; worker threads do not spin while waiting
    unless ``spin`` (spinning makes every small parallel node wait for a descheduled thread on a
    shared machine); warnings silenced. ``optimized`` saves ONNX Runtime's optimized graph there;
    ``config`` adds session config entries (for example ``{"session.qdqisint8allowed": "1"}``).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    for key, value in (config or {}).items():
        options.add_session_config_entry(key, value)
    if optimized is not None:
        options.optimized_model_filepath = str(optimized)
    from exporter.backends.ort import CPU_EP, create_session

    return create_session(path, [CPU_EP], options)


def export_registry_model(name: str, size: int, path: Path, rectify: bool = True, **options) -> Path:
    """Export the registry model ``name`` (seeded weights; ``rectify=False``: the plain model with the
    same weights) at ``size`` x ``size``, batch dynamic, with :func:`exporter.onnx.export.export_onnx`
    and its ``options``; returns ``path``. Export warnings are silenced."""
    import torch

    from exporter.model.registry import build_model
    from exporter.onnx.export import export_onnx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_onnx(build_model(name, rectify=rectify), torch.randn(1, 3, size, size), path, **options)
    return path


def export_rf_and_plain(folder: Path, name: str = "resnet50", size: int = 224,
                        rf_variants: Mapping[str, dict] | None = None) -> dict[str, Path]:
    """Export the rectified registry model ``name`` and its plain twin into ``folder`` as
    ``{name}_rf.onnx`` and ``{name}_plain.onnx``; each entry ``variant -> options`` of
    ``rf_variants`` adds ``{name}_{variant}.onnx``, the rectified model exported with those options.
    Returns ``{"rf": path, "plain": path, variant: path, ...}``."""
    folder = Path(folder)
    paths = {kind: export_registry_model(name, size, folder / f"{name}_{kind}.onnx", rectify=kind == "rf")
             for kind in ("rf", "plain")}
    for variant, options in (rf_variants or {}).items():
        paths[variant] = export_registry_model(name, size, folder / f"{name}_{variant}.onnx", **options)
    return paths
