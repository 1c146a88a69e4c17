"""``rfconv-deploy export``: a model to ONNX (:func:`exporter.onnx.export.export_onnx`)."""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

from exporter.cli.args import as_flags, comma_list, load_model, model_arguments, named_shape
from exporter.onnx.options import DEFAULT_INPUT_SHAPE, MIN_OPSET, MODES, PRECISIONS
from exporter.shapes import input_shapes

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
    p.add_argument("--input-names", dest="input_names", type=comma_list(), metavar="NAMES",
                   help="names of the model's inputs, in forward()'s order, e.g. image,gain (default: input, "
                        "or input_0,input_1,... for several)")
    p.add_argument("--input-shape", dest="input_shape", type=named_shape, action="append", metavar="[NAME:]SHAPE",
                   help="example input shape (default {}); repeat it for a model with several inputs, in "
                        "--input-names order or as name:2x3x224x224".format(",".join(map(str, DEFAULT_INPUT_SHAPE))))
    p.add_argument("--dynamic-batch", action=argparse.BooleanOptionalAction, default=True,
                   help="keep the batch dimension (dimension 0 of every input) symbolic (default on)")
    p.add_argument("--dynamic-hw", action=argparse.BooleanOptionalAction, default=None,
                   help="keep height and width of every N,C,H,W input symbolic; the scale is computed in the graph "
                        "(default: on for dense-prediction registry models, off otherwise)")
    p.add_argument("--dynamic-hw-inputs", dest="dynamic_hw_inputs", type=comma_list(), metavar="NAMES",
                   help="keep height and width symbolic for these inputs only (implies --dynamic-hw)")
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

    try:
        names, shapes = input_shapes(args.input_names, args.input_shape, DEFAULT_INPUT_SHAPE)
    except ValueError as err:
        args.command_parser.error(as_flags(str(err), args.command_parser))
    model = load_model(args)
    dynamic_hw = args.dynamic_hw
    if args.dynamic_hw_inputs:
        if dynamic_hw is False:
            raise ValueError("dynamic_hw_inputs keeps H and W dynamic: drop dynamic_hw=False or dynamic_hw_inputs")
        dynamic_hw = list(args.dynamic_hw_inputs)
    if dynamic_hw is None:
        dynamic_hw = args.model in REGISTRY and REGISTRY[args.model].dense
    generator = torch.Generator().manual_seed(0)
    examples = tuple(torch.randn(shape, generator=generator) for shape in shapes)
    large = sum(p.numel() for p in model.parameters()) >= LARGE_MODEL_PARAMS
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the notices are part of the printed summary
        report = export_onnx(
            model, examples if len(examples) > 1 else examples[0], args.path, input_names=names,
            dynamic_batch=args.dynamic_batch, dynamic_hw=dynamic_hw,
            opset=args.opset, precision=args.precision, mode=args.mode, compact_scales=args.compact_scales,
            progress=large or args.verbose, verbose=args.verbose,
        )
    print(report.summary())
    return 0
