"""Per-layer comparison on a hand-built BN-folded graph (the static export contract).

The graph is written with ``onnx.helper`` straight from the static export contract
(``exporter.onnx.passes.rectified``), independently of the exporter: each ``RFConv2d -> BatchNorm2d -> ReLU`` becomes
``Conv(W' = g W, B' = g b) -> Mul(scale[1,1,Ho,Wo]) -> Add(c[1,C,1,1]) -> Relu`` with
``g = gamma / sqrt(var + eps)`` and ``c = beta - mean * g``. It carries no PyTorch metadata, so
layers are matched to modules by execution order.
"""

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from exporter import RFConv2d, rectify_scale
from exporter.comparison.compare import compare
from exporter.comparison.layerwise import find_rectified_layers, with_layer_outputs
from exporter.comparison.modules import _channel_gain, layer_taps
from exporter.model.registry import load_model
from tests.helpers.compare_models import DAMAGED_MODULE, INPUT_HW

MODEL_SPEC = "tests.helpers.compare_models:tiny_rf"


def _bn_gain_shift(bn: nn.BatchNorm2d):
    g = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().double().numpy()
    c = (bn.bias.detach().double() - bn.running_mean.double() * torch.from_numpy(g)).numpy()
    return g, c


def folded_graph(
    model: nn.Sequential, hw: int, damage_scale_of: str | None = None, plugin: bool = False
) -> onnx.ModelProto:
    """``model`` (RFConv2d/BN/ReLU triples, then pool, flatten, linear) as a folded static graph.

    With ``plugin`` each ``Mul -> Add -> Relu`` is one ``RFConvRectify`` node fusing the BN shift
    and the ReLU, as in a plugin-mode export (trt_plugin_src/README.md).
    """
    nodes, inits, x, size = [], [], "input", (hw, hw)
    mods = list(model.named_children())

    def const(name, array):
        inits.append(numpy_helper.from_array(np.asarray(array, dtype=np.float32), name))
        return name

    for i in range(0, len(mods) - 3, 3):
        (name, conv), (_, bn) = mods[i], mods[i + 1]
        g, c = _bn_gain_shift(bn)
        weight = conv.weight.detach().double().numpy() * g[:, None, None, None]
        bias = conv.bias.detach().double().numpy() * g
        scale = rectify_scale(size, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                              dtype=torch.float64).numpy()
        if name == damage_scale_of:
            scale[0, 0] *= 1.2
        size = scale.shape
        if plugin:
            nodes += [
                helper.make_node("Conv", [x, const(f"w{name}", weight), const(f"b{name}", bias)],
                                 [f"conv{name}"], name=f"Conv_{name}", kernel_shape=list(conv.kernel_size),
                                 strides=list(conv.stride), pads=list(conv.padding) * 2),
                helper.make_node("RFConvRectify", [f"conv{name}", x, const(f"shift{name}", c.reshape(1, -1, 1, 1))],
                                 [f"relu{name}"], name=f"Rectify_{name}", domain="rfconv",
                                 kernel=list(conv.kernel_size), stride=list(conv.stride),
                                 padding=list(conv.padding), dilation=list(conv.dilation), average_mode=0,
                                 count_mode="exact", activation="relu", plugin_namespace="rfconv",
                                 plugin_version="1"),
            ]
            x = f"relu{name}"
            continue
        nodes += [
            helper.make_node("Conv", [x, const(f"w{name}", weight), const(f"b{name}", bias)], [f"conv{name}"],
                             name=f"Conv_{name}", kernel_shape=list(conv.kernel_size),
                             strides=list(conv.stride), pads=list(conv.padding) * 2),
            helper.make_node("Mul", [f"conv{name}", const(f"scale{name}", scale[None, None])],
                             [f"rect{name}"], name=f"Mul_{name}"),
            helper.make_node("Add", [f"rect{name}", const(f"shift{name}", c.reshape(1, -1, 1, 1))],
                             [f"bn{name}"], name=f"Add_{name}"),
            helper.make_node("Relu", [f"bn{name}"], [f"relu{name}"], name=f"Relu_{name}"),
        ]
        x = f"relu{name}"
    linear = mods[-1][1]
    nodes += [
        helper.make_node("GlobalAveragePool", [x], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("Gemm", ["flat", const("fc_w", linear.weight.detach()), const("fc_b", linear.bias.detach())],
                         ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes, "folded",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, hw, hw])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", linear.out_features])],
        inits,
    )
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid("rfconv", 1)] if plugin else [])
    model_proto = helper.make_model(graph, ir_version=10, opset_imports=opsets)
    if not plugin:  # the checker cannot infer shapes through a custom op
        onnx.checker.check_model(model_proto, full_check=True)
    return model_proto


