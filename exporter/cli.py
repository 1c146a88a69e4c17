"""``rfconv-deploy`` command line: one subcommand per step of the deployment path.

Each step's module registers its own subcommand through ``add_subcommand(subparsers)``; this
module only lists them, so the CLI and the Python API cannot drift apart.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__

# Modules that own a subcommand, in the order the help lists them.
SUBCOMMAND_MODULES = (
    "exporter.backends",  # info
    "exporter.export",  # export
    "exporter.engine",  # build
    "exporter.compare",  # compare
    "exporter.serving.server",  # serve
    "exporter.serving.triton_repo",  # triton
    "exporter.bench",  # bench
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rfconv-deploy",
        description="Deploy rectified-convolution CNNs: ONNX export, TensorRT, serving, comparison.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in SUBCOMMAND_MODULES:
        importlib.import_module(module).add_subcommand(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .compat import install_rfconv_shim

    install_rfconv_shim()
    try:
        return args.func(args)
    except (ValueError, RuntimeError, OSError) as err:
        print(f"rfconv-deploy {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
