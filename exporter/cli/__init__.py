"""``rfconv-deploy`` command line, kept apart from the library: one module per subcommand.

Each command module declares its arguments in ``register(sub)`` from the shared groups of
:mod:`.args` and imports its library module only inside ``run(args)``, so ``--help`` and
``serve`` never load torch. Library errors name parameters (``opt_shapes``); :func:`main`
prints them with the command's flags instead (``--opt-shape``), see :func:`.args.as_flags`, as one
line; ``rfconv-deploy --debug COMMAND`` also prints the traceback with every chained cause.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback

from exporter import __version__
from exporter.cli.args import as_flags

COMMANDS = ("info", "inspect", "export", "quantize", "build", "compare", "serve", "triton", "bench")
"""Subcommands in the order the help lists them; each is the module ``exporter.cli.<name>``."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rfconv-deploy",
        description="Deploy rectified-convolution CNNs: ONNX export, TensorRT, serving, comparison.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="on a failure, print the full traceback (with its causes) instead of one line")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        command = importlib.import_module(f"exporter.cli.{name}")
        command_parser = command.register(sub)
        command_parser.set_defaults(run=command.run, command_parser=command_parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, RuntimeError, OSError) as err:
        if args.debug:
            traceback.print_exc()
        print(f"rfconv-deploy {args.command}: error: {as_flags(str(err), args.command_parser)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