@pytest.fixture(scope="module")
def tiny_model():
    return load_model(MODEL_SPEC)


@pytest.fixture(scope="module")
def folded(tiny_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("folded") / "folded.onnx"
    onnx.save(folded_graph(tiny_model, INPUT_HW), str(path))
    return path


def test_finds_each_rectified_conv_of_the_contract(folded):
    layers = find_rectified_layers(onnx.load(str(folded)))
    assert [(layer.conv, layer.node, layer.scale, layer.weight, layer.tensor) for layer in layers] == [
        (f"Conv_{n}", f"Mul_{n}", f"scale{n}", f"w{n}", f"rect{n}") for n in ("0", "3", "6")]
    assert all(layer.module is None and layer.activation == "none" for layer in layers)


def test_channel_gain_recovers_the_folded_batchnorm(tiny_model):
    conv, bn = tiny_model[3], tiny_model[4]
    g, _ = _bn_gain_shift(bn)
    w, b = conv.weight.detach().numpy(), conv.bias.detach().numpy()
    folded_w, folded_b = (w * g[:, None, None, None]).astype(np.float32), (b * g).astype(np.float32)
    np.testing.assert_allclose(_channel_gain([folded_w, folded_b], [w, b]), g, rtol=1e-6)
    np.testing.assert_array_equal(_channel_gain([w], [w]), np.ones(w.shape[0]))


def test_taps_reproduce_the_onnx_layer_tensors(folded, tiny_model):
    """Hooked RFConv2d outputs, rescaled by the recovered gain, equal ORT's Mul outputs."""
    import onnxruntime

    model = onnx.load(str(folded))
    layers = find_rectified_layers(model)
    x = torch.randn(2, 3, INPUT_HW, INPUT_HW)
    taps = [ref.tap for ref in layer_taps(layers, model, tiny_model, [x])]
    assert [t.module for t in taps] == ["0", "3", "6"]  # by execution order: no metadata here
    sess = onnxruntime.InferenceSession(with_layer_outputs(model, layers).SerializeToString())
    ort_out = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"input": x.numpy()}), strict=True))
    captured = {}

    def capture(tap):
        def hook(_module, _inputs, out):  # returns None: a forward hook's return value replaces the output
            captured[tap.output_name] = tap.transform(out)
        return hook

    modules = dict(tiny_model.named_modules())
    hooks = [modules[tap.module].register_forward_hook(capture(tap)) for tap in taps]
    with torch.no_grad():
        tiny_model(x)
    for h in hooks:
        h.remove()
    for layer in layers:
        np.testing.assert_allclose(captured[layer.tensor].numpy(), ort_out[layer.tensor], rtol=1e-4, atol=1e-5)


def test_folded_graph_matches_pytorch(folded, tiny_model):
    report = compare(folded, tiny_model, backends=["torch", "ort-cpu", "onnx-ref"], batch_size=2)
    assert report.passed, report.format_table()


def test_damage_in_a_folded_graph_is_located(tiny_model, tmp_path):
    path = tmp_path / "damaged.onnx"
    onnx.save(folded_graph(tiny_model, INPUT_HW, damage_scale_of=DAMAGED_MODULE), str(path))
    report = compare(path, tiny_model, backends=["torch", "ort-cpu"])
    assert not report.passed
    (divergence,) = report.per_layer.first_divergence
    assert divergence.layer["torch_module"] == DAMAGED_MODULE and divergence.layer["scale"] == "scale3"
    assert divergence.stats.max_rel == pytest.approx(0.2, rel=1e-3)
    assert divergence.stats.interior_max_abs < 1e-5 < divergence.stats.ring_max_abs  # a border element
    ort = [pair for pair in report.per_layer.pairs if pair.backend == "ort-cpu"]
    assert ort[0].outputs[0].passed  # the layer before it is intact


