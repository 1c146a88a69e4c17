"""export_onnx(mode="plugin") end to end: RFConvRectify graphs on ONNX Runtime CPU (reference op) vs PyTorch.

The reference op (plugins.ort_reference) stands in for the TensorRT plugin on CPU; the graph around
it is exactly what TensorRT's ONNX parser gets.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import helper

from exporter import RFConv2d
from exporter.cli import main
from exporter.model.registry import build_model
from exporter.model.scale import rectify_scale
from exporter.onnx.export import export_onnx
from plugins.ort_reference import inference_session
from plugins.spec import PLUGIN_DOMAIN, PLUGIN_NAME, RectifySpec
from tests.helpers.export_models import rectified_layers, rel_err, small_rf_net, torch_out


def _plugin_specs(path) -> list[RectifySpec]:
    model = onnx.load(str(path))
    return [RectifySpec.from_node_attributes({a.name: helper.get_attribute_value(a) for a in node.attribute})
            for node in model.graph.node if node.op_type == PLUGIN_NAME and node.domain == PLUGIN_DOMAIN]


def _assert_specs_match_layers(specs, layers):
    """Every plugin node holds its layer's geometry and a counting rule giving the layer's factor."""
    assert len(specs) == len(layers)
    for spec, (layer, hw) in zip(specs, layers, strict=True):
        assert (spec.kernel, spec.stride, spec.padding, spec.dilation, spec.average_mode) == (
            layer.kernel_size, layer.stride, layer.padding, layer.dilation, layer.average)
        # the graph cannot tell the rules apart where they agree; where they differ it must be the layer's
        assert spec.count_mode == layer.count_mode or torch.equal(
            spec.scale(hw), rectify_scale(hw, layer.kernel_size, layer.stride, layer.padding, layer.dilation,
                                          layer.average, layer.count_mode))


def test_small_net_plugin_export_matches_pytorch(tmp_path):
    model, x = small_rf_net(), torch.randn(2, 3, 33, 29)
    report = export_onnx(model, x[:1], tmp_path / "small_plugin.onnx", mode="plugin")
    graph = onnx.load(str(report.path)).graph
    ops = [n.op_type for n in graph.node]
    assert "Mul" not in ops and ops.count(PLUGIN_NAME) == 7 == report.rectified_convs
    specs = _plugin_specs(report.path)
    _assert_specs_match_layers(specs, rectified_layers(model, x))
    assert "rfconv" in {s.count_mode for s in specs}  # the k=5 dilated layer, where the rules differ
    assert sum(s.activation == "relu" for s in specs) == 6
    (out,) = inference_session(report.path).run(None, {"input": x.numpy()})  # dynamic batch: 2
    assert rel_err(out, torch_out(model, x)) <= 1e-5


def test_small_net_plugin_export_fp16(tmp_path):
    model, x = small_rf_net(), torch.randn(1, 3, 32, 32)
    report = export_onnx(model, x, tmp_path / "small_plugin16.onnx", mode="plugin", precision="fp16")
    assert [n.op_type for n in onnx.load(str(report.path)).graph.node].count(PLUGIN_NAME) == 7
    (out,) = inference_session(report.path).run(None, {"input": x.numpy()})
    assert out.dtype == np.float32  # fp16 inside, fp32 at the boundary
    assert rel_err(out, torch_out(model, x)) <= 1e-2


def test_plugin_mode_with_dynamic_hw_is_right_at_every_size(tmp_path):
    """Plugin mode used to refuse --dynamic-hw (issue 16): each in-graph factor is now replaced by the
    plugin, which computes it from the conv input's runtime shape; modes read at the example size."""
    model = small_rf_net(1)
    report = export_onnx(model, torch.randn(1, 3, 24, 24), tmp_path / "m.onnx", mode="plugin", dynamic_hw=True)
    graph = onnx.load(str(report.path)).graph
    assert [n.op_type for n in graph.node].count(PLUGIN_NAME) == report.rectified_convs > 0
    assert not {"Reciprocal", "Shape"} & {n.op_type for n in graph.node}  # the in-graph factors are gone
    session = inference_session(report.path)
    for hw in ((24, 24), (17, 29), (40, 33)):
        x = torch.randn(2, 3, *hw)
        (values,) = session.run(None, {"input": x.numpy()})
        assert rel_err(values, torch_out(model, x)) <= 1e-5, hw


