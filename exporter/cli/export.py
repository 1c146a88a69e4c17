"""``rfconv-deploy export``: a model to ONNX (:func:`exporter.onnx.export.export_onnx`)."""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

from exporter.cli.args import load_model, model_arguments, shape
from exporter.onnx.options import DEFAULT_INPUT_SHAPE, MIN_OPSET, MODES, PRECISIONS

LARGE_MODEL_PARAMS = 10_000_000
"""Models this large (ResNet-50 has 25.6 M parameters) print each step of the export."""


def register(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "export", help="export a model to ONNX (rectified convs as Conv -> Mul(scale))",
        description="Export a model to ONNX: each rectified conv becomes Conv -> Mul(scale [1,1,Ho,Wo]), "
        "BatchNorm is folded, and the file passes onnx.checker's full check and shape inference.",
    )
    model_arguments(p, positional=True)
    p.add_argument("-o", "--output", dest="path", required=True, type=Path, help="ONNX file to write")
    p.add_argument("--input-shape", type=shape(rank=4), default=DEFAULT_INPUT_SHAPE, metavar="N,C,H,W",
                   help="example input shape (default {})".format(",".join(map(str, DEFAULT_INPUT_SHAPE))))
    p.add_argument("--dynamic-batch", action=argparse.BooleanOptionalAction, default=True,
                   help="keep the batch dimension symbolic (default on)")
    p.add_argument("--dynamic-hw", action=argparse.BooleanOptionalAction, default=None,
                   help="keep height and width symbolic; the scale is computed in the graph "
                        "(default: on for dense-prediction registry models, off otherwise)")
    p.add_argument("--opset", type=int, help=f"ONNX opset ({MIN_OPSET} or newer; default: the exporter's)")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="fp16: fp16 weights and activations, fp32 inputs/outputs")
    p.add_argument("--compact-scales", action="store_true",
                   help="store scales as row x column factors (smaller file; folded again at load time)")
    p.add_argument("--mode", choices=MODES, default="static",
                   help="static: Conv -> Mul(scale) (default); plugin: TensorRT plugin nodes")
    p.add_argument("-v", "--verbose", action="store_true", help="print each step and the exporter's output")
    return p


def run(args: argparse.Namespace) -> int:
    import torch

    from exporter.model.registry import REGISTRY
    from exporter.onnx.export import export_onnx

    model = load_model(args)
    dynamic_hw = args.dynamic_hw
    if dynamic_hw is None:
        dynamic_hw = args.model in REGISTRY and REGISTRY[args.model].dense
    example = torch.randn(args.input_shape, generator=torch.Generator().manual_seed(0))
    large = sum(p.numel() for p in model.parameters()) >= LARGE_MODEL_PARAMS
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the notices are part of the printed summary
        report = export_onnx(
            model, example, args.path, dynamic_batch=args.dynamic_batch, dynamic_hw=dynamic_hw,
            opset=args.opset, precision=args.precision, mode=args.mode, compact_scales=args.compact_scales,
            progress=large or args.verbose, verbose=args.verbose,
        )
    print(report.summary())
    return 0
