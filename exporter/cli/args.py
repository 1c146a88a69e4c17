"""Argument groups that several subcommands share, and library errors shown with flags.

Each argument's ``dest`` is the library parameter it feeds (``--plugin-lib`` -> ``plugin_library``,
``--no-rectify`` -> ``rectify=False``), so a command passes them on by name and
:func:`as_flags` can turn a library message that names parameters into one that names flags.
Nothing here imports torch: the model is loaded only when a command runs.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from pathlib import Path

from exporter.shapes import parse_named_shape, parse_shape


def shape(rank: int | None = None) -> Callable[[str], tuple[int, ...]]:
    """An argparse ``type`` for ``1,3,224,224`` / ``1x3x224x224`` (see :func:`exporter.shapes.parse_shape`)."""

    def parse(text: str) -> tuple[int, ...]:
        try:
            return parse_shape(text, rank)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    return parse


def named_shape(text: str) -> tuple[str | None, tuple[int, ...]]:
    """An argparse ``type`` for ``1,3,224,224`` or ``name:1x3x224x224`` (:func:`exporter.shapes.parse_named_shape`)."""
    try:
        return parse_named_shape(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def comma_list(choices: tuple[str, ...] | None = None) -> Callable[[str], tuple[str, ...]]:
    """An argparse ``type`` for ``a,b,c``; with ``choices``, every item must be one of them."""

    def parse(text: str) -> tuple[str, ...]:
        names = tuple(v.strip() for v in text.split(",") if v.strip())
        unknown = [n for n in names if choices is not None and n not in choices]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown backend(s) {unknown}; choose from {', '.join(choices)}")
        return names

    return parse


def int_list(text: str) -> tuple[int, ...]:
    """An argparse ``type`` for ``1,8,32``."""
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def model_arguments(parser: argparse.ArgumentParser, *, positional: bool) -> None:
    """The PyTorch model: a registry name or ``package.module:factory``, its weights and variant."""
    what = "registry name (e.g. resnet50) or package.module:factory"
    if positional:
        parser.add_argument("model", help=what)
    else:
        parser.add_argument("--model", help=f"the PyTorch model the file was exported from: {what} "
                                            "(needed for the torch backend)")
    parser.add_argument("--checkpoint", type=Path, help="weights to load (state dict, read with weights_only=True)")
    parser.add_argument("--no-rectify", dest="rectify", action="store_false",
                        help="registry models: the plain baseline (same weights, no rectification)")
    parser.add_argument("--average-mode", action="store_true", help="registry models: average-mode rectification")


def load_model(args: argparse.Namespace):
    """The model that :func:`model_arguments` describe, in eval mode (imports torch)."""
    from exporter.model.registry import load_model as load

    return load(args.model, rectify=args.rectify, average_mode=args.average_mode, checkpoint=args.checkpoint)


def shape_range_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    """``--min-shape/--opt-shape/--max-shape`` (dests ``min_shapes``...: strings for
    :func:`exporter.shapes.parse_shapes`), the optimization profile of dynamic inputs; ``what``
    ends the group's description: what the range is for in this command."""
    group = parser.add_argument_group("shape range of dynamic inputs", f"The TensorRT optimization profile: {what}")
    for label in ("min", "opt", "max"):
        group.add_argument(f"--{label}-shape", dest=f"{label}_shapes", metavar="SHAPES",
                           help=f"{label} shapes, as 1x3x224x224 or name:1x3x224x224[,name:...]")


def plugin_library_argument(parser: argparse.ArgumentParser, help: str) -> None:
    """``--plugin-lib``: the RFConvRectify TensorRT plugin library (default: the one CMake built)."""
    parser.add_argument("--plugin-lib", dest="plugin_library", metavar="PATH", help=help)


_VALUE = r"""('[^']*'|"[^"]*"|\([^)]*\)|[^\s,;:)]+)"""


def _flag_value(value: str) -> str:
    """``'1x3x8x8'`` -> ``1x3x8x8``, ``(1, 3, 224, 224)`` -> ``1,3,224,224``, ``True`` -> ``True``."""
    if value[:1] in "'\"":
        return value[1:-1]
    if value.startswith("("):
        return ",".join(part.strip() for part in value[1:-1].split(",") if part.strip())
    return value


def as_flags(message: str, parser: argparse.ArgumentParser) -> str:
    """A library error as the command line user reads it: parameters replaced by ``parser``'s flags.

    ``name=value`` becomes ``--flag value`` (``--flag`` / ``--no-flag`` for switches), and a bare
    parameter name with an underscore (``opt_shapes``) becomes ``--opt-shape``; one-word names
    are left alone in prose, where they are ordinary words.
    """
    for action in parser._actions:  # argparse keeps no public list of a parser's arguments
        flags = [option for option in action.option_strings if option.startswith("--")]
        if not flags or action.dest in ("help", "version"):
            continue
        name = re.escape(action.dest)
        if isinstance(action, argparse.BooleanOptionalAction):
            switched = {"True": flags[0], "False": flags[-1]}
        elif isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            switched = {str(action.const): flags[0], str(not action.const): f"no {flags[0]}"}
        else:
            switched = None
        if switched is not None:
            message = re.sub(rf"\b{name}=(True|False)\b", lambda m, s=switched: s[m.group(1)], message)
        else:
            message = re.sub(rf"\b{name}={_VALUE}", lambda m, f=flags[0]: f"{f} {_flag_value(m.group(1))}", message)
        if "_" in action.dest:
            message = re.sub(rf"\b{name}\b", flags[0], message)
    return message