def test_layer_count_mismatch_is_explained(folded, tmp_path):
    other = nn.Sequential(RFConv2d(3, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * INPUT_HW * INPUT_HW, 10))
    report = compare(folded, other.eval(), backends=["torch", "ort-cpu"])
    assert not report.passed
    assert report.per_layer.status.startswith("cannot match ONNX layers to PyTorch modules")
    assert "3 rectified conv(s) but the PyTorch model has 1" in report.per_layer.status


def test_plugin_nodes_are_layers_and_their_taps_fuse_bias_and_relu(tiny_model, tmp_path):
    """A plugin layer's tap is ReLU(BN(RFConv2d(x))): exactly what PyTorch's own ReLU module outputs."""
    model = folded_graph(tiny_model, INPUT_HW, plugin=True)
    layers = find_rectified_layers(model)
    assert [(layer.node, layer.fused_bias, layer.activation, layer.scale) for layer in layers] == [
        (f"Rectify_{n}", f"shift{n}", "relu", None) for n in ("0", "3", "6")]
    x = torch.randn(2, 3, INPUT_HW, INPUT_HW)
    references = layer_taps(layers, model, tiny_model, [x])
    assert [ref.shift_source for ref in references] == [f"PyTorch BatchNorm '{n}'" for n in ("1", "4", "7")]
    taps = [ref.tap for ref in references]
    with torch.no_grad():
        conv_out = tiny_model[3](tiny_model[:3](x))
        relu_out = tiny_model[3:6](tiny_model[:3](x))
    torch.testing.assert_close(taps[1].transform(conv_out), relu_out, rtol=1e-5, atol=1e-5)

    path = tmp_path / "plugin.onnx"
    onnx.save(model, str(path))
    report = compare(path, tiny_model, backends=["torch", "ort-cpu", "onnx-ref"])
    assert report.passed, report.format_table()
    assert all("RFConvRectify by the plugin's Python reference" in b.detail for b in report.backends
               if b.name in ("ort-cpu", "onnx-ref"))


def test_other_custom_ops_are_an_error_for_named_backends_or_skipped_with_the_reason(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Frobnicate", ["x"], ["y"], domain="acme")], "custom",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
    )
    path = tmp_path / "custom.onnx"
    onnx.save(helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 17),
                                                      helper.make_opsetid("acme", 1)]), str(path))
    with pytest.raises(ValueError, match=r"backend 'ort-cpu' cannot run here: the model has custom ops "
                                         r"\(acme.Frobnicate\).*; backend 'onnx-ref' cannot run here"):
        compare(path, backends=["ort-cpu", "onnx-ref"])
    report = compare(path, backends=["ort-cpu", "onnx-ref"], skip_unavailable=True)
    assert [b.status for b in report.backends] == ["skipped", "skipped"] and not report.passed
    assert all("custom ops (acme.Frobnicate)" in b.detail for b in report.backends)


