"""``rfconv-deploy inspect FILE``: what a file is, checked against the model it was exported from
(the RFConv2d modules' own settings and the input sizes a forward hook sees), and the light path."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import onnx
import pytest
import torch

from exporter.cli import main
from exporter.model.layer import RFConv2d
from exporter.onnx.export import export_onnx
from exporter.onnx.inspect import inspect_onnx
from exporter.trt.inspect import inspect_file
from tests.helpers import damage
from tests.helpers.export_models import rectified_layers, small_rf_net

SIZE = 24


def _export(model, path, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_onnx(model, torch.randn(2, 3, SIZE, SIZE), path, **options)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inspect")
    model = small_rf_net()
    return {
        "model": model,
        "static": _export(model, folder / "static.onnx"),
        "plugin": _export(model, folder / "plugin.onnx", mode="plugin"),
        "dynamic_hw": _export(model, folder / "hw.onnx", dynamic_hw=True),
        "folder": folder,
    }


def _expected(model) -> list[dict]:
    """Per rectified conv of the PyTorch model, in call order: geometry, rule, input size."""
    found = []
    for module, size in rectified_layers(model, torch.randn(1, 3, SIZE, SIZE)):
        assert isinstance(module, RFConv2d)
        exact = module.count_mode == "exact" or tuple(module.dilation) == (1, 1)
        found.append({
            "kernel": tuple(module.kernel_size), "stride": tuple(module.stride), "dilation": tuple(module.dilation),
            "padding": tuple(module.padding) * 2, "groups": module.groups,
            "channels": (module.in_channels, module.out_channels), "input_size": size,
            "rule": ("exact" if exact else "rfconv") + (", average" if module.average_mode else ""),
        })
    return found


def _actual(info) -> list[dict]:
    return [{"kernel": c.kernel, "stride": c.stride, "dilation": c.dilation, "padding": c.padding,
             "groups": c.groups, "channels": c.channels, "input_size": c.input_size, "rule": c.rule}
            for c in info.rectified]


@pytest.mark.parametrize("kind", ["static", "plugin"])
def test_rectified_convs_match_the_model(files, kind):
    info = inspect_onnx(files[kind])
    assert _actual(info) == _expected(files["model"])
    assert info.precision == "fp32" and info.opset and info.kind == "onnx"
    assert [(t.name, t.dynamic_dims) for t in info.inputs] == [("input", (0,))]
    assert info.inputs[0].shape[1:] == (3, SIZE, SIZE)


def test_static_export_mode_factors_and_backends(files):
    info = inspect_onnx(files["static"])
    assert info.mode.startswith("static (Conv -> Mul")
    # 7 rectified convs, two of identical geometry at the same size share one factor map
    assert len(info.rectified) == 7 and info.distinct_factors == 6
    assert info.rectified[0].factor_id == info.rectified[1].factor_id
    assert info.backends["ort-cpu"][0] and info.backends["onnx-ref"][0]
    assert not info.custom_ops and not info.external_data


def test_plugin_export_is_named_and_refused_by_openvino(files):
    info = inspect_onnx(files["plugin"])
    assert info.mode.startswith("plugin") and info.custom_ops == ["rfconv.RFConvRectify"]
    assert all(c.via == "RFConvRectify" for c in info.rectified)
    ov_runs, why = info.backends["ov-cpu"]
    assert not ov_runs and "--mode static" in why
    assert not info.backends["ort-cuda"][0]


def test_dynamic_hw_export(files):
    info = inspect_onnx(files["dynamic_hw"])
    assert info.mode.startswith("dynamic H/W")
    assert info.inputs[0].dynamic_dims == (0, 2, 3) and info.outputs[0].dynamic_dims == (0, 2, 3)
    assert len(info.rectified) == 7 and info.distinct_factors is None
    assert all(c.rule.startswith("computed in the graph") for c in info.rectified)


def test_damaged_factor_matches_no_counting_rule(files, tmp_path):
    model = onnx.load(str(files["static"]))
    damage.set_scale(model, 1, lambda factor: factor * np.float32(1.01))  # shared with layer 0 until now
    path = tmp_path / "damaged.onnx"
    onnx.save(model, str(path))
    info = inspect_onnx(path)
    rules = [c.rule for c in info.rectified]
    assert rules[1].startswith("unknown (the factor matches no counting rule")
    assert rules[0] == rules[2] == "exact" and info.distinct_factors == 7


def test_int8_file(files, tmp_path):
    from exporter.quantize.quantize import quantize_onnx

    int8 = tmp_path / "int8.onnx"
    quantize_onnx(files["static"], int8, samples=2)
    info = inspect_onnx(int8)
    assert info.precision == "int8" and info.mode.startswith("int8 Q/DQ")
    assert _actual(info) == _expected(files["model"])


def test_external_data_listed_and_missing_data_named(files, tmp_path):
    model = onnx.load(str(files["static"]))
    path = tmp_path / "external.onnx"
    onnx.save(model, str(path), save_as_external_data=True, location="external.bin", size_threshold=0)
    info = inspect_onnx(path)  # from another working directory than the file's
    assert info.external_data == {"external.bin": True}
    assert _actual(info) == _expected(files["model"]) and info.distinct_factors == 6
    (tmp_path / "external.bin").unlink()
    info = inspect_onnx(path)
    assert info.external_data == {"external.bin": False}
    assert all(c.rule.startswith("unknown (the factor's external data cannot be read") for c in info.rectified)


def test_plan_with_sidecar(tmp_path):
    plan = tmp_path / "model.plan"
    plan.write_bytes(b"\0" * 64)
    (tmp_path / "model.plan.json").write_text(json.dumps({"tensorrt": "10.9.0", "precision": "fp16"}))
    info = inspect_file(plan)
    assert info.kind == "plan" and info.sidecar == {"tensorrt": "10.9.0", "precision": "fp16"}
    assert set(info.backends) == {"trt"}
    bare = tmp_path / "bare.plan"
    bare.write_bytes(b"\0")
    assert inspect_file(bare).sidecar is None and "no sidecar" in inspect_file(bare).backends["trt"][1]


def test_cli_json_and_one_line_errors(files, tmp_path, capsys):
    assert main(["inspect", str(files["static"]), "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["precision"] == "fp32" and len(found["rectified"]) == 7
    assert main(["inspect", str(files["static"])]) == 0
    assert "rectified   7 convs, 6 distinct factor maps" in capsys.readouterr().out
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model at all")
    assert main(["inspect", str(garbage)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rfconv-deploy inspect: error:") and "is not an ONNX model" in err and "\n" not in err
    assert main(["inspect", str(tmp_path / "absent.onnx")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_inspect_does_not_import_torch(files):
    code = ("import sys; from exporter.cli import main; main(['inspect', sys.argv[1], '--json']); "
            "print('HEAVY', sorted(m for m in ('torch', 'torchvision') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(files["static"])], capture_output=True, text=True,
                         timeout=120, check=True)
    assert out.stdout.strip().splitlines()[-1] == "HEAVY []"
