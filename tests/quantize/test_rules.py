"""The Q/DQ rule check passes on every written file and fails on files that break each rule.

The broken files are real INT8 files (written by :func:`quantize_onnx`) with one thing edited.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import pytest

from exporter.onnx.passes.rectified import find_rectified_convs
from exporter.quantize.rules import RULES, check_qdq


def _graph(quantized) -> gs.Graph:
    return gs.import_onnx(onnx.load(str(quantized.int8)))


def _rules(graph: gs.Graph, activations: str = "int8") -> set[str]:
    return {v.rule for v in check_qdq(gs.export_onnx(graph), activations)}


def _activation_q(graph: gs.Graph) -> gs.Node:
    """The QuantizeLinear of the conv output feeding the first rectified conv's factor Mul."""
    return find_rectified_convs(graph)[0].qdq[0]


def test_written_file_follows_every_rule(quantized):
    assert check_qdq(onnx.load(str(quantized.int8))) == []
    assert quantized.report.violations == 0


def test_uint8_activations_break_int8_rule(quantized):
    graph = _graph(quantized)
    q = _activation_q(graph)
    dq = q.outputs[0].outputs[0]
    zero = gs.Constant("zp_u8", np.array(0, np.uint8))
    q.inputs[2] = dq.inputs[2] = zero
    q.outputs[0].dtype = np.uint8
    assert _rules(graph) == {"int8"}
    assert _rules(graph, activations="uint8") == set()  # the CPU variant allows it


def test_nonzero_zero_point_breaks_symmetric(quantized):
    graph = _graph(quantized)
    q = _activation_q(graph)
    zero = gs.Constant("zp_shifted", np.array(5, np.int8))
    q.inputs[2] = q.outputs[0].outputs[0].inputs[2] = zero
    assert _rules(graph) == {"symmetric"}


def _weight_dq(graph: gs.Graph) -> gs.Node:
    conv = find_rectified_convs(graph)[0].conv
    return conv.inputs[1].inputs[0]


def test_per_tensor_weight_breaks_per_channel(quantized):
    graph = _graph(quantized)
    dq = _weight_dq(graph)
    dq.inputs[1] = gs.Constant("w_scale_tensor", np.array(float(dq.inputs[1].values.max()), np.float32))
    dq.inputs[2] = gs.Constant("w_zp_tensor", np.array(0, np.int8))
    assert _rules(graph) == {"per-channel-weights"}


def test_wrong_weight_axis_breaks_per_channel(quantized):
    graph = _graph(quantized)
    _weight_dq(graph).attrs["axis"] = 1
    assert "per-channel-weights" in _rules(graph)


def test_per_channel_activation_breaks_per_tensor(quantized):
    graph = _graph(quantized)
    q = _activation_q(graph)
    dq = q.outputs[0].outputs[0]
    channels = find_rectified_convs(graph)[0].conv.inputs[1].inputs[0].inputs[0].shape[0]
    scale = gs.Constant("act_scale_channels", np.full(channels, float(q.inputs[1].values), np.float32))
    zero = gs.Constant("act_zp_channels", np.zeros(channels, np.int8))
    for node in (q, dq):
        node.inputs[1], node.inputs[2] = scale, zero
        node.attrs["axis"] = 1
    assert _rules(graph) == {"per-tensor-activations"}


def test_quantized_computed_factor_breaks_shape_paths(quantized):
    graph = _graph(quantized)
    match = find_rectified_convs(graph)[0]
    computed = gs.Variable("factor_computed", dtype=np.float32, shape=match.scale.shape)
    graph.nodes.append(gs.Node("Identity", "factor_identity", inputs=[match.scale], outputs=[computed]))
    scale = gs.Constant("factor_scale", np.array(0.05, np.float32))
    zero = gs.Constant("factor_zp", np.array(0, np.int8))
    quantized_t = gs.Variable("factor_q", dtype=np.int8)
    restored = gs.Variable("factor_dq", dtype=np.float32, shape=match.scale.shape)
    graph.nodes.append(gs.Node("QuantizeLinear", "factor_Q", inputs=[computed, scale, zero], outputs=[quantized_t]))
    graph.nodes.append(gs.Node("DequantizeLinear", "factor_DQ", inputs=[quantized_t, scale, zero], outputs=[restored]))
    match.mul.inputs[match.scale_index] = restored
    graph.toposort()
    assert {"shape-paths", "rectification"} <= _rules(graph)


