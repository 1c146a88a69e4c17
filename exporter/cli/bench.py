"""``rfconv-deploy bench``: RF vs plain latency on every available backend (:mod:`exporter.bench.latency`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from exporter.bench.latency import ALL_BACKENDS
from exporter.cli.args import comma_list, int_list


def register(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("bench", help="latency of RF vs plain models on every available backend")
    p.add_argument("--model", dest="model_name", default="resnet50", help="registry model (default: resnet50)")
    p.add_argument("--backends", dest="backend_names", type=comma_list(ALL_BACKENDS), default=ALL_BACKENDS,
                   help=f"comma-separated subset of {','.join(ALL_BACKENDS)} (unavailable ones are skipped)")
    p.add_argument("--batch-sizes", type=int_list, default=(1, 8, 32))
    p.add_argument("--size", type=int, default=224, help="input height and width in pixels")
    p.add_argument("--blocks", type=int, default=5, help="interleaved blocks per measurement")
    p.add_argument("--runs", type=int, default=3, help="runs per model per block")
    p.add_argument("--out", dest="out_dir", type=Path, default=Path("artifacts/bench"), help="output folder")
    return p


def run(args: argparse.Namespace) -> int:
    from exporter.bench.latency import format_table, run_bench

    report = run_bench(args.model_name, args.backend_names, args.batch_sizes, args.size, args.blocks, args.runs,
                       args.out_dir)
    print(format_table(report))
    print(f"\nwrote {args.out_dir / 'bench.json'}" + (f" and {args.out_dir / 'bench.png'}" if report["rows"] else ""))
    return 0