class _TwoBranches(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = RFConv2d(3, 4, 3, padding=1)
        self.b = RFConv2d(3, 4, 5, padding=2)

    def forward(self, x):
        return self.a(x) + self.b(x)


def test_layers_are_matched_by_recorded_module_names(tmp_path):
    """torch.onnx.export records module paths; they win over execution order when nodes are reordered."""
    model = _TwoBranches().eval()
    path = tmp_path / "branches.onnx"
    torch.onnx.export(model, (torch.randn(1, 3, 8, 8),), str(path), dynamo=True)
    proto = onnx.load(str(path))
    # move branch b's nodes in front of branch a's: still topologically sorted
    nodes = list(proto.graph.node)
    branch_b = [n for n in nodes if any(p.key == "pkg.torch.onnx.name_scopes" and "'b'" in p.value
                                        for p in n.metadata_props)]
    assert branch_b
    del proto.graph.node[:]
    proto.graph.node.extend(branch_b + [n for n in nodes if n not in branch_b])
    layers = find_rectified_layers(proto)
    assert [layer.module for layer in layers] == ["b", "a"]
    taps = [ref.tap for ref in layer_taps(layers, proto, model, [torch.randn(1, 3, 8, 8)])]
    assert [tap.module for tap in taps] == ["b", "a"]

    reordered = tmp_path / "reordered.onnx"
    onnx.save(proto, str(reordered))
    damaged = onnx.load(str(reordered))
    for init in damaged.graph.initializer:
        if init.name == layers[1].scale:  # branch a's scale
            value = numpy_helper.to_array(init).copy()
            value.reshape(-1)[0] *= 1.5
            init.CopyFrom(numpy_helper.from_array(value, init.name))
    onnx.save(damaged, str(reordered))
    report = compare(reordered, model, backends=["torch", "ort-cpu"])
    (divergence,) = report.per_layer.first_divergence
    assert divergence.layer["torch_module"] == "a" and divergence.layer["index"] == 1


@pytest.mark.parametrize("dynamic_hw", [False, True], ids=["static", "dynamic-hw"])
def test_shape_skeleton_infers_what_full_shape_inference_does(tmp_path, dynamic_hw):
    """The weight-free copy used for shape inference (large initializers declared as inputs) gives
    every tensor the type and shape that inference on the whole file gives, at a fixed input size
    too; a dynamic-H/W file's shape paths read the small initializers it keeps."""
    from exporter.comparison.layerwise import SKELETON_MAX_ELEMENTS, _shape_skeleton
    from exporter.onnx.export import export_onnx
    from tests.helpers.export_models import small_rf_net

    path = tmp_path / "m.onnx"
    export_onnx(small_rf_net(0), torch.randn(1, 3, 24, 24), path, dynamic_hw=dynamic_hw)
    model = onnx.load(str(path))
    assert any(int(np.prod(t.dims)) > SKELETON_MAX_ELEMENTS for t in model.graph.initializer)

    def typed(m):
        return {v.name: v.type for v in m.graph.value_info}

    full = typed(onnx.shape_inference.infer_shapes(model))
    assert len(full) > 20
    assert typed(_shape_skeleton(model)) == full
    if dynamic_hw:
        fixed = onnx.ModelProto()
        fixed.CopyFrom(model)
        for dim, size in zip(fixed.graph.input[0].type.tensor_type.shape.dim, (2, 3, 31, 19), strict=True):
            dim.Clear()
            dim.dim_value = size
        expected = typed(onnx.shape_inference.infer_shapes(fixed))
        got = typed(_shape_skeleton(model, {model.graph.input[0].name: (2, 3, 31, 19)}))
        assert got == expected
        assert any(list(d.dim_value for d in t.tensor_type.shape.dim)[2:] == [16, 10] for t in got.values())


def test_quiet_compare_computes_no_polygraphy_log_statistics(tmp_path, monkeypatch):
    """Polygraphy's SimpleCompareFunc formats statistics of every compared tensor for its log even
    when the log is off; a quiet compare must not pay for them, and must not patch Polygraphy to
    avoid it (its functions stay its own); a verbose compare still logs them."""
    from polygraphy.comparator import util as comparator_util

    calls = []
    original = comparator_util.str_output_stats

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(comparator_util, "str_output_stats", counting)
    logger = comparator_util.log_output_stats
    net, path = _small_rf_export(tmp_path)
    report = compare(path, net, backends=("torch", "ort-cpu"))
    assert report.passed and report.per_layer.pairs
    assert calls == []
    assert comparator_util.log_output_stats is logger
    compare(path, net, backends=("torch", "ort-cpu"), verbose=True, outputs_only=True)
    assert calls


def test_elementwise_compare_func_gives_what_simple_compare_func_gives():
    """The quiet compare function is Polygraphy's elemwise check: same statistics, thresholds and
    verdicts, per output, on random data, exact zeros, NaN, fp16 and a shape mismatch."""
    from polygraphy.comparator import IterationResult, SimpleCompareFunc

    from exporter.comparison.elementwise import ElementwiseCompareFunc

    rng = np.random.default_rng(0)
    ref = {"a": rng.standard_normal((2, 5)).astype(np.float32), "b": np.zeros((3, 4), np.float32),
           "c": rng.standard_normal(6).astype(np.float16), "d": np.ones((2, 2), np.float32)}
    cand = {"a": ref["a"] + rng.standard_normal((2, 5)).astype(np.float32) * 1e-3, "b": np.full((3, 4), 1e-6,
            np.float32), "c": (ref["c"] * 1.01).astype(np.float16), "d": np.ones((4,), np.float32)}
    cand["a"][0, 0] = np.nan
    one, zero = IterationResult(cand, runner_name="x"), IterationResult(ref, runner_name="y")
    for atol, rtol in (({"a": 1e-2, "b": 1e-7, "c": 0.5, "d": 0.1}, 1e-3), (1e-5, 0.02)):
        theirs = SimpleCompareFunc(atol=atol, rtol=rtol, check_error_stat="elemwise")(one, zero)
        ours = ElementwiseCompareFunc(atol=atol, rtol=rtol)(one, zero)
        assert list(ours) == list(theirs)
        for name, expected in theirs.items():
            got = ours[name]
            assert bool(got) == bool(expected), name
            if isinstance(expected, bool):
                continue
            for stat in ("max_absdiff", "max_reldiff", "mean_absdiff", "mean_reldiff", "median_absdiff",
                         "median_reldiff"):
                np.testing.assert_equal(getattr(got, stat), getattr(expected, stat), err_msg=f"{name} {stat}")
            assert (got.thresholds.atol, got.thresholds.rtol) == (expected.thresholds.atol, expected.thresholds.rtol)


def test_layer_outputs_suffix_appended_to_the_file_is_the_layered_model(tmp_path):
    """File bytes + suffix parse as with_layer_outputs (protobuf merges concatenated messages)."""
    from exporter.comparison.layered_file import layer_outputs_suffix
    from exporter.onnx.export import export_onnx
    from tests.helpers.export_models import small_rf_net

    path = tmp_path / "m.onnx"
    export_onnx(small_rf_net(0), torch.randn(1, 3, 24, 24), path)
    model = onnx.load(str(path))
    layers = find_rectified_layers(model)
    expected = with_layer_outputs(model, layers)
    merged = onnx.load_from_string(path.read_bytes() + layer_outputs_suffix(model, expected))
    assert len(merged.graph.output) == len(model.graph.output) + len(layers) - 1  # the last layer is the output
    assert merged.SerializeToString() == expected.SerializeToString()


def _small_rf_export(tmp_path):
    from exporter.onnx.export import export_onnx
    from tests.helpers.export_models import small_rf_net

    net = small_rf_net(0)
    path = tmp_path / "m.onnx"
    export_onnx(net, torch.randn(1, 3, 24, 24), path)
    return net, path


def test_layered_model_by_reference_reads_the_original_weights(tmp_path):
    """The layered model whose weights point into a hard link of the original file (what compare
    hands ONNX Runtime, instead of writing the weights again) carries no weights itself and runs
    exactly as the layered model with its weights inside."""
    import onnxruntime

    from exporter.comparison.layered_file import BY_REFERENCE_MIN_BYTES, initializer_offsets, layered_by_reference

    _, path = _small_rf_export(tmp_path)
    serialized = path.read_bytes()
    model = onnx.load_from_string(serialized)
    offsets = initializer_offsets(serialized)
    by_name = {t.name: t for t in model.graph.initializer}
    assert offsets and all(serialized[o:o + n] == by_name[name].raw_data for name, (o, n) in offsets.items())
    layered = with_layer_outputs(model, find_rectified_layers(model))
    small = layered_by_reference(layered, offsets, "weights.onnx")
    referenced = [t for t in small.graph.initializer if t.data_location == TensorProto.EXTERNAL]
    assert referenced and all(not t.raw_data for t in referenced)
    assert {t.name for t in referenced} == {n for n, (_, size) in offsets.items() if size >= BY_REFERENCE_MIN_BYTES}
    folder = tmp_path / "work"
    folder.mkdir()
    (folder / "weights.onnx").hardlink_to(path)
    (folder / "layers.onnx").write_bytes(small.SerializeToString())
    x = {"input": np.random.default_rng(0).standard_normal((1, 3, 24, 24)).astype(np.float32)}
    want = onnxruntime.InferenceSession(layered.SerializeToString()).run(None, x)
    got = onnxruntime.InferenceSession(str(folder / "layers.onnx")).run(None, x)
    assert len(got) == len(layered.graph.output)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("backends, linked", [(("torch", "ort-cpu"), True), (("torch", "ort-cpu", "onnx-ref"), False)])
def test_compare_links_the_weights_only_for_loaders_that_take_a_link(tmp_path, monkeypatch, backends, linked):
    """onnx's loader (onnx-ref) refuses external data in a hard-linked file, so with it the layered
    file is written whole; with ONNX Runtime alone the weights are linked. Both pass."""
    import os

    from exporter.comparison import layered_file as compare_module

    links, link = [], os.link
    monkeypatch.setattr(compare_module.os, "link", lambda src, dst: (links.append(dst), link(src, dst)))
    net, path = _small_rf_export(tmp_path)
    report = compare(path, net, backends=backends)
    assert report.passed, report.summary()
    assert bool(links) == linked


def test_compare_writes_the_layered_file_whole_where_no_link_can_be_made(tmp_path, monkeypatch):
    """A hard link fails across file systems: the layered file is then written whole, and passes."""
    from exporter.comparison import layered_file as compare_module

    def refuse(src, dst):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(compare_module.os, "link", refuse)
    net, path = _small_rf_export(tmp_path)
    report = compare(path, net, backends=("torch", "ort-cpu"))
    assert report.passed and report.per_layer.pairs, report.summary()


def test_compare_reads_a_file_with_external_weights(tmp_path):
    """A file whose weights live beside it (external data) is compared layer by layer as well: the
    layered copy carries the weights, it does not point at a file it cannot find."""
    from exporter.onnx.export import export_onnx
    from tests.helpers.export_models import small_rf_net

    net = small_rf_net(0)
    path = tmp_path / "m.onnx"
    export_onnx(net, torch.randn(1, 3, 24, 24), path)
    external = tmp_path / "external" / "m.onnx"
    external.parent.mkdir()
    onnx.save(onnx.load(str(path)), str(external), save_as_external_data=True, location="m.weights",
              size_threshold=0)
    assert (external.parent / "m.weights").stat().st_size > 10_000
    report = compare(external, net, backends=["torch", "ort-cpu"])
    assert report.passed, report.format_table()
    assert report.per_layer.status == "ran" and len(report.per_layer.pairs) == 1
    assert sorted(p.name for p in external.parent.iterdir()) == ["m.onnx", "m.weights"]


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_border_ring_of_a_conv_with_a_pad_node(tmp_path, mode):
    """A conv padding other than with zeros exports as Pad -> Conv(pads 0) -> Mul(scale). Was: the
    Conv's own geometry (no padding), so the ring was empty and every error counted as interior.
    The ring is where the factor of the module's geometry at the Pad's input size is not 1."""
    from exporter.comparison.layerwise import border_rings
    from exporter.onnx.export import export_onnx

    torch.manual_seed(0)
    net = nn.Sequential(RFConv2d(3, 4, 3, padding=1, padding_mode=mode), nn.ReLU(),
                        RFConv2d(4, 4, 3, stride=2, padding=(1, 2), padding_mode=mode)).eval()
    path = tmp_path / "padded.onnx"
    export_onnx(net, torch.randn(1, 3, 12, 14), path)
    model = onnx.load(str(path))
    assert "Pad" in {node.op_type for node in model.graph.node}
    layers = find_rectified_layers(model)
    assert len(layers) == 2
    rings = border_rings(model, layers, {model.graph.input[0].name: (1, 3, 12, 14)})
    expected = [rectify_scale((12, 14), 3, 1, 1).numpy() != 1, rectify_scale((12, 14), 3, 2, (1, 2)).numpy() != 1]
    for layer, want in zip(layers, expected, strict=True):
        np.testing.assert_array_equal(rings[layer.tensor], want)
    assert all(want.any() and not want.all() for want in expected)
    report = compare(path, net, backends=["torch", "ort-cpu"])
    assert report.passed, report.format_table()
    assert all(s.ring_max_abs is not None and s.ring_reference_max > 0 for p in report.per_layer.pairs
               for s in p.outputs)
