"""Graph passes on hand-built graphs, and the traced factor against rectify_scale."""

from __future__ import annotations

import itertools

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import pytest
import torch

from exporter import rectify_scale
from exporter.model.scale import axes_from, traced_scale
from exporter.onnx.passes.castlike import resolve_castlike
from exporter.onnx.passes.dedupe import dedupe_scales
from exporter.onnx.passes.fold_bn import fold_batchnorm
from exporter.onnx.passes.fp16 import convert_to_fp16
from exporter.onnx.passes.rectified import find_rectified_convs
from exporter.onnx.passes.scale_layout import canonical_scale_shapes

RNG = np.random.default_rng(0)


def test_traced_scale_equals_rectify_scale_for_every_small_geometry():
    checked = 0
    for k, s, p, d, size, average, mode in itertools.product(
            [1, 2, 3, 5], [1, 2, 3], [0, 1, 2, 3], [1, 2, 3], [1, 6, 11], [False, True], ["exact", "rfconv"]):
        try:
            expected = rectify_scale((size, size + 3), k, s, p, d, average, mode)
        except ValueError:
            continue
        got = traced_scale(torch.zeros(1, 1, size, size + 3), axes_from(k, s, p, d), average, mode)
        assert got.shape == expected.shape, (k, s, p, d, size, average, mode)
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=0)
        checked += 1
    assert checked > 500


def _conv_graph(scale_values=None, bn=False, scale_first=False):
    """x[1, 4, 6, 7] -> Conv(3x3, pad 1) [-> Mul(scale)] [-> BatchNormalization] -> y."""
    x = gs.Variable("x", np.float32, [1, 4, 6, 7])
    w = gs.Constant("w", RNG.standard_normal((5, 4, 3, 3)).astype(np.float32))
    b = gs.Constant("b", RNG.standard_normal(5).astype(np.float32))
    conv_out = gs.Variable("conv_out", np.float32, [1, 5, 6, 7])
    nodes = [gs.Node("Conv", "conv", attrs={"pads": [1, 1, 1, 1]}, inputs=[x, w, b], outputs=[conv_out])]
    last = conv_out
    if scale_values is not None:
        scale = gs.Constant("scale", scale_values.astype(np.float32))
        mul_out = gs.Variable("mul_out", np.float32, [1, 5, 6, 7])
        inputs = [scale, last] if scale_first else [last, scale]
        nodes.append(gs.Node("Mul", "mul", inputs=inputs, outputs=[mul_out]))
        last = mul_out
    if bn:
        params = [RNG.uniform(0.5, 1.5, 5), RNG.normal(0, 0.3, 5), RNG.normal(0, 0.5, 5), RNG.uniform(0.5, 2, 5)]
        consts = [gs.Constant(n, v.astype(np.float32)) for n, v in zip(("g", "be", "m", "v"), params, strict=True)]
        bn_out = gs.Variable("bn_out", np.float32, [1, 5, 6, 7])
        nodes.append(gs.Node("BatchNormalization", "bn", attrs={"epsilon": 1e-5}, inputs=[last, *consts],
                             outputs=[bn_out]))
        last = bn_out
    return gs.Graph(nodes=nodes, inputs=[x], outputs=[last], opset=18)


def _run(graph):
    import onnxruntime as ort

    model = gs.export_onnx(graph.copy(), ir_version=10)  # onnxruntime-gpu 1.31 reads IR <= 13
    onnx.checker.check_model(model, full_check=True)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.linspace(-1, 1, 4 * 6 * 7, dtype=np.float32).reshape(1, 4, 6, 7)
    return session.run(None, {"x": x})[0]


SPATIAL = rectify_scale((6, 7), 3, padding=1).numpy()


@pytest.mark.parametrize("shape, matched", [
    ((6, 7), True), ((1, 1, 6, 7), True), ((1, 6, 7), True), ((1, 5, 1, 1), False), ((5, 1, 1), False),
])
def test_find_rectified_convs_takes_spatial_factors_only(shape, matched):
    values = np.broadcast_to(SPATIAL, shape) if matched else np.full(shape, 2.0)
    graph = _conv_graph(np.ascontiguousarray(values))
    assert len(find_rectified_convs(graph)) == int(matched)


def test_a_mul_by_data_is_not_rectification():
    graph = _conv_graph()
    conv_out = graph.outputs[0]
    out = gs.Variable("sq", np.float32, [1, 5, 6, 7])
    graph.nodes.append(gs.Node("Mul", inputs=[conv_out, conv_out], outputs=[out]))
    graph.outputs = [out]
    assert find_rectified_convs(graph) == []


@pytest.mark.parametrize("scale_first", [False, True])
def test_canonical_shape_and_bn_folding_through_the_scale_keep_the_numbers(scale_first):
    graph = _conv_graph(SPATIAL, bn=True, scale_first=scale_first)
    before = _run(graph)
    assert canonical_scale_shapes(graph) == 1
    counts = fold_batchnorm(graph)
    assert (counts.through_scale, counts.into_conv, counts.left) == (1, 0, 0)
    assert [n.op for n in graph.nodes] == ["Conv", "Mul", "Add"]
    (match,) = find_rectified_convs(graph)
    assert match.scale.values.shape == (1, 1, 6, 7)
    np.testing.assert_allclose(_run(graph), before, rtol=1e-5, atol=1e-5)


def test_bn_folding_into_a_plain_conv():
    graph = _conv_graph(bn=True)
    before = _run(graph)
    counts = fold_batchnorm(graph)
    assert (counts.through_scale, counts.into_conv) == (0, 1)
    assert [n.op for n in graph.nodes] == ["Conv"] and graph.outputs[0].name == "bn_out"
    np.testing.assert_allclose(_run(graph), before, rtol=1e-5, atol=1e-5)


def test_dedupe_shares_equal_scales_only():
    graph = _conv_graph(SPATIAL)
    for i, values in enumerate([SPATIAL, SPATIAL * 2, SPATIAL.copy()]):
        conv = graph.nodes[0]
        out = gs.Variable(f"o{i}", np.float32, [1, 5, 6, 7])
        y = gs.Variable(f"y{i}", np.float32, [1, 5, 6, 7])
        graph.nodes += [gs.Node("Conv", f"c{i}", attrs={"pads": [1, 1, 1, 1]}, inputs=list(conv.inputs), outputs=[out]),
                        gs.Node("Mul", inputs=[out, gs.Constant(f"s{i}", values)], outputs=[y])]
        graph.outputs.append(y)
    assert dedupe_scales(graph) == 2
    names = [m.scale.name for m in find_rectified_convs(graph)]
    assert names == ["rectify_scale_0_6x7", "rectify_scale_0_6x7", "rectify_scale_1_6x7", "rectify_scale_0_6x7"]


def test_castlike_becomes_cast():
    x = gs.Variable("x", np.float32, [2])
    zero = gs.Constant("zero", np.array(0, dtype=np.int64))
    out = gs.Variable("out", np.float32, [])
    graph = gs.Graph(nodes=[gs.Node("CastLike", inputs=[zero, x], outputs=[out])], inputs=[x], outputs=[out])
    assert resolve_castlike(graph) == 1
    node = graph.nodes[0]
    assert node.op == "Cast" and node.attrs == {"to": onnx.TensorProto.FLOAT} and len(node.inputs) == 1


def test_fp16_rejects_weights_beyond_its_range():
    graph = _conv_graph(SPATIAL * 1e6)
    with pytest.raises(ValueError, match="beyond the float16 range"):
        convert_to_fp16(graph)