def test_dequantized_value_in_a_shape_input_breaks_shape_paths(quantized):
    graph = _graph(quantized)
    dq = _activation_q(graph).outputs[0].outputs[0]
    shape = gs.Variable("shape_from_data", dtype=np.int64)
    graph.nodes.append(gs.Node("Cast", "cast_data_to_shape", attrs={"to": onnx.TensorProto.INT64},
                               inputs=[dq.outputs[0]], outputs=[shape]))
    flat = gs.Variable("reshaped", dtype=np.float32)
    graph.nodes.append(gs.Node("Reshape", "reshape_by_data", inputs=[dq.outputs[0], shape], outputs=[flat]))
    graph.outputs.append(flat)
    assert _rules(graph) == {"shape-paths"}


def test_q_without_dq_breaks_pairs(quantized):
    graph = _graph(quantized)
    q = _activation_q(graph)
    relu_out = gs.Variable("q_relu", dtype=np.int8)
    graph.nodes.append(gs.Node("Identity", "reads_int8", inputs=[q.outputs[0]], outputs=[relu_out]))
    graph.outputs.append(relu_out)
    assert _rules(graph) == {"pairs"}


def test_conv_output_left_float_breaks_conv_fusion(quantized):
    graph = _graph(quantized)
    rectified = {id(m.conv) for m in find_rectified_convs(graph)}
    conv = next(n for n in graph.nodes if n.op == "Conv" and id(n) not in rectified)
    q = conv.outputs[0].outputs[0]
    for dq in list(q.outputs[0].outputs):
        for consumer in list(dq.outputs[0].outputs):
            consumer.inputs[list(consumer.inputs).index(dq.outputs[0])] = conv.outputs[0]
    graph.cleanup().toposort()
    assert _rules(graph) == {"conv-fusion"}


def test_factor_mul_on_the_int8_conv_output_breaks_rectification(quantized):
    """The naive placement ``DQ -> Conv -> Mul -> Q``: ONNX Runtime cannot fuse the conv."""
    graph = _graph(quantized)
    match = find_rectified_convs(graph)[0]
    match.mul.inputs[1 - match.scale_index] = match.conv.outputs[0]
    graph.cleanup().toposort()
    assert _rules(graph) == {"rectification", "conv-fusion"}


def test_int8_factor_constant_breaks_rectification(quantized):
    """What a quantizer does that treats the factor as an operand: int8 constant + DQ."""
    graph = _graph(quantized)
    match = find_rectified_convs(graph)[0]
    values = match.scale.values
    step = float(values.max()) / 127
    stored = gs.Constant("factor_int8", np.round(values / step).astype(np.int8))
    restored = gs.Variable("factor_restored", dtype=np.float32, shape=values.shape)
    graph.nodes.append(gs.Node("DequantizeLinear", "factor_dequantize",
                               inputs=[stored, gs.Constant("fs", np.array(step, np.float32)),
                                       gs.Constant("fz", np.array(0, np.int8))], outputs=[restored]))
    match.mul.inputs[match.scale_index] = restored
    graph.cleanup().toposort()
    assert _rules(graph) == {"rectification"}


def test_every_rule_has_a_breaking_test():
    tested = {"int8", "symmetric", "per-channel-weights", "per-tensor-activations", "shape-paths", "pairs",
              "conv-fusion", "rectification"}
    assert tested == set(RULES)


@pytest.mark.parametrize("activations", ["int8", "uint8"])
def test_rule_check_rejects_unknown_profile(quantized, activations):
    check_qdq(onnx.load(str(quantized.int8)), activations)
    with pytest.raises(ValueError, match="activations"):
        check_qdq(onnx.load(str(quantized.int8)), "int4")
