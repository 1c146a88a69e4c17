"""``rfconv-deploy bench``: RF vs plain latency on several backends (:mod:`exporter.bench.latency`),
or the latency of the user's own files (``bench FILE [FILE ...]``, :mod:`exporter.bench.files`).

The options are the fields of :class:`~exporter.bench.config.BenchConfig`. Positional arguments
ending in ``.onnx`` or ``.plan`` are files; any other is a registry model name (as ``--model``).
A backend named with ``--backends`` that cannot run here is an error (exit 2) before any model is
built; one that fails to start inside the run is recorded as skipped in bench.json, and the exit
code is then 1 when it was named (0 when it came from the default list).
"""

from __future__ import annotations

import argparse

from exporter.bench.config import BenchConfig
from exporter.cli.args import add_config_arguments, config_from_args


def register(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("bench", help="latency of RF vs plain models, or of .onnx/.plan files, on each backend here",
                       description="Time the rectified and the plain model with identical weights in interleaved "
                                   "blocks on each backend; or, given .onnx / .plan files, time those files "
                                   "(an .onnx on every ONNX backend here, a .plan on TensorRT). Exit code 0 when "
                                   "every named backend ran, 1 when one failed to start inside the run, 2 for bad "
                                   "arguments or a named backend that cannot run here.")
    p.add_argument("targets", nargs="*", metavar="FILE",
                   help=".onnx / .plan files to time (default: the registry model of --model, RF vs plain); "
                        "a name without those suffixes is a registry model, like --model")
    add_config_arguments(p, BenchConfig)
    return p


def _split(targets: list[str], model_name: str) -> tuple[tuple[str, ...], str]:
    """(files, registry model name) from the positional arguments."""
    from exporter.bench.files import is_file

    files = tuple(t for t in targets if is_file(t))
    names = [t for t in targets if not is_file(t)]
    if files and names:
        raise ValueError(f"give .onnx/.plan files or one registry model name, not both ({', '.join(names)} "
                         "are not .onnx or .plan files)")
    if len(names) > 1:
        raise ValueError(f"bench times one registry model at a time, got {', '.join(names)}")
    if names and model_name != BenchConfig.model_name and names[0] != model_name:
        raise ValueError(f"the model is named twice: {names[0]} and --model {model_name}")
    return files, names[0] if names else model_name


def run(args: argparse.Namespace) -> int:
    from exporter.bench.latency import check_named

    files, model_name = _split(args.targets, args.model_name)
    config = config_from_args(BenchConfig, args, files=files, model_name=model_name)
    if config.files:
        from exporter.bench.files import check_files

        check_files(config.files, config.backends)
    elif config.backends_named:  # before any model is built or exported
        check_named(config.backends)
    from exporter.bench.latency import format_table, run_bench

    report = run_bench(config)
    print(format_table(report))
    out = config.out_dir
    print(f"\nwrote {out / 'bench.json'}" + (f" and {out / 'bench.png'}" if report["rows"] else ""))
    named_skipped = [name for name in report["named"] or []
                     if name in report["skipped"] or any(key.startswith(f"{name} ") for key in report["skipped"])]
    return 1 if named_skipped else 0