@pytest.mark.slow
def test_dynamic_hw_plugin_mode_rf_resnet50_at_three_sizes(tmp_path):
    """Issue 16's acceptance: RF-ResNet-50, --mode plugin --dynamic-hw, agrees with PyTorch at 160x160,
    224x224 and 193x257 on ONNX Runtime CPU through the plugin's reference op."""
    model = build_model("resnet50")
    report = export_onnx(model, torch.randn(1, 3, 224, 224), tmp_path / "rf50.onnx", mode="plugin", dynamic_hw=True)
    session = inference_session(report.path)
    for hw in ((160, 160), (224, 224), (193, 257)):
        x = torch.randn(1, 3, *hw)
        (values,) = session.run(None, {"input": x.numpy()})
        assert rel_err(values, torch_out(model, x)) <= 1e-4, hw


def test_cli_mode_plugin(tmp_path, capsys):
    out = tmp_path / "cli_plugin.onnx"
    code = main(["export", "tests.helpers.export_models:tiny_factory", "-o", str(out), "--input-shape", "1,3,24,24",
                 "--mode", "plugin"])
    assert code == 0 and "plugin mode" in capsys.readouterr().out
    x = torch.randn(3, 3, 24, 24)
    (values,) = inference_session(out).run(None, {"input": x.numpy()})
    assert rel_err(values, torch_out(small_rf_net(1), x)) <= 1e-5


@pytest.mark.slow
def test_resnet50_plugin_export_matches_pytorch(tmp_path):
    model, x = build_model("resnet50"), torch.randn(1, 3, 224, 224)
    report = export_onnx(model, x, tmp_path / "resnet50_plugin.onnx", mode="plugin")
    specs = _plugin_specs(report.path)
    _assert_specs_match_layers(specs, rectified_layers(model, x))
    assert len(specs) == 17 and all(s.activation == "relu" for s in specs)  # every one Conv+BN+ReLU
    (out,) = inference_session(report.path).run(None, {"input": x.numpy()})
    assert rel_err(out, torch_out(model, x)) <= 1e-4


def test_dynamic_hw_plugin_node_takes_the_layers_counting_rule(tmp_path):
    """A dilated 3x3 with official counting equals exact counting except on small maps (3 pixels at
    dilation 2): the node used to say "exact" (matched at the example size only) and the file was
    wrong at 3x3 (relative error 1.67); the rule now comes from the layer."""
    model = torch.nn.Sequential(RFConv2d(3, 8, 3, padding=2, dilation=2, count_mode="rfconv")).eval()
    report = export_onnx(model, torch.randn(1, 3, 64, 64), tmp_path / "r1.onnx", dynamic_hw=True, mode="plugin")
    (spec,) = _plugin_specs(report.path)
    assert spec.count_mode == "rfconv"
    session = inference_session(report.path)
    for hw in ((3, 3), (3, 9), (4, 5), (64, 64)):
        x = torch.randn(1, 3, *hw)
        (values,) = session.run(None, {"input": x.numpy()})
        assert rel_err(values, torch_out(model, x)) <= 1e-5, hw


@pytest.mark.slow
def test_dilated_resnest50_plugin_dynamic_hw_right_at_a_smaller_size(tmp_path):
    """RF-ResNeSt-50 with dilation (official counting through the rfconv shim), exported from 64x64
    in plugin mode with dynamic H/W: right at 40x40, where the late maps are small enough for the
    counting rules to differ (relative error 1.22 when the node's rule was matched at 64x64)."""
    pytest.importorskip("resnest")
    from exporter.model.compat import install_rfconv_shim

    install_rfconv_shim()
    from resnest.torch import resnest50

    torch.manual_seed(0)
    model = resnest50(pretrained=False, rectified_conv=True, dilated=True).eval()
    report = export_onnx(model, torch.randn(1, 3, 64, 64), tmp_path / "rs50.onnx", mode="plugin", dynamic_hw=True)
    x = torch.randn(1, 3, 40, 40)
    (values,) = inference_session(report.path).run(None, {"input": x.numpy()})
    assert rel_err(values, torch_out(model, x)) <= 1e-4
