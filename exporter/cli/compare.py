"""``rfconv-deploy compare``: one file on every backend, checked against the first that ran
(:func:`exporter.comparison.compare.compare`); exit code 0 only if every comparison passes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from exporter.backends.availability import BACKENDS
from exporter.cli.args import as_flags, load_model, model_arguments, plugin_library_argument, shape
from exporter.comparison.defaults import DEFAULT_BACKENDS, NOISE_FLOOR_MULTIPLE, VERDICTS
from exporter.onnx.options import PRECISIONS
from exporter.shapes import parse_shape


def _backend_list(values: list[str]) -> list[str]:
    return [name for value in values for name in value.split(",") if name]


def _hw_list(text: str) -> list[tuple[int, int]]:
    """``224x224,223x223`` -> ``[(224, 224), (223, 223)]``."""
    try:
        return [parse_shape(item, 2) for item in text.split(",") if item.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def register(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "compare", help="compare an exported model across PyTorch, ONNX Runtime and TensorRT",
        description="Run the same inputs through several backends and check every output against "
                    "the first backend that ran. Exit code 0 only if every comparison passes.",
    )
    p.add_argument("onnx_path", metavar="onnx", help="the exported .onnx file")
    model_arguments(p, positional=False)
    p.add_argument("--backends", nargs="+", default=[",".join(DEFAULT_BACKENDS)], metavar="LIST",
                   help=f"comma-separated, first is the reference; from {','.join(BACKENDS)} "
                        f"(default: {','.join(DEFAULT_BACKENDS)})")
    p.add_argument("--inputs", default="random",
                   help="'random' (seeded), a folder of images (ImageNet preprocessing) or a "
                        "Polygraphy input JSON (default: random)")
    p.add_argument("--iterations", type=int, help="number of input batches (random: default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    p.add_argument("--batch-size", type=int, help="batch size for a dynamic batch dimension (default 1)")
    p.add_argument("--input-shape", type=shape(), help="full input shape, e.g. 1,3,224,224 (dynamic H/W)")
    p.add_argument("--precision", choices=PRECISIONS,
                   help="sets the default rtol (fp32 1e-4, fp16 1e-2) and TensorRT build precision "
                        "(default: the model file's)")
    p.add_argument("--rtol", type=float, help="relative tolerance (default by precision: fp32 1e-4, fp16 1e-2)")
    p.add_argument("--atol", type=float,
                   help="absolute tolerance (default: rtol times each output's largest |reference| value)")
    p.add_argument("--report", help="write the JSON report here")
    p.add_argument("--save-results", help="save Polygraphy RunResults: FILE.json, or a new directory "
                                          "for one file per iteration (a dynamic-H/W file's other sizes go "
                                          "beside it: FILE-HxW.json, or DIR/HxW/)")
    p.add_argument("--save-inputs", help="save the inputs as Polygraphy input JSON (reusable with --inputs; "
                                         "other sizes in FILE-HxW.json)")
    p.add_argument("--verdict", choices=VERDICTS, default=VERDICTS[0],
                   help="noise-floor (default): every backend's error against PyTorch in float64 must stay "
                        f"within K={NOISE_FLOOR_MULTIPLE:g} times fp32 (fp16) PyTorch's own, and within the "
                        "tolerance; tolerance: the tolerance alone, against the first backend; int8 (what an int8 "
                        "Q/DQ file gets): cosine, top-1 and an error bound against fp32 PyTorch")
    p.add_argument("--floor-multiple", type=float, default=NOISE_FLOOR_MULTIPLE,
                   help=f"K of the noise-floor verdict (default {NOISE_FLOOR_MULTIPLE:g})")
    p.add_argument("--outputs-only", action="store_true",
                   help="check the model outputs only (default: also the tensor after every rectified conv, "
                        "with the first failing layer named)")
    p.add_argument("--sizes", type=_hw_list, metavar="HxW,...",
                   help="dynamic-H/W files: input sizes to check (default: the --input-shape size, the "
                        "largest odd size below it and a larger size where stride-2 layers round)")
    p.add_argument("--torch-device", default="cpu", help="device for the torch backend (default cpu)")
    plugin_library_argument(p, "RFConvRectify TensorRT plugin library for the trt backend (default: the built one)")
    p.add_argument("--verbose", action="store_true", help="show Polygraphy's log")
    return p


def run(args: argparse.Namespace) -> int:
    from exporter.comparison.compare import compare

    torch_model = load_model(args) if args.model else None
    report = compare(
        args.onnx_path, torch_model, backends=_backend_list(args.backends), inputs=args.inputs,
        iterations=args.iterations, seed=args.seed, batch_size=args.batch_size,
        input_shape=args.input_shape, atol=args.atol, rtol=args.rtol, precision=args.precision,
        verdict=args.verdict, floor_multiple=args.floor_multiple, outputs_only=args.outputs_only,
        sizes=args.sizes, save_results=args.save_results, save_inputs=args.save_inputs,
        torch_device=args.torch_device, plugin_library=args.plugin_library,
        torch_model_name=args.model, verbose=args.verbose,
    )
    payload = report.to_dict()  # the JSON report keeps the library's words
    for status in report.backends:  # skip reasons name library parameters; show this command's flags
        status.detail = as_flags(status.detail, args.command_parser)
    print(report.format_table())
    if args.report:
        Path(args.report).write_text(json.dumps(payload, indent=2) + "\n")
        print(f"Report written to {args.report}")
    return 0 if report.passed else 1
