"""``rfconv-deploy build``: a TensorRT engine from an ONNX file (:func:`exporter.trt.engine.build_engine`).

The options are the fields of :class:`exporter.trt.options.BuildConfig`.
"""

from __future__ import annotations

import argparse

from exporter.cli.args import add_config_arguments, config_from_args, shape_range_arguments
from exporter.trt.options import BuildConfig


def register(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("build", help="build a TensorRT engine (.plan) from an ONNX model",
                       description="Build a strongly typed TensorRT engine from an ONNX model; precision "
                                   "follows the ONNX types (export with --precision fp16 for fp16).")
    p.add_argument("onnx_path", metavar="onnx", help="ONNX model (static or plugin mode)")
    p.add_argument("-o", "--output", dest="plan_path", required=True,
                   help="engine file to write (.plan); a .plan.json sidecar is written next to it")
    shape_range_arguments(p, "the engine runs shapes from min to max, fastest at opt (one shape alone gives "
                             "min = opt = max). Default for a file whose only dynamic dim is the batch: batch 1 "
                             "to --max-batch at its C, H, W; a dynamic H/W needs them.")
    add_config_arguments(p, BuildConfig)
    return p


def run(args: argparse.Namespace) -> int:
    from exporter.trt.engine import build_engine
    from exporter.trt.sidecar import sidecar_path

    config = config_from_args(BuildConfig, args)
    report = build_engine(args.onnx_path, args.plan_path, config)
    shapes = "; ".join(f"{i['name']} {i['min']}..{i['max']} (opt {i['opt']})" for i in report.inputs)
    print(f"wrote {report.plan} ({report.plan_bytes / 1e6:.1f} MB, TensorRT {report.tensorrt_version}, "
          f"{report.precision}{', TF32 allowed' if report.tf32 else ''}, {report.gpu}) in {report.build_seconds:.1f} s")
    print(f"  inputs: {shapes}")
    if report.plugin_library:
        print(f"  {report.plugin_nodes} RFConvRectify node(s), plugin library {report.plugin_library}")
    for note in report.notes:
        print(f"  {note}")
    print(f"  sidecar: {sidecar_path(report.plan)}")
    return 0
