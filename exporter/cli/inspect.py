"""``rfconv-deploy inspect FILE``: what an exported file is and which backends here can run it."""

from __future__ import annotations

import argparse
import json


def register(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("inspect", help="describe an ONNX file or TensorRT plan: mode, precision, dynamic dims, "
                                       "rectified convs, external data, sidecar, backends that can run it")
    p.add_argument("file", metavar="FILE", help="an .onnx file, or a .plan/.engine built by rfconv-deploy build")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    return p


def run(args: argparse.Namespace) -> int:
    from exporter.onnx.inspect import describe
    from exporter.trt.inspect import inspect_file

    info = inspect_file(args.file)
    print(json.dumps(info.as_dict(), indent=2) if args.json else describe(info))
    return 0
