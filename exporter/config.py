"""Command configs: one frozen dataclass per command, each option declared once.

A command's options are the fields of its config (``ServeConfig``, ``ExportConfig``, ...): the
Python API takes the config, and the command line builds its arguments from the same fields
(:func:`exporter.cli.args.add_config_arguments`), so a default, a help text and a choice list are
written in one place. A field declares its command-line side with :func:`option`; a field without
it is library-only (the CLI fills it from elsewhere, e.g. a positional argument).

Light: imports nothing beyond the standard library, so ``--help`` and serving stay light.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

_MISSING = dataclasses.MISSING


def option(default: Any = _MISSING, *, help: str, flag: str | None = None, short: str | None = None,
           metavar: str | None = None, choices: Sequence[str] | None = None, parse: Callable[[str], Any] | None = None,
           default_factory: Callable[[], Any] | None = None, negative: str | None = None, group: str | None = None,
           show_default: bool = True, nargs: str | None = None) -> Any:
    """A config field that is also a command-line option.

    ``help`` says what the option does; the CLI appends ``(default: X)`` unless ``show_default``
    is false (for defaults that are computed, say so in ``help``). ``flag`` overrides the flag
    derived from the field name (``max_batch`` -> ``--max-batch``); ``short`` adds ``-o``-style
    aliases. ``parse`` is the argparse ``type`` (text -> value; raise ``ValueError`` or
    ``argparse.ArgumentTypeError`` on bad text). A ``bool`` field defaulting to False becomes a
    switch (``--flag``), one defaulting to True becomes ``--no-flag`` (or ``negative``), and one
    defaulting to None becomes ``--flag/--no-flag``. ``group`` names the argparse argument group.
    """
    metadata = {"cli": {"help": help, "flag": flag, "short": short, "metavar": metavar,
                        "choices": tuple(choices) if choices is not None else None, "parse": parse,
                        "negative": negative, "group": group, "show_default": show_default, "nargs": nargs}}
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def cli_fields(config_type: type) -> list[dataclasses.Field]:
    """The fields of ``config_type`` declared with :func:`option`, in declaration order."""
    return [f for f in dataclasses.fields(config_type) if "cli" in f.metadata]


def flag_of(field: dataclasses.Field) -> str:
    """The long flag of a config field: its ``flag`` or ``--`` + the name with ``-`` for ``_``."""
    return field.metadata["cli"]["flag"] or "--" + field.name.replace("_", "-")


def field_default(field: dataclasses.Field) -> Any:
    """The field's default value (calling its factory), or ``dataclasses.MISSING``."""
    if field.default is not _MISSING:
        return field.default
    if field.default_factory is not _MISSING:  # type: ignore[misc]
        return field.default_factory()  # type: ignore[misc]
    return _MISSING


def defaults(config_type: type) -> dict[str, Any]:
    """Every field of ``config_type`` that has a default, name -> value."""
    out = {}
    for f in dataclasses.fields(config_type):
        value = field_default(f)
        if value is not _MISSING:
            out[f.name] = value
    return out
