"""exporter.onnx.passes.plugin_mode on hand-built contract graphs: rewrite, mode inference, fusion, refusals.

Graphs come from tests/contract_graphs.py (the export contract written by hand from RFConv2d +
BatchNorm layers); plugin-mode graphs run on ONNX Runtime through plugins.ort_reference and are
compared with the PyTorch modules.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from exporter.onnx.passes import plugin_mode
from plugins.ort_reference import inference_session
from plugins.spec import PLUGIN_DOMAIN, RectifySpec
from tests.helpers.contract_graphs import contract_model, make_layer, torch_forward

INPUT = (2, 3, 20, 18)


def _layers():
    return [
        make_layer(3, 8, 3, padding=1, seed=1),                                  # Conv+BN+ReLU -> bias + relu
        make_layer(8, 8, 3, stride=2, padding=1, relu=False, bias=False, seed=2),  # bias, no relu
        make_layer(8, 6, 5, padding=4, dilation=2, count_mode="rfconv", bn=False, relu=True, seed=3),
        make_layer(6, 4, 3, padding=1, average_mode=True, bn=False, relu=False, seed=4),
        make_layer(4, 4, (3, 5), stride=(1, 2), padding=(1, 2), bn=True, relu=True, seed=5),
    ]


def _plugin_model(model: onnx.ModelProto) -> onnx.ModelProto:
    return gs.export_onnx(plugin_mode.apply(gs.import_onnx(model)))


def _specs(model: onnx.ModelProto) -> list[tuple[RectifySpec, int]]:
    """(spec, number of inputs) of each RFConvRectify node, in graph order."""
    return [(RectifySpec.from_node_attributes({a.name: helper.get_attribute_value(a) for a in n.attribute}),
             len(n.input)) for n in model.graph.node if n.op_type == "RFConvRectify"]


def test_rewrites_every_rectified_conv_and_infers_modes():
    model = _plugin_model(contract_model(_layers(), INPUT))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("RFConvRectify") == 5 and "Mul" not in ops and "Add" not in ops and "Relu" not in ops
    assert all(n.domain == PLUGIN_DOMAIN for n in model.graph.node if n.op_type == "RFConvRectify")
    assert {o.domain: o.version for o in model.opset_import}[PLUGIN_DOMAIN] == 1
    specs = _specs(model)
    assert specs[0] == (RectifySpec((3, 3), padding=(1, 1), activation="relu"), 3)
    assert specs[1] == (RectifySpec((3, 3), stride=(2, 2), padding=(1, 1)), 3)
    # k=5, dilation 2: the official counting differs from exact counting here, so it is recognised
    assert specs[2] == (RectifySpec((5, 5), padding=(4, 4), dilation=(2, 2), count_mode="rfconv",
                                    activation="relu"), 2)
    assert specs[3] == (RectifySpec((3, 3), padding=(1, 1), average_mode=True), 2)
    assert specs[4] == (RectifySpec((3, 5), stride=(1, 2), padding=(1, 2), activation="relu"), 3)
    assert not [i for i in model.graph.initializer if i.name.startswith("scale")]  # no factor constants left
    onnx.checker.check_model(model, full_check=True)


@pytest.mark.parametrize("dtype", [TensorProto.FLOAT, TensorProto.FLOAT16])
def test_plugin_graph_on_onnxruntime_matches_pytorch(dtype):
    layers = _layers()
    x = torch.randn(INPUT)
    expected = torch_forward(layers, x)
    static = contract_model(layers, INPUT, dtype)
    np_x = x.numpy().astype(np.float16 if dtype == TensorProto.FLOAT16 else np.float32)
    (static_out,) = ort.InferenceSession(static.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"input": np_x})
    (plugin_out,) = inference_session(_plugin_model(static)).run(None, {"input": np_x})
    tol = 3e-2 if dtype == TensorProto.FLOAT16 else 1e-5
    torch.testing.assert_close(torch.from_numpy(static_out.astype(np.float32)), expected, rtol=tol, atol=tol)
    torch.testing.assert_close(torch.from_numpy(plugin_out.astype(np.float32)), expected, rtol=tol, atol=tol)
    if dtype == TensorProto.FLOAT:  # same fp32 ops in both graphs, only the node boundaries move
        np.testing.assert_allclose(plugin_out, static_out, rtol=1e-6, atol=1e-6)


def test_identical_counting_rules_resolve_to_exact():
    # a 3x3 dilated kernel counts the same under both rules: the layer said rfconv, the graph cannot tell
    layer = make_layer(3, 4, 3, padding=2, dilation=2, count_mode="rfconv", bn=False, relu=False)
    (spec, _), = _specs(_plugin_model(contract_model([layer], (1, 3, 11, 11))))
    assert spec.count_mode == "exact" and spec.dilation == (2, 2)


def _graph_with_scale(scale: np.ndarray, in_shape=(1, 2, 6, 6), pads=(1, 1, 1, 1)) -> gs.Graph:
    x = gs.Variable("x", np.float32, in_shape)
    y = gs.Variable("y", np.float32, None)
    z = gs.Variable("z", np.float32, None)
    w = gs.Constant("w", np.ones((2, 2, 3, 3), np.float32))
    conv = gs.Node("Conv", "conv", attrs={"kernel_shape": [3, 3], "pads": list(pads)}, inputs=[x, w], outputs=[y])
    mul = gs.Node("Mul", "mul", inputs=[y, gs.Constant("s", scale.astype(np.float32))], outputs=[z])
    return gs.Graph(nodes=[conv, mul], inputs=[x], outputs=[z], opset=18)


def test_keeps_a_mul_whose_constant_matches_no_factor():
    """A spatial constant that is no rectification factor (a learned mask) is no rectified conv: it
    used to make plugin mode refuse the whole model (issue 16); now it is kept, and named."""
    scale = rectify_scale_np((6, 6)) * 1.01
    with pytest.warns(UserWarning, match=r"kept 1 Conv -> Mul\(spatial constant\) as they are \(conv\)"):
        graph = plugin_mode.apply(_graph_with_scale(scale.reshape(1, 1, 6, 6)))
    assert [n.op for n in graph.nodes] == ["Conv", "Mul"]


def test_refuses_dynamic_height_and_width():
    graph = _graph_with_scale(rectify_scale_np((6, 6)).reshape(1, 1, 6, 6), in_shape=(1, 2, "H", "W"))
    with pytest.raises(ValueError, match="export with static H/W"):
        plugin_mode.apply(graph)


def test_refuses_asymmetric_padding():
    graph = _graph_with_scale(rectify_scale_np((6, 6)).reshape(1, 1, 6, 6), pads=(1, 1, 0, 1))
    with pytest.raises(ValueError, match=r"asymmetric pads \[1, 1, 0, 1\]"):
        plugin_mode.apply(graph)


def rectify_scale_np(in_hw):
    return RectifySpec((3, 3), padding=(1, 1)).scale(in_hw).numpy()


def test_fuses_only_what_is_safe():
    """A spatial Add is not a bias; a Relu whose input is also a graph output is not fused."""
    graph = _graph_with_scale(rectify_scale_np((6, 6)).reshape(1, 1, 6, 6))
    z = graph.outputs[0]
    spatial = gs.Constant("spatial", np.ones((1, 1, 6, 6), np.float32))
    a = gs.Variable("a", np.float32, None)
    r = gs.Variable("r", np.float32, None)
    graph.nodes += [gs.Node("Add", "add", inputs=[z, spatial], outputs=[a]), gs.Node("Relu", "relu", inputs=[a],
                                                                                    outputs=[r])]
    graph.outputs = [r, z]  # z (the Mul output) is read outside: the plugin must still produce it
    model = gs.export_onnx(plugin_mode.apply(graph))
    assert [n.op_type for n in model.graph.node] == ["Conv", "RFConvRectify", "Add", "Relu"]
    (spec, n_inputs), = _specs(model)
    assert spec.activation == "none" and n_inputs == 2


def test_leaves_non_rectified_patterns_alone():
    graph = _graph_with_scale(np.full((1, 2, 1, 1), 2.0, np.float32))  # per-channel Mul: not rectification
    model = gs.export_onnx(plugin_mode.apply(graph))
    assert [n.op_type for n in model.graph.node] == ["Conv", "Mul"]


def test_fp16_scale_constant_is_matched():
    layer = make_layer(3, 4, 3, stride=2, padding=1, bn=True, relu=True)
    model = _plugin_model(contract_model([layer], (1, 3, 13, 9), TensorProto.FLOAT16))
    (spec, n_inputs), = _specs(model)
    assert spec == RectifySpec((3, 3), stride=(2, 2), padding=(1, 1), activation="relu") and n_inputs == 3
    bias = next(i for i in model.graph.initializer if i.name.startswith("shift"))
    assert numpy_helper.to_array(bias).dtype == np.float16


def _dilated_conv_graph() -> gs.Graph:
    x = gs.Variable("x", np.float32, (1, 2, 64, 64))
    y = gs.Variable("y", np.float32, None)
    w = gs.Constant("w", np.ones((2, 2, 3, 3), np.float32))
    conv = gs.Node("Conv", "conv", attrs={"kernel_shape": [3, 3], "pads": [2, 2, 2, 2], "dilations": [2, 2]},
                   inputs=[x, w], outputs=[y])
    return gs.Graph(nodes=[conv], inputs=[x], outputs=[y], opset=18)


def test_dynamic_factor_of_two_rules_that_differ_elsewhere_is_refused_without_a_declaration():
    """At 64x64 a dilated 3x3's official and exact factors are equal, but not on a 3-pixel map: a file
    that takes other sizes cannot pick one from the graph (it used to pick exact, silently wrong)."""
    (conv,) = _dilated_conv_graph().nodes
    factor = RectifySpec((3, 3), padding=(2, 2), dilation=(2, 2), count_mode="rfconv").scale((64, 64)).numpy()
    assert plugin_mode.infer_spec(conv, factor, (64, 64)).count_mode == "exact"  # one size: either is right
    with pytest.raises(ValueError, match="differ at other input sizes"):
        plugin_mode.infer_spec(conv, factor, (64, 64), dynamic=True)
    spec = plugin_mode.infer_spec(conv, factor, (64, 64), declared=(False, "rfconv"), dynamic=True)
    assert spec.count_mode == "rfconv"


def test_declared_rule_must_give_the_graphs_factor():
    (conv,) = _dilated_conv_graph().nodes
    factor = RectifySpec((3, 3), padding=(2, 2), dilation=(2, 2)).scale((64, 64)).numpy()
    with pytest.raises(ValueError, match="not the factor its layer declares"):
        plugin_mode.infer_spec(conv, factor, (64, 64), declared=(True, "exact"))
