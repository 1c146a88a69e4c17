"""What ``rfconv-deploy bench`` can be asked for: :class:`BenchConfig` (light: standard library only).

The command line builds ``bench``'s options from these fields
(:func:`exporter.cli.args.add_config_arguments`), so each default and help text is written here once.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from exporter.backends.availability import BACKENDS
from exporter.config import option

ALL_BACKENDS = tuple(b for b in BACKENDS if b != "onnx-ref")
"""Backends that can be timed (the reference evaluator is not for timing); the default list."""


def backend_list(text: str) -> tuple[str, ...]:
    """An argparse ``type`` for ``torch,ort-cpu``: every name one of :data:`ALL_BACKENDS`."""
    names = tuple(v.strip() for v in text.split(",") if v.strip())
    unknown = [n for n in names if n not in ALL_BACKENDS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown backend(s) {unknown}; choose from {', '.join(ALL_BACKENDS)}")
    return names


def int_list(text: str) -> tuple[int, ...]:
    """An argparse ``type`` for ``1,8,32``."""
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from err


@dataclass(frozen=True)
class BenchConfig:
    """Latency of a registry model, rectified against plain, on several backends; or, with
    ``files``, of those ``.onnx`` / ``.plan`` files (``model_name`` is then unused).

    ``backends``: the names to time; ``None`` means :data:`ALL_BACKENDS`, of which those that
    cannot run here are skipped and counted. A backend named here that cannot run here is a
    ``ValueError`` before any work (before the models are built and exported). For each backend
    and each of ``batch_sizes``, ``blocks`` interleaved blocks of ``runs`` runs per model, at
    ``size`` x ``size`` pixels; the report goes to ``out_dir``. Raises ``ValueError`` naming the
    field for a value out of range.
    """

    model_name: str = option("resnet50", flag="--model", help="registry model")
    backends: tuple[str, ...] | None = option(
        None, parse=backend_list, metavar="LIST", show_default=False,
        help=f"comma-separated subset of {','.join(ALL_BACKENDS)}; each named one must run here, else bench "
             "stops before any work (default: all of them, skipping and counting those that cannot run here)")
    batch_sizes: tuple[int, ...] = option((1, 8, 32), parse=int_list, help="batch sizes to time")
    size: int = option(224, help="input height and width in pixels")
    blocks: int = option(5, help="interleaved blocks per measurement")
    runs: int = option(3, help="runs per model per block")
    out_dir: Path = option(Path("artifacts/bench"), flag="--out", parse=Path, help="output folder")
    files: tuple[Path, ...] = ()
    """``.onnx`` / ``.plan`` files to time instead of the registry model (``bench FILE [FILE ...]``,
    :mod:`exporter.bench.files`); the command line fills it from its positional arguments."""

    def __post_init__(self):
        if self.backends is not None:
            object.__setattr__(self, "backends", tuple(self.backends))
            unknown = [b for b in self.backends if b not in ALL_BACKENDS]
            if unknown:
                raise ValueError(f"unknown backend(s) {unknown}; choose from {', '.join(ALL_BACKENDS)}")
            if len(set(self.backends)) != len(self.backends):
                raise ValueError(f"backends are listed more than once: {', '.join(self.backends)}")
        object.__setattr__(self, "files", tuple(Path(f) for f in self.files))
        object.__setattr__(self, "batch_sizes", tuple(self.batch_sizes))
        object.__setattr__(self, "out_dir", Path(self.out_dir))
        for field in ("size", "blocks", "runs"):
            if getattr(self, field) < 1:
                raise ValueError(f"{field} must be at least 1, got {getattr(self, field)}")
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise ValueError(f"batch_sizes must be positive integers, got {self.batch_sizes}")

    @property
    def backend_names(self) -> tuple[str, ...]:
        return self.backends if self.backends is not None else ALL_BACKENDS

    @property
    def backends_named(self) -> bool:
        return self.backends is not None
