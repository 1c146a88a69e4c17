"""``rfconv-deploy quantize``: an fp32 export to INT8 Q/DQ (:func:`exporter.quantize.quantize.quantize_onnx`).

The options are the fields of :class:`exporter.quantize.options.QuantizeConfig`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from exporter.cli.args import add_config_arguments, config_from_args
from exporter.quantize.options import QuantizeConfig


def register(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "quantize", help="quantize an exported model to INT8 Q/DQ (TensorRT 11, ONNX Runtime)",
        description="Calibrate and quantize an fp32 ONNX export to INT8 QuantizeLinear/DequantizeLinear with "
                    "ONNX Runtime's quantizer: symmetric int8, weights per channel, every conv int8, each "
                    "rectification factor applied in fp32. The written file is checked against TensorRT's Q/DQ "
                    "rules; a file that breaks one is not written.",
    )
    p.add_argument("onnx_path", metavar="model.onnx", type=Path, help="the fp32 .onnx file (rfconv-deploy export)")
    p.add_argument("-o", "--output", dest="output_path", required=True, type=Path, help="INT8 ONNX file to write")
    add_config_arguments(p, QuantizeConfig)
    return p


def run(args: argparse.Namespace) -> int:
    from exporter.quantize.quantize import quantize_onnx

    config = config_from_args(QuantizeConfig, args)
    report = quantize_onnx(args.onnx_path, args.output_path, **config.quantize_arguments(),
                           progress=lambda line: print(line, file=sys.stderr, flush=True))
    print(report.summary())
    return 0
