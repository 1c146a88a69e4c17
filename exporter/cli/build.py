"""``rfconv-deploy build``: a TensorRT engine from an ONNX file (:func:`exporter.trt.engine.build_engine`)."""

from __future__ import annotations

import argparse

from exporter.cli.args import plugin_library_argument, shape_range_arguments


def register(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("build", help="build a TensorRT engine (.plan) from an ONNX model",
                       description="Build a strongly typed TensorRT engine from an ONNX model; precision "
                                   "follows the ONNX types (export with --precision fp16 for fp16).")
    p.add_argument("onnx_path", metavar="onnx", help="ONNX model (static or plugin mode)")
    p.add_argument("-o", "--output", dest="plan_path", required=True,
                   help="engine file to write (.plan); a .plan.json sidecar is written next to it")
    shape_range_arguments(p, "the engine runs shapes from min to max, fastest at opt (needed for every "
                             "dynamic input; one shape alone gives min = opt = max).")
    plugin_library_argument(p, "RFConvRectify plugin library (default: the built one, when the model has "
                               "plugin nodes)")
    p.add_argument("--timing-cache", metavar="FILE", help="timing cache to read (if present) and update")
    p.add_argument("--workspace", dest="workspace_mb", type=int, metavar="MB", help="workspace memory limit in MiB")
    p.add_argument("--no-embed-plugin", dest="embed_plugin", action="store_false",
                   help="do not build a version-compatible plan with the plugin library inside; the runtime "
                        "must then load the library before deserializing")
    p.add_argument("--aliased-io", dest="aliased_plugin_io", action="store_true",
                   help="let RFConvRectify work in place (TensorRT preview feature ALIASED_PLUGIN_IO_10_03)")
    p.add_argument("--tf32", action="store_true",
                   help="let fp32 layers use TF32 (faster on Ampere+, ~1e-3 relative error); off by default so that "
                        "an fp32 engine matches PyTorch fp32 and compare --backends trt")
    p.add_argument("--verbose", action="store_true", help="TensorRT INFO log")
    return p


def run(args: argparse.Namespace) -> int:
    from exporter.trt.engine import build_engine
    from exporter.trt.sidecar import sidecar_path

    report = build_engine(
        args.onnx_path, args.plan_path, min_shapes=args.min_shapes, opt_shapes=args.opt_shapes,
        max_shapes=args.max_shapes, plugin_library=args.plugin_library, timing_cache=args.timing_cache,
        workspace_mb=args.workspace_mb, aliased_plugin_io=args.aliased_plugin_io, embed_plugin=args.embed_plugin,
        tf32=args.tf32, verbose=args.verbose,
    )
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
