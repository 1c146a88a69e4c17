"""``rfconv-deploy bench``: RF vs plain latency on several backends (:mod:`exporter.bench.latency`).

The options are the fields of :class:`~exporter.bench.config.BenchConfig`. A backend named with
``--backends`` that cannot run here is an error (exit 2) before any model is built; one that
fails to start inside the run is recorded as skipped in bench.json, and the exit code is then 1
when it was named (0 when it came from the default list).
"""

from __future__ import annotations

import argparse

from exporter.bench.config import BenchConfig
from exporter.cli.args import add_config_arguments, config_from_args


def register(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("bench", help="latency of RF vs plain models on every available backend",
                       description="Time the rectified and the plain model with identical weights in interleaved "
                                   "blocks on each backend. Exit code 0 when every named backend ran, 1 when one "
                                   "failed to start inside the run, 2 for bad arguments or a named backend that "
                                   "cannot run here.")
    add_config_arguments(p, BenchConfig)
    return p


def run(args: argparse.Namespace) -> int:
    from exporter.bench.latency import check_named

    config = config_from_args(BenchConfig, args)
    if config.backends_named:  # before any model is built or exported
        check_named(config.backends)
    from exporter.bench.latency import format_table, run_bench

    report = run_bench(config)
    print(format_table(report))
    out = config.out_dir
    print(f"\nwrote {out / 'bench.json'}" + (f" and {out / 'bench.png'}" if report["rows"] else ""))
    named_skipped = [name for name in report["named"] or [] if name in report["skipped"]]
    return 1 if named_skipped else 0
