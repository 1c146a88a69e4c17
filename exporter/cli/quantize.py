"""``rfconv-deploy quantize``: an fp32 export to INT8 Q/DQ (:func:`exporter.quantize.quantize.quantize_onnx`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from exporter.cli.args import shape
from exporter.quantize.options import (
    ACTIVATIONS,
    CALIBRATION_SOURCES,
    DEFAULT_ACTIVATIONS,
    DEFAULT_METHOD,
    DEFAULT_SAMPLES,
    METHODS,
)


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
    p.add_argument("--calibration", default="random", metavar="random|DIR|FILE.npz",
                   help=f"calibration inputs: {CALIBRATION_SOURCES} (arrays named after the inputs, samples "
                        "along the first axis); images get ImageNet preprocessing (default: random)")
    p.add_argument("--samples", type=int, default=DEFAULT_SAMPLES,
                   help=f"calibration samples, batch 1 each (default {DEFAULT_SAMPLES}; rectified models gain from 64, "
                        "benchmarks/README.md 'INT8')")
    p.add_argument("--method", choices=METHODS, default=DEFAULT_METHOD,
                   help=f"activation range calibration (default {DEFAULT_METHOD})")
    p.add_argument("--activations", choices=ACTIVATIONS, default=DEFAULT_ACTIVATIONS,
                   help="int8: symmetric, TensorRT-ready (default); uint8: asymmetric, an ONNX Runtime CPU variant "
                        "that TensorRT cannot build")
    p.add_argument("--exclude", nargs="+", default=[], metavar="LAYER",
                   help="node names (or a conv's output or weight tensor) to leave in fp32")
    p.add_argument("--input-shape", type=shape(rank=4), metavar="N,C,H,W",
                   help="dynamic-H/W files: the size to calibrate at")
    p.add_argument("--seed", type=int, default=0, help="seed of the random calibration inputs (default 0)")
    return p


def run(args: argparse.Namespace) -> int:
    from exporter.quantize.quantize import quantize_onnx

    report = quantize_onnx(
        args.onnx_path, args.output_path, calibration=args.calibration, samples=args.samples, method=args.method,
        activations=args.activations, exclude=args.exclude, seed=args.seed, input_shape=args.input_shape,
        progress=lambda line: print(line, file=sys.stderr, flush=True),
    )
    print(report.summary())
    return 0
