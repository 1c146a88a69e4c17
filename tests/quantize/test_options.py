"""QuantizeConfig: the quantize command's options are its fields, checked in one place."""

from __future__ import annotations

import argparse

import pytest

from exporter.cli.args import config_from_args
from exporter.cli.quantize import register
from exporter.quantize.options import DEFAULT_SAMPLES, QuantizeConfig


def _parse(argv):
    return register(argparse.ArgumentParser().add_subparsers()).parse_args(["m.onnx", "-o", "q.onnx", *argv])


def test_quantize_options_are_the_config_fields():
    assert config_from_args(QuantizeConfig, _parse([])) == QuantizeConfig()
    config = config_from_args(QuantizeConfig, _parse(["--samples", "4", "--method", "minmax", "--exclude", "a", "b",
                                                      "--input-shape", "1x3x32x48", "--seed", "3"]))
    assert config == QuantizeConfig(samples=4, method="minmax", exclude=("a", "b"), input_shape=(1, 3, 32, 48), seed=3)
    assert config.quantize_arguments()["exclude"] == ("a", "b")
    assert QuantizeConfig().samples == DEFAULT_SAMPLES


@pytest.mark.parametrize("kwargs, message", [
    (dict(samples=0), "samples must be >= 1"),
    (dict(method="mse"), "method='mse' is not one of"),
    (dict(activations="int4"), "activations='int4' is not one of"),
])
def test_bad_settings_name_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        QuantizeConfig(**kwargs)


def test_bad_input_shape_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit):
        _parse(["--input-shape", "1,3,32"])
    assert "--input-shape" in capsys.readouterr().err
