"""rfconv-deploy export on the command line, the notices and the one-paragraph errors."""

from __future__ import annotations

import onnx
import pytest
import torch
from torch import nn

from exporter import RFConv2d
from exporter.cli import main
from exporter.cli.args import shape
from exporter.onnx.export import ExportError, export_onnx
from tests.helpers.export_models import ort_session, plain_net, rel_err, small_rf_net, torch_out

FACTORY = "tests.helpers.export_models:tiny_factory"


def test_cli_exports_a_factory_model(tmp_path, capsys):
    out = tmp_path / "tiny.onnx"
    code = main(["export", FACTORY, "-o", str(out), "--input-shape", "1,3,33,29", "--no-dynamic-batch"])
    assert code == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "rectified convs: 7" in printed and "nodes (" in printed
    model = small_rf_net(1)
    x = torch.randn(1, 3, 33, 29)
    assert rel_err(ort_session(out).run(None, {"input": x.numpy()})[0], torch_out(model, x)) <= 1e-5
    assert [d.dim_value for d in onnx.load(out).graph.input[0].type.tensor_type.shape.dim] == [1, 3, 33, 29]


def test_cli_dynamic_hw_fp16(tmp_path, capsys):
    out = tmp_path / "tiny16.onnx"
    code = main(["export", FACTORY, "-o", str(out), "--input-shape", "1,3,32,32", "--dynamic-hw",
                 "--precision", "fp16", "--opset", "18"])
    assert code == 0
    assert "opset 18, fp16" in capsys.readouterr().out
    x = torch.randn(2, 3, 41, 27)
    out_values = ort_session(out).run(None, {"input": x.numpy()})[0]
    assert rel_err(out_values, torch_out(small_rf_net(1), x)) <= 1e-2


@pytest.mark.parametrize("argv, message", [
    (["--precision", "bf16"], "invalid choice"),
    (["--input-shape", "1,3,224"], "four positive integers"),
    (["--mode", "fancy"], "invalid choice"),
])
def test_cli_rejects_bad_options(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit):
        main(["export", FACTORY, "-o", str(tmp_path / "m.onnx"), *argv])
    assert message in capsys.readouterr().err


