"""``rfconv-deploy build``'s options (:class:`exporter.trt.options.BuildConfig`) and the profile a build uses
when no shapes are given: the documented example ``rfconv-deploy build rf50_plugin.onnx -o rf50.plan``
works on the default export, whose batch is dynamic."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import onnx
import pytest

from exporter.cli import build_parser, main
from exporter.cli.args import config_from_args
from exporter.trt.engine import plan_profiles, summarize_onnx
from exporter.trt.options import BuildConfig, default_shapes
from tests.helpers.contract_graphs import contract_model, make_layer

HAVE_TENSORRT = importlib.util.find_spec("tensorrt") is not None


def _onnx(tmp_path, dims_params: dict[int, str], name="model.onnx"):
    """A small conv graph with input [N, 3, 8, 8] whose dims at ``dims_params`` are dynamic (dim_param)."""
    model = contract_model([make_layer(3, 4, 3, padding=1)], (1, 3, 8, 8))
    for index, param in dims_params.items():
        model.graph.input[0].type.tensor_type.shape.dim[index].dim_param = param
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def test_dynamic_batch_without_shapes_gets_batch_1_to_max_batch(tmp_path):
    summary = summarize_onnx(_onnx(tmp_path, {0: "batch"}))
    (profile,), notes = plan_profiles(summary, BuildConfig())
    assert (profile.min, profile.opt, profile.max) == ((1, 3, 8, 8), (8, 3, 8, 8), (8, 3, 8, 8))
    assert profile.dynamic
    assert notes and "batch 1 to 8" in notes[0]
    (profile,), _ = plan_profiles(summary, BuildConfig(max_batch=2))
    assert profile.max == (2, 3, 8, 8)


def test_given_shapes_win_over_the_default(tmp_path):
    summary = summarize_onnx(_onnx(tmp_path, {0: "batch"}))
    (profile,), notes = plan_profiles(summary, BuildConfig(opt_shapes="4x3x8x8"))
    assert profile.min == profile.opt == profile.max == (4, 3, 8, 8) and not notes


def test_dynamic_hw_still_needs_shapes(tmp_path):
    summary = summarize_onnx(_onnx(tmp_path, {0: "batch", 2: "height", 3: "width"}))
    with pytest.raises(ValueError, match=r"input 'input' has dynamic dims .*give opt_shapes"):
        plan_profiles(summary, BuildConfig())


def test_default_shapes_rules():
    assert default_shapes({"x": (1, 3, 8, 8)}, 8) is None  # static: no profile
    assert default_shapes({"x": ("n", 3, "h", 8)}, 8) is None  # dynamic H: no size to default to
    assert default_shapes({"x": ("n", 3, 8, 8), "m": (1, 4)}, 3) == ("x:1x3x8x8", "x:3x3x8x8", "x:3x3x8x8")
    assert default_shapes({"x": (None, 3, 8, 8), "y": ("n", 5)}, 2) == ("x:1x3x8x8,y:1x5", "x:2x3x8x8,y:2x5",
                                                                      "x:2x3x8x8,y:2x5")


@pytest.mark.skipif(HAVE_TENSORRT, reason="TensorRT is installed: the command would build an engine")
def test_the_documented_build_example_gets_past_the_profile(tmp_path, capsys):
    """`rfconv-deploy build MODEL.onnx -o MODEL.plan` on a dynamic-batch export: it used to exit 2 for the
    missing shape range on every machine; now the only thing missing here is TensorRT."""
    path = _onnx(tmp_path, {0: "batch"})
    code = main(["build", str(path), "-o", str(tmp_path / "model.plan")])
    err = capsys.readouterr().err
    assert code != 0
    assert "dynamic dims" not in err and "--opt-shape" not in err, err
    assert "TensorRT is not installed" in err, err


def test_cli_builds_the_config_from_its_fields():
    args = build_parser().parse_args(["build", "m.onnx", "-o", "m.plan", "--max-batch", "4", "--plugin-lib", "x.so",
                                      "--workspace", "256", "--no-embed-plugin", "--aliased-io", "--tf32",
                                      "--timing-cache", "c.bin", "--opt-shape", "2x3x8x8"])
    config = config_from_args(BuildConfig, args)
    assert config == BuildConfig(opt_shapes="2x3x8x8", max_batch=4, plugin_library="x.so", timing_cache="c.bin",
                                 workspace_mb=256, embed_plugin=False, aliased_plugin_io=True, tf32=True)
    assert config_from_args(BuildConfig, build_parser().parse_args(["build", "m.onnx", "-o", "m.plan"])) == (
        BuildConfig())


@pytest.mark.parametrize("flags, match", [(["--workspace", "0"], "--workspace 0 must be >= 1"),
                                          (["--max-batch", "0"], "--max-batch must be at least 1, got 0")])
def test_bad_options_are_one_line_naming_the_flag(tmp_path, capsys, flags, match):
    path = _onnx(tmp_path, {0: "batch"})
    assert main(["build", str(path), "-o", str(tmp_path / "m.plan"), *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and match in err, err


def test_options_module_is_light():
    code = ("import sys, exporter.trt.options; heavy = [m for m in ('torch', 'onnx', 'tensorrt', 'numpy') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out


def test_a_broken_sidecar_keeps_its_cause(tmp_path):
    import json

    from exporter.trt.sidecar import read_sidecar, sidecar_path

    plan = tmp_path / "m.plan"
    sidecar_path(plan).write_text("{not json")
    with pytest.raises(ValueError, match="is not the JSON sidecar") as caught:
        read_sidecar(plan)
    assert isinstance(caught.value.__cause__, json.JSONDecodeError)
