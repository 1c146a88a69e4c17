"""``rfconv-deploy compare``: one file on several backends (:func:`exporter.comparison.compare.compare`);
exit code 0 only if every comparison passes.

The options are the fields of :class:`~exporter.comparison.config.CompareConfig`. A backend named
with ``--backends`` that cannot run here is an error (exit 2) before the model is loaded.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from exporter.cli.args import add_config_arguments, as_flags, config_from_args, load_model, model_arguments
from exporter.comparison.config import CompareConfig


def register(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "compare", help="compare an exported model across PyTorch, ONNX Runtime and TensorRT",
        description="Run the same inputs through several backends and check every output (and the tensor after "
                    "every rectified conv) against PyTorch in float64, or against the first backend that ran. "
                    "Exit code 0 only if every comparison passes, 1 if one fails or fewer than two backends ran, "
                    "2 for bad arguments or a backend named with --backends that cannot run here.",
    )
    p.add_argument("onnx_path", metavar="onnx", help="the exported .onnx file")
    model_arguments(p, positional=False)
    p.add_argument("--report", help="write the JSON report here")
    add_config_arguments(p, CompareConfig)
    return p


def run(args: argparse.Namespace) -> int:
    from exporter.comparison.available import check_named

    config = config_from_args(CompareConfig, args, model_name=args.model)
    if config.backends_named:  # before the model is loaded: one line naming what is missing
        check_named(config.backends, torch_model=bool(args.model), torch_device=config.torch_device)
    from exporter.comparison.compare import compare

    torch_model = load_model(args) if args.model else None
    report = compare(args.onnx_path, torch_model, config)
    payload = report.to_dict()  # the JSON report keeps the library's words
    for status in report.backends:  # skip reasons name library parameters; show this command's flags
        status.detail = as_flags(status.detail, args.command_parser)
    print(report.format_table())
    if args.report:
        Path(args.report).write_text(json.dumps(payload, indent=2) + "\n")
        print(f"Report written to {args.report}")
    return 0 if report.passed else 1
