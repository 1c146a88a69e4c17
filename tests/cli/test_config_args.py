"""Command configs and the arguments built from them (exporter.config, exporter.cli.args)."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from exporter.cli import main
from exporter.cli.args import add_config_arguments, as_flags, config_from_args
from exporter.config import defaults, option


@dataclasses.dataclass(frozen=True)
class _Demo:
    path: str
    max_batch: int = option(8, help="most rows")
    rate: float = option(0.5, help="a rate")
    strict: bool = option(False, help="be strict")
    fold: bool = option(True, help="fold things")
    dynamic: bool | None = option(None, help="on, off or decided by the model", show_default=False)
    mode: str = option("a", help="which mode", choices=("a", "b"))
    sizes: tuple[int, ...] = option((), help="sizes", parse=lambda t: tuple(int(v) for v in t.split(",")))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="demo")
    add_config_arguments(p, _Demo)
    return p


def test_defaults_come_from_the_fields():
    args = _parser().parse_args([])
    config = config_from_args(_Demo, args, path="x")
    assert config == _Demo(path="x")
    assert defaults(_Demo) == {"max_batch": 8, "rate": 0.5, "strict": False, "fold": True, "dynamic": None,
                               "mode": "a", "sizes": ()}


def test_flags_parse_into_the_config():
    args = _parser().parse_args(["--max-batch", "4", "--rate", "0.25", "--strict", "--no-fold", "--no-dynamic",
                                 "--mode", "b", "--sizes", "3,5"])
    assert config_from_args(_Demo, args, path="y") == _Demo("y", 4, 0.25, True, False, False, "b", (3, 5))


def test_help_shows_each_default_once():
    text = _parser().format_help()
    assert "most rows (default: 8)" in text and "a rate (default: 0.5)" in text
    assert "--no-fold" in text and "--dynamic, --no-dynamic" in text


def test_bad_values_are_argparse_errors(capsys):
    with pytest.raises(SystemExit):
        _parser().parse_args(["--mode", "c"])
    assert "invalid choice" in capsys.readouterr().err


def test_library_messages_name_the_flags():
    assert as_flags("max_batch=3 must be at least 4", _parser()) == "--max-batch 3 must be at least 4"


def test_serve_options_are_the_config_fields():
    from exporter.cli.serve import register
    from exporter.serving.config import ServeConfig

    sub = argparse.ArgumentParser().add_subparsers()
    args = register(sub).parse_args(["m.onnx", "--max-queue", "16"])
    config = config_from_args(ServeConfig, args, name="m")
    assert config == ServeConfig(name="m", max_queue=16)


def test_debug_prints_the_traceback_and_the_plain_run_one_line(tmp_path, capsys):
    missing = str(tmp_path / "missing.onnx")
    assert main(["triton", missing, "--repo", str(tmp_path / "repo")]) == 2
    plain = capsys.readouterr().err
    assert "Traceback" not in plain and len(plain.strip().splitlines()) == 1
    assert main(["--debug", "triton", missing, "--repo", str(tmp_path / "repo")]) == 2
    debug = capsys.readouterr().err
    assert "Traceback (most recent call last)" in debug
    assert debug.strip().splitlines()[-1] == plain.strip()
