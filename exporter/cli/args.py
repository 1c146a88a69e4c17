"""Argument groups that several subcommands share, and library errors shown with flags.

Each argument's ``dest`` is the library parameter it feeds (``--plugin-lib`` -> ``plugin_library``,
``--no-rectify`` -> ``rectify=False``), so a command passes them on by name and
:func:`as_flags` can turn a library message that names parameters into one that names flags.
Nothing here imports torch: the model is loaded only when a command runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

from exporter.config import cli_fields, field_default, flag_of
from exporter.shapes import parse_named_shape, parse_shape


def shape(rank: int | None = None) -> Callable[[str], tuple[int, ...]]:
    """An argparse ``type`` for ``1,3,224,224`` / ``1x3x224x224`` (see :func:`exporter.shapes.parse_shape`)."""

    def parse(text: str) -> tuple[int, ...]:
        try:
            return parse_shape(text, rank)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from err

    return parse


def named_shape(text: str) -> tuple[str | None, tuple[int, ...]]:
    """An argparse ``type`` for ``1,3,224,224`` or ``name:1x3x224x224`` (:func:`exporter.shapes.parse_named_shape`)."""
    try:
        return parse_named_shape(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


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
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from err


def model_kwargs(text: str) -> dict:
    """An argparse ``type`` for ``--model-kwargs``: a JSON object, e.g. ``{"rectified_conv": true}``."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON ({err}): {text!r}") from err
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(
            f"must be a JSON object of keyword arguments, e.g. '{{\"num_classes\": 10}}', not {text!r}"
        )
    return value


def model_arguments(parser: argparse.ArgumentParser, *, positional: bool) -> None:
    """The PyTorch model: a registry name or ``package.module:factory``, its weights and variant."""
    what = "registry name (e.g. resnet50) or package.module:factory (looked up in the current directory first)"
    if positional:
        parser.add_argument("model", help=what)
    else:
        parser.add_argument("--model", help=f"the PyTorch model the file was exported from: {what} "
                                            "(needed for the torch backend)")
    parser.add_argument("--model-kwargs", dest="model_kwargs", type=model_kwargs, metavar="JSON",
                        help="package.module:factory models: keyword arguments for the factory, as a JSON object, "
                             "e.g. '{\"rectified_conv\": true}'")
    parser.add_argument("--checkpoint", type=Path,
                        help="weights to load: a state dict saved with torch.save (read with weights_only=True) "
                             "or a .safetensors file")
    parser.add_argument("--no-rectify", dest="rectify", action="store_false",
                        help="registry models: the plain baseline (same weights, no rectification)")
    parser.add_argument("--average-mode", action="store_true", help="registry models: average-mode rectification")


def load_model(args: argparse.Namespace):
    """The model that :func:`model_arguments` describe, in eval mode (imports torch).

    Warnings raised while the model is built (a factory that builds no rectified conv, convs
    ``rectify_model`` leaves alone) are printed to stderr as ``notice:`` lines right away, before
    the command's own work starts; other warning categories pass through unchanged.
    """
    from exporter.model.registry import load_model as load

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = load(args.model, rectify=args.rectify, average_mode=args.average_mode, checkpoint=args.checkpoint,
                     model_kwargs=getattr(args, "model_kwargs", None))
    parser = getattr(args, "command_parser", None)
    for warning in caught:
        if issubclass(warning.category, UserWarning):
            text = str(warning.message)
            print(f"notice: {as_flags(text, parser) if parser is not None else text}", file=sys.stderr, flush=True)
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return model


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


def _default_text(value) -> str:
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def add_config_arguments(parser: argparse.ArgumentParser, config_type: type, *, skip: tuple[str, ...] = (),
                         only: tuple[str, ...] | None = None) -> None:
    """Add one argument per :func:`exporter.config.option` field of ``config_type`` to ``parser``.

    The argument's ``dest`` is the field name (so :func:`as_flags` maps library messages that
    name the field to the flag) and its default is the field's; ``skip`` / ``only`` select
    fields. Fields with a ``group`` go into argument groups of that title, created once.
    """
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in cli_fields(config_type):
        if f.name in skip or (only is not None and f.name not in only):
            continue
        meta = f.metadata["cli"]
        target = parser
        if meta["group"]:
            if meta["group"] not in groups:
                groups[meta["group"]] = parser.add_argument_group(meta["group"])
            target = groups[meta["group"]]
        default = field_default(f)
        help_text = meta["help"]
        flags = ([meta["short"]] if meta["short"] else []) + [flag_of(f)]
        kwargs: dict = {"dest": f.name, "default": default}
        if isinstance(default, bool) or (default is None and f.type in ("bool | None", "Optional[bool]")):
            if default is True:
                flags = [meta["negative"] or "--no-" + flag_of(f)[2:]]
                kwargs["action"] = "store_false"
            elif default is False:
                kwargs["action"] = "store_true"
            else:
                kwargs["action"] = argparse.BooleanOptionalAction
        else:
            if meta["parse"] is not None:
                kwargs["type"] = meta["parse"]
            elif isinstance(default, (int, float)) and not isinstance(default, bool):
                kwargs["type"] = type(default)
            if meta["choices"] is not None:
                kwargs["choices"] = meta["choices"]
            if meta["metavar"]:
                kwargs["metavar"] = meta["metavar"]
            if meta["nargs"]:
                kwargs["nargs"] = meta["nargs"]
            if meta["show_default"] and default is not None and default != () and default is not argparse.SUPPRESS:
                help_text = f"{help_text} (default: {_default_text(default)})"
        target.add_argument(*flags, help=help_text, **kwargs)


def config_from_args(config_type: type, args: argparse.Namespace, **values):
    """``config_type`` built from the parsed ``args`` (fields added by :func:`add_config_arguments`)
    and ``values`` (fields the command fills itself, e.g. from a positional argument)."""
    names = {f.name for f in dataclasses.fields(config_type)}
    taken = {name: getattr(args, name) for name in names if hasattr(args, name) and name not in values}
    return config_type(**taken, **values)


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
