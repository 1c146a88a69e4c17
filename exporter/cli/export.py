"""``rfconv-deploy export``: a model to ONNX (:func:`exporter.onnx.export.export_onnx`).

The options are the fields of :class:`exporter.onnx.options.ExportConfig`; the example input
shapes (``--input-shape``, repeatable) are parsed here, at the edge.
"""

from __future__ import annotations

import argparse
import dataclasses
import warnings
from pathlib import Path

from exporter.cli.args import add_config_arguments, as_flags, config_from_args, load_model, model_arguments, named_shape
from exporter.onnx.options import DEFAULT_INPUT_SHAPE, ExportConfig
from exporter.shapes import input_shapes

LARGE_MODEL_PARAMS = 10_000_000
"""Models this large (ResNet-50 has 25.6 M parameters) print each step of the export."""


def register(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "export", help="export a model to ONNX (rectified convs as Conv -> Mul(scale))",
        description="Export a model to ONNX: each rectified conv becomes Conv -> Mul(scale [1,1,Ho,Wo]), "
        "BatchNorm is folded, and the file passes onnx.checker's full check and shape inference. A file "
        "with dynamic dimensions is checked against PyTorch at other sizes before it is kept.",
    )
    model_arguments(p, positional=True)
    p.add_argument("-o", "--output", dest="path", required=True, type=Path, help="ONNX file to write")
    p.add_argument("--input-shape", dest="input_shape", type=named_shape, action="append", metavar="[NAME:]SHAPE",
                   help="example input shape (default {}); repeat it for a model with several inputs, in "
                        "--input-names order or as name:2x3x224x224".format(",".join(map(str, DEFAULT_INPUT_SHAPE))))
    add_config_arguments(p, ExportConfig)
    return p


def run(args: argparse.Namespace) -> int:
    import torch

    from exporter.onnx.export import export_onnx

    try:
        names, shapes = input_shapes(args.input_names, args.input_shape, DEFAULT_INPUT_SHAPE)
    except ValueError as err:
        args.command_parser.error(as_flags(str(err), args.command_parser))
    config = config_from_args(ExportConfig, args, input_names=names)
    model = load_model(args)
    generator = torch.Generator().manual_seed(0)
    examples = tuple(torch.randn(shape, generator=generator) for shape in shapes)
    large = sum(p.numel() for p in model.parameters()) >= LARGE_MODEL_PARAMS
    config = dataclasses.replace(config, progress=large or config.verbose)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the notices are part of the printed summary
        report = export_onnx(model, examples if len(examples) > 1 else examples[0], args.path,
                             **config.export_arguments())
    print(report.summary())
    return 0
