"""Shared argument groups: library errors name parameters, the command line shows its flags."""

from __future__ import annotations

import argparse

import pytest

from exporter.cli import build_parser, main
from exporter.cli.args import as_flags, shape


def _command(name: str) -> argparse.ArgumentParser:
    return build_parser().parse_args([name, "x", *(["-o", "y"] if name in ("export", "build") else []),
                                      *(["--repo", "r"] if name == "triton" else [])]).command_parser


@pytest.mark.parametrize("command, message, shown", [
    ("build", "give opt_shapes (and min_shapes/max_shapes for a range), e.g. opt_shapes='1x3x224x224'",
     "give --opt-shape (and --min-shape/--max-shape for a range), e.g. --opt-shape 1x3x224x224"),
    ("build", "workspace_mb=0 must be >= 1", "--workspace 0 must be >= 1"),
    ("export", "rectify=False and average_mode=True apply to registry models",
     "--no-rectify and --average-mode apply to registry models"),
    ("export", "(dynamic_batch=False, dynamic_hw=False)", "(--no-dynamic-batch, --no-dynamic-hw)"),
    ("export", "the precision and the mode stay words", "the precision and the mode stay words"),
    ("compare", "drop input_shape/batch_size, e.g. input_shape=(1, 3, 224, 224)",
     "drop --input-shape/--batch-size, e.g. --input-shape 1,3,224,224"),
    ("compare", "torch_device='cuda': no CUDA device", "--torch-device cuda: no CUDA device"),
    ("triton", "onnx_path x.onnx does not exist; max_batch must be >= 0",
     "--onnx x.onnx does not exist; --max-batch must be >= 0"),
])
def test_library_parameters_become_the_commands_flags(command, message, shown):
    assert as_flags(message, _command(command)) == shown


def test_shape_type_is_the_one_parser():
    assert shape()("1x3x5x7") == shape()("1,3,5,7") == (1, 3, 5, 7)
    with pytest.raises(argparse.ArgumentTypeError, match="four positive integers N,C,H,W"):
        shape(rank=4)("1,3,224")
    with pytest.raises(argparse.ArgumentTypeError, match="is not a shape like"):
        shape()("1,0,3")


def test_unknown_command_exits_2(capsys):
    with pytest.raises(SystemExit) as exit_code:
        main(["no-such-command"])
    assert exit_code.value.code == 2
