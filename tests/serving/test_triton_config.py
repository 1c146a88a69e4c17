"""``TritonConfig``: the triton command's options, declared once; the CLI's arguments are built from it."""

from __future__ import annotations

import dataclasses

import pytest

from exporter.cli import build_parser
from exporter.cli.args import config_from_args
from exporter.config import cli_fields, field_default, flag_of
from exporter.serving.triton_config import TritonConfig


def _args(*argv):
    return build_parser().parse_args(["triton", *argv])


def test_every_option_is_a_flag_of_the_command_with_the_fields_default():
    args = _args("m.onnx", "--repo", "r")
    flags = {o for action in args.command_parser._actions for o in action.option_strings}
    for f in cli_fields(TritonConfig):
        assert flag_of(f) in flags, f.name
        assert f.name == "repo" or getattr(args, f.name) == field_default(f), f.name
    assert config_from_args(TritonConfig, args) == TritonConfig(model="m.onnx", repo="r")


def test_flags_reach_the_config_and_the_writer():
    config = config_from_args(TritonConfig, _args(
        "m.plan", "--repo", "r", "--onnx", "m.onnx", "--max-batch", "4", "--accelerator", "cuda",
        "--kserve", "k.yaml", "--storage-uri", "gs://b/m", "--gpus", "2", "--kserve-protocol", "grpc-v2",
        "--startup-timeout-s", "120"))
    assert config.writer_options()["onnx_path"] == "m.onnx" and config.writer_options()["max_batch"] == 4
    assert config.kserve_options() == {"name": None, "gpus": 2, "min_replicas": 1, "max_replicas": None,
                                       "protocol": "grpc-v2", "runtime_version": None, "startup_timeout_s": 120}
    assert TritonConfig(model="m.onnx", repo="r", accelerator="cpu").gpus_per_replica == 0
    assert TritonConfig(model="m.onnx", repo="r").gpus_per_replica == 1


@pytest.mark.parametrize("values, message", [
    ({"repo": "r"}, "give a model file"),
    ({"model": "m", "repo": "r", "max_batch": -1}, "max_batch must be >= 0"),
    ({"model": "m", "repo": "r", "kserve": "k.yaml"}, "needs storage_uri"),
    ({"model": "m", "repo": "r", "storage_uri": "gs://b"}, "add kserve=FILE.yaml"),
    ({"model": "m", "repo": "r", "accelerator": "cpu", "gpus": 1}, "need no GPU"),
    ({"model": "m", "repo": "r", "gpus": 0}, "gpus must be at least 1"),
    ({"check": "r", "model": "m"}, "drop model"),
    ({"model": "m", "repo": "r", "startup_timeout_s": 0}, "startup_timeout_s must be at least 1"),
])
def test_bad_values_name_the_field(values, message):
    with pytest.raises(ValueError, match=message):
        TritonConfig(**values)


def test_the_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        TritonConfig(model="m", repo="r").max_batch = 4
