"""export_onnx on a small rectified CNN: parity with PyTorch, the graph contract, fp16, dynamic H/W.

Exports are shared per module (each takes a couple of seconds). Reference values come from
PyTorch (eager, which uses rectify_scale's cached tables) and, for one file, from ONNX's own
reference evaluator; the scale constants are checked against rectify_scale computed from each
layer's geometry and the input size recorded with forward hooks.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import pytest
import torch

from exporter import rectify_scale
from exporter.onnx.export import export_onnx
from exporter.onnx.passes.rectified import find_rectified_convs
from tests.helpers.export_models import ort_session, rectified_layers, rel_err, small_rf_net, torch_out

SIZE = (37, 30)  # odd height: the stride-2 layers round
SCALE_COMPUTATION_OPS = {"AveragePool", "ConstantOfShape", "Reciprocal", "Expand", "Shape", "Range",
                         "Floor", "Gather", "Concat", "Reshape", "Squeeze", "Cast", "CastLike", "Div"}


@pytest.fixture(scope="module")
def model():
    return small_rf_net()


@pytest.fixture(scope="module")
def static_export(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("static") / "small.onnx"
    report = export_onnx(model, torch.randn(1, 3, *SIZE), path)
    return path, report


@pytest.fixture(scope="module")
def static_graph(static_export):
    return gs.import_onnx(onnx.load(static_export[0]))


@pytest.fixture(scope="module")
def dynamic_hw_export(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("dynamic") / "small_dyn.onnx"
    report = export_onnx(model, torch.randn(1, 3, *SIZE), path, dynamic_hw=True)
    return path, report


def test_static_export_matches_pytorch_at_two_batch_sizes(model, static_export):
    session = ort_session(static_export[0])
    for batch in (1, 3):
        x = torch.randn(batch, 3, *SIZE)
        out = session.run(None, {"input": x.numpy()})[0]
        assert rel_err(out, torch_out(model, x)) <= 1e-5


def test_onnx_reference_evaluator_agrees(model, static_export):
    from onnx.reference import ReferenceEvaluator

    x = torch.randn(2, 3, *SIZE)
    out = ReferenceEvaluator(str(static_export[0])).run(None, {"input": x.numpy()})[0]
    assert rel_err(out, torch_out(model, x)) <= 1e-5


def test_one_scale_mul_per_rectified_conv_with_rectify_scale_values(model, static_graph):
    layers = rectified_layers(model, torch.randn(1, 3, *SIZE))
    matches = find_rectified_convs(static_graph)
    assert len(matches) == len(layers) == 7
    assert sum(n.op == "Mul" for n in static_graph.nodes) == len(layers)
    for match, (layer, in_hw) in zip(matches, layers, strict=True):
        expected = rectify_scale(in_hw, layer.kernel_size, layer.stride, layer.padding, layer.dilation,
                                 layer.average, layer.count_mode, dtype=torch.float64)
        scale = match.scale
        assert isinstance(scale, gs.Constant) and scale.values.dtype == np.float32
        assert scale.values.shape == (1, 1) + tuple(expected.shape)
        np.testing.assert_allclose(scale.values[0, 0], expected.numpy(), rtol=1e-7)
        assert match.conv.attrs["strides"] == list(layer.stride)


def test_distinct_scale_initializers_equal_distinct_geometries(model, static_graph):
    layers = rectified_layers(model, torch.randn(1, 3, *SIZE))
    geometries = {(hw, m.kernel_size, m.stride, m.padding, m.dilation, m.average, m.count_mode)
                  for m, hw in layers}
    scales = {id(m.scale) for m in find_rectified_convs(static_graph)}
    assert len(geometries) == len(scales) == 6  # the first two layers share one
    names = [t.name for t in static_graph.tensors().values() if t.name.startswith("rectify_scale_")]
    assert len(names) == 6


def test_batchnorm_folded_through_the_scale_and_into_plain_convs(static_graph):
    ops = Counter(n.op for n in static_graph.nodes)
    assert ops["BatchNormalization"] == 0
    assert ops["Conv"] == 8
    # six BatchNorms follow a rectified conv: Conv -> Mul -> Add(c[1, C, 1, 1]); the plain conv's
    # BatchNorm went into its bias
    adds = [m.mul.outputs[0].outputs[0] for m in find_rectified_convs(static_graph)
            if m.mul.outputs[0].outputs and m.mul.outputs[0].outputs[0].op == "Add"]
    assert len(adds) == 5
    for add in adds:
        shift = next(t for t in add.inputs if isinstance(t, gs.Constant))
        assert shift.values.shape == (1, 16, 1, 1)
    plain = [n for n in static_graph.nodes if n.op == "Conv" and n.inputs[1].shape[2:] == [1, 1]]
    assert len(plain) == 1 and len(plain[0].inputs) == 3  # the BatchNorm's shift is now its bias


def test_no_scale_computation_left_and_report(model, static_export, static_graph):
    path, report = static_export
    out_shape = list(torch_out(model, torch.randn(1, 3, *SIZE)).shape[1:])
    assert not {n.op for n in static_graph.nodes} & SCALE_COMPUTATION_OPS
    assert report.rectified_convs == 7 and report.distinct_scales == 6 and report.batchnorms_left == 0
    assert report.file_bytes == path.stat().st_size
    assert report.input_shape == ["batch", 3, *SIZE] and report.output_shapes == [["batch", *out_shape]]
    assert [o.name for o in static_graph.outputs] == ["output"]
    assert sum(report.nodes_by_type.values()) == len(static_graph.nodes)
    assert "rectified convs: 7" in report.summary()
    onnx.checker.check_model(str(path), full_check=True)


@pytest.mark.parametrize("size", [(37, 30), (64, 64), (23, 41)])
def test_dynamic_hw_is_correct_at_any_size_from_one_file(model, dynamic_hw_export, size):
    session = ort_session(dynamic_hw_export[0])
    x = torch.randn(2, 3, *size)
    out = session.run(None, {"input": x.numpy()})[0]
    assert rel_err(out, torch_out(model, x)) <= 1e-5


def test_dynamic_hw_keeps_the_scale_computed_in_the_graph(dynamic_hw_export):
    path, report = dynamic_hw_export
    graph = gs.import_onnx(onnx.load(path))
    matches = find_rectified_convs(graph)
    assert len(matches) == report.rectified_convs == 7
    assert all(not isinstance(m.scale, gs.Constant) for m in matches)
    assert report.input_shape == ["batch", 3, "height", "width"]
    assert {n.op for n in graph.nodes}.isdisjoint({"Range", "Clip", "AveragePool", "BatchNormalization"})


def test_fp16_static_batch_export_within_1e_2_of_fp32_pytorch(model, tmp_path):
    path = tmp_path / "half.onnx"
    report = export_onnx(model, torch.randn(2, 3, *SIZE), path, precision="fp16", dynamic_batch=False)
    assert report.input_shape == [2, 3, *SIZE]
    proto = onnx.load(path)
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert proto.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert {i.data_type for i in proto.graph.initializer} == {onnx.TensorProto.FLOAT16}
    graph = gs.import_onnx(proto)
    assert all(m.scale.values.dtype == np.float16 for m in find_rectified_convs(graph))
    assert report.precision == "fp16" and report.rectified_convs == 7
    x = torch.randn(2, 3, *SIZE)
    out = ort_session(path).run(None, {"input": x.numpy()})[0]
    assert out.dtype == np.float32
    assert rel_err(out, torch_out(model, x)) <= 1e-2


def test_fp16_dynamic_hw_with_fp16_io(model, tmp_path):
    path = tmp_path / "half_dyn.onnx"
    export_onnx(model, torch.randn(1, 3, *SIZE), path, precision="fp16", dynamic_hw=True, keep_io_types=False)
    x = torch.randn(1, 3, 29, 33)
    out = ort_session(path).run(None, {"input": x.numpy().astype(np.float16)})[0]
    assert out.dtype == np.float16
    assert rel_err(out, torch_out(model, x)) <= 1e-2


def test_without_bn_folding_the_batchnorms_stay_and_training_mode_is_restored(tmp_path):
    model = small_rf_net().train()
    path = tmp_path / "bn.onnx"
    report = export_onnx(model, torch.randn(1, 3, *SIZE), path, fold_bn=False)
    assert model.training
    # the five after rectified convs stay; the final onnxscript clean-up still fuses the plain
    # Conv -> BatchNormalization pair
    assert report.batchnorms_left == 5 and report.rectified_convs == 7
    x = torch.randn(1, 3, *SIZE)
    assert rel_err(ort_session(path).run(None, {"input": x.numpy()})[0], torch_out(model.eval(), x)) <= 1e-5


def test_compact_scales_store_row_and_column_factors(model, static_export, tmp_path):
    path = tmp_path / "compact.onnx"
    report = export_onnx(model, torch.randn(1, 3, *SIZE), path, compact_scales=True)
    assert report.rectified_convs == 7 and report.distinct_scales == 6
    graph = gs.import_onnx(onnx.load(path))
    for match in find_rectified_convs(graph):
        outer = match.scale.inputs[0]
        assert outer.op == "Mul" and all(isinstance(t, gs.Constant) for t in outer.inputs)
        assert sorted(t.values.shape.count(1) for t in outer.inputs) == [3, 3]  # [1, 1, Ho, 1] and [1, 1, 1, Wo]
    full = sum(t.values.size for t in static_graph_scales(static_export[0]))
    compact = sum(t.values.size for n in graph.nodes if n.name.endswith("_outer") for t in n.inputs)
    assert compact < full / 2
    x = torch.randn(2, 3, *SIZE)
    assert rel_err(ort_session(path).run(None, {"input": x.numpy()})[0], torch_out(model, x)) <= 1e-5
    with pytest.raises(ValueError, match="compact_scales needs scale constants"):
        export_onnx(model, torch.randn(1, 3, *SIZE), path, compact_scales=True, dynamic_hw=True)


def static_graph_scales(path):
    graph = gs.import_onnx(onnx.load(path))
    return {id(m.scale): m.scale for m in find_rectified_convs(graph)}.values()