def test_cli_errors_are_one_line_with_exit_2(tmp_path, capsys):
    code = main(["export", FACTORY, "-o", str(tmp_path / "missing" / "m.onnx"), "--input-shape", "1,3,32,32"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rfconv-deploy export: error: cannot write") and "does not exist" in err
    assert len(err.splitlines()) == 1
    code = main(["export", FACTORY, "-o", str(tmp_path / "m.onnx"), "--no-rectify"])
    assert code == 2 and "registry models" in capsys.readouterr().err
    code = main(["export", FACTORY, "-o", str(tmp_path / "m.onnx"), "--compact-scales", "--dynamic-hw"])
    assert code == 2 and "--compact-scales needs scale constants" in capsys.readouterr().err


def test_parse_input_shape():
    assert shape(rank=4)("2,3,64,48") == (2, 3, 64, 48)
    assert shape(rank=4)("1x3x8x8") == (1, 3, 8, 8)


def test_model_without_rectified_conv_exports_with_a_notice(tmp_path):
    with pytest.warns(UserWarning, match="no rectified convolution"):
        report = export_onnx(plain_net(), torch.randn(1, 3, 8, 8), tmp_path / "plain.onnx")
    assert report.rectified_convs == 0 and report.notices
    assert "notice: Sequential has no rectified convolution" in report.summary()


class DataDependent(nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # Python branch on a tensor value: torch.export cannot capture it
            return x * 2
        return x


@pytest.mark.parametrize("kwargs, message", [
    (dict(precision="int8"), "precision='int8' is not supported"),
    (dict(mode="tensorrt"), "mode='tensorrt' is not supported"),
    (dict(opset=13), "opset 13 is not supported"),
])
def test_unsupported_settings(tmp_path, kwargs, message):
    with pytest.raises(ExportError, match=message):
        export_onnx(small_rf_net(), torch.randn(1, 3, 16, 16), tmp_path / "m.onnx", **kwargs)


def test_bad_inputs_and_paths(tmp_path):
    model = small_rf_net()
    with pytest.raises(ExportError, match=r"one NCHW image tensor"):
        export_onnx(model, torch.randn(3, 16, 16), tmp_path / "m.onnx")
    with pytest.raises(ExportError, match="is a directory"):
        export_onnx(model, torch.randn(1, 3, 16, 16), tmp_path)
    with pytest.raises(ExportError, match="fails on the example input of shape \\[1, 4, 16, 16\\]"):
        export_onnx(model, torch.randn(1, 4, 16, 16), tmp_path / "m.onnx")


def test_uncapturable_model_gets_one_paragraph(tmp_path):
    with pytest.raises(ExportError) as info:
        export_onnx(DataDependent(), torch.randn(1, 3, 8, 8), tmp_path / "m.onnx")
    text = str(info.value)
    assert "cannot export DataDependent" in text and "torch.export" in text
    assert "\n" not in text and len(text) < 1000


TWO_INPUTS = "tests.helpers.export_models:two_input_factory"


@pytest.mark.parametrize("shapes", [["2,3,16,16", "2,8"], ["gain:2x8", "image:2x3x16x16"]],
                         ids=["in-order", "named"])
def test_cli_exports_a_two_input_model(tmp_path, capsys, shapes):
    """--input-names and one --input-shape per input (in order, or name:shape in any order)."""
    out = tmp_path / "two.onnx"
    argv = ["export", TWO_INPUTS, "-o", str(out), "--input-names", "image,gain", "--dynamic-hw"]
    assert main(argv + [a for s in shapes for a in ("--input-shape", s)]) == 0
    printed = capsys.readouterr().out
    assert "inputs image ['batch', 3, 'height', 'width'], gain ['batch', 8]" in printed
    assert "Conv->Mul mode, dynamic H/W" in printed and "image 1x3x15x15 + gain 1x8" in printed
    session = ort_session(out)
    assert [i.name for i in session.get_inputs()] == ["image", "gain"]
    from tests.helpers.export_models import two_input_factory

    image, gain = torch.randn(3, 3, 21, 18), torch.rand(3, 8)
    with torch.no_grad():
        want = two_input_factory()(image, gain).double().numpy()
    assert rel_err(session.run(None, {"image": image.numpy(), "gain": gain.numpy()})[0], want) <= 1e-5


@pytest.mark.parametrize("argv, message", [
    (["--input-names", "image,gain"], "give --input-shape for each of the inputs image, gain"),
    (["--input-names", "image,gain", "--input-shape", "2,3,8,8"], "1 --input-shape(s) for 2 --input-names"),
    (["--input-names", "image,gain", "--input-shape", "image:2x3x8x8", "--input-shape", "mask:2x8"],
     "give one shape per input name"),
    (["--input-shape", "image:2x3x8x8", "--input-shape", "2,8"], "name every shape"),
    (["--input-shape", "2,8"], "four positive integers"),
])
def test_cli_input_shapes_that_do_not_fit_the_names(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit):
        main(["export", TWO_INPUTS, "-o", str(tmp_path / "m.onnx"), *argv])
    assert message in capsys.readouterr().err


def test_cli_dynamic_hw_for_named_inputs(tmp_path, capsys):
    out = tmp_path / "two.onnx"
    base = ["export", TWO_INPUTS, "-o", str(out), "--input-names", "image,gain", "--input-shape", "2,3,16,16",
            "--input-shape", "2,8"]
    assert main(base + ["--dynamic-hw-inputs", "image"]) == 0
    assert "inputs image ['batch', 3, 'height', 'width'], gain ['batch', 8]" in capsys.readouterr().out
    assert main(base + ["--dynamic-hw-inputs", "gain"]) == 2
    assert "names 'gain' of shape [2, 8], which is not an [N, C, H, W] input" in capsys.readouterr().err
    assert main(base + ["--dynamic-hw-inputs", "image", "--no-dynamic-hw"]) == 2
    assert "--dynamic-hw-inputs keeps H and W dynamic" in capsys.readouterr().err


def dense_factory() -> nn.Module:
    """A model that asks for dynamic H/W by default, as the registry's dense models do."""
    model = nn.Sequential(RFConv2d(3, 4, 3, padding=1), nn.ReLU(), RFConv2d(4, 2, 3, padding=1))
    model._rfconv_export_defaults = {"dynamic_hw": True}
    return model


def _hw_dims(path) -> list:
    return [d.dim_param or d.dim_value for d in onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim][2:]


def test_model_export_defaults_apply_from_python_and_the_cli_alike(tmp_path, capsys):
    """The rule "a dense registry model exports with dynamic H/W" lived in the CLI, so export_onnx
    from Python wrote a static file where the CLI wrote a dynamic one; both read the model now."""
    x = torch.randn(1, 3, 16, 16)
    report = export_onnx(dense_factory(), x, tmp_path / "py.onnx")
    assert report.dynamic_hw and _hw_dims(report.path) == ["height", "width"]
    assert not export_onnx(dense_factory(), x, tmp_path / "off.onnx", dynamic_hw=False).dynamic_hw
    spec = "tests.cli.test_export_cli:dense_factory"
    assert main(["export", spec, "-o", str(tmp_path / "cli.onnx"), "--input-shape", "1,3,16,16"]) == 0
    assert "dynamic H/W" in capsys.readouterr().out and _hw_dims(tmp_path / "cli.onnx") == ["height", "width"]
    assert main(["export", spec, "-o", str(tmp_path / "s.onnx"), "--input-shape", "1,3,16,16", "--no-dynamic-hw"]) == 0
    assert _hw_dims(tmp_path / "s.onnx") == [16, 16]


def test_export_options_are_the_config_fields(tmp_path):
    import argparse

    from exporter.cli.args import config_from_args
    from exporter.cli.export import register
    from exporter.onnx.options import ExportConfig

    sub = argparse.ArgumentParser().add_subparsers()
    args = register(sub).parse_args(["m", "-o", "m.onnx", "--size-multiple", "32", "--precision", "fp16",
                                     "--no-dynamic-batch", "--dynamic-hw"])
    config = config_from_args(ExportConfig, args)
    assert config == ExportConfig(size_multiple=32, precision="fp16", dynamic_batch=False, dynamic_hw=True)
    args = register(argparse.ArgumentParser().add_subparsers()).parse_args(
        ["m", "-o", "m.onnx", "--check-sizes", "96x96,160x128"])
    assert config_from_args(ExportConfig, args).check_sizes == ((96, 96), (160, 128))
    with pytest.raises(ValueError, match="size_multiple or check_sizes, not both"):
        ExportConfig(size_multiple=8, check_sizes=((8, 8),))


def test_cli_size_multiple_and_check_sizes(tmp_path, capsys):
    base = ["export", "tests.cli.test_export_cli:dense_factory", "-o", str(tmp_path / "m.onnx"),
            "--input-shape", "1,3,16,16"]
    assert main(base + ["--size-multiple", "8"]) == 0
    assert "2x3x24x24" in capsys.readouterr().out  # checked at the next multiple of 8
    assert main(base + ["--check-sizes", "20x12"]) == 0
    assert "2x3x20x12" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(base + ["--check-sizes", "20by12"])
    assert "check size '20by12' is not HxW" in capsys.readouterr().err
    assert main(base + ["--no-dynamic-hw", "--size-multiple", "8"]) == 2
    assert "--size-multiple and --check-sizes choose" in capsys.readouterr().err
