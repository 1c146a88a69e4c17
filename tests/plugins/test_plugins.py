"""plugins: library lookup and loading, the RFConvRectify node contract, the ONNX Runtime reference op."""

from __future__ import annotations

import importlib.util

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

import plugins
from plugins import library
from plugins.ort_reference import for_onnxruntime, inference_session
from plugins.spec import PLUGIN_DOMAIN, RectifySpec
from tests.helpers.reference import rectified_conv

HAVE_TENSORRT = importlib.util.find_spec("tensorrt") is not None


@pytest.mark.skipif(HAVE_TENSORRT, reason="TensorRT is installed: the missing-TensorRT message cannot be checked")
def test_load_library_without_tensorrt_says_so():
    with pytest.raises(RuntimeError, match=r"TensorRT is not installed .*install TensorRT >= 10.3"):
        plugins.load_library()


def test_find_library_explains_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.delenv(library.LIBRARY_ENV, raising=False)
    monkeypatch.setattr(library, "PACKAGE_DIR", tmp_path / "pkg")
    monkeypatch.setattr(library, "BUILD_DIRS", (tmp_path / "a", tmp_path / "b"))
    with pytest.raises(FileNotFoundError, match=r"librfconv_trt_plugin.so not found in .*/pkg, .*/a, .*/b; build it"):
        library.find_library()
    built = tmp_path / "b" / library.LIBRARY_NAME
    built.parent.mkdir()
    built.write_bytes(b"")
    assert library.find_library() == built


def test_find_library_prefers_package_data_and_ignores_the_working_directory(tmp_path, monkeypatch):
    """Package data (plugins/lib, `cmake --install ... --prefix plugins`) first; a library under the current
    directory's build/trt_plugin is not picked up just because the command runs there."""
    monkeypatch.delenv(library.LIBRARY_ENV, raising=False)
    monkeypatch.setattr(library, "PACKAGE_DIR", tmp_path / "pkg" / "lib")
    monkeypatch.setattr(library, "BUILD_DIRS", (tmp_path / "checkout" / "build" / "trt_plugin",))
    elsewhere = tmp_path / "cwd" / "build" / "trt_plugin" / library.LIBRARY_NAME
    elsewhere.parent.mkdir(parents=True)
    elsewhere.write_bytes(b"")
    monkeypatch.chdir(tmp_path / "cwd")
    with pytest.raises(FileNotFoundError):
        library.find_library()
    for directory in (tmp_path / "checkout" / "build" / "trt_plugin", tmp_path / "pkg" / "lib"):
        directory.mkdir(parents=True)
        (directory / library.LIBRARY_NAME).write_bytes(b"")
    assert library.find_library() == tmp_path / "pkg" / "lib" / library.LIBRARY_NAME


def test_find_library_explicit_path_and_environment(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match=r"nope.so does not exist; build it with `cmake -S trt_plugin_src"):
        library.find_library(tmp_path / "nope.so")
    monkeypatch.setenv(library.LIBRARY_ENV, str(tmp_path / "env.so"))
    with pytest.raises(FileNotFoundError, match=r"env.so \(from \$RFCONV_TRT_PLUGIN\) does not exist"):
        library.find_library()
    (tmp_path / "env.so").write_bytes(b"")
    assert library.find_library() == (tmp_path / "env.so").resolve()


def test_find_library_refuses_the_autoregistration_library(tmp_path):
    autoreg = tmp_path / library.AUTOREG_NAME
    autoreg.write_bytes(b"")
    with pytest.raises(ValueError, match=r"autoregistration library .* give .*librfconv_trt_plugin.so instead"):
        library.find_library(autoreg)


def test_autoreg_library_is_found_beside_the_plugin_library(tmp_path):
    plugin = tmp_path / library.LIBRARY_NAME
    plugin.write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"librfconv_trt_plugin_autoreg.so does not exist: .*plugins="):
        library.autoreg_library(plugin)
    (tmp_path / library.AUTOREG_NAME).write_bytes(b"")
    assert library.autoreg_library(plugin) == (tmp_path / library.AUTOREG_NAME).resolve()


class _Creator:
    def __init__(self, name, version, namespace):
        self.name, self.plugin_version, self.plugin_namespace = name, version, namespace


class _Registry:
    """A tensorrt.IPluginRegistry stand-in whose get_creator fails the test: in TensorRT it logs an ERROR
    when the creator is absent (the first load of every process)."""

    def __init__(self, *creators):
        self.all_creators = list(creators)

    def get_creator(self, *args):
        raise AssertionError(f"get_creator{args} logs a TensorRT error when the creator is absent")


def test_is_registered_reads_the_creator_list_without_logging_an_error():
    assert not library.is_registered(_Registry())
    assert not library.is_registered(_Registry(_Creator("RFConvRectify", "1", ""), _Creator("Other", "1", "rfconv")))
    assert library.is_registered(_Registry(_Creator("Other", "1", ""), _Creator("RFConvRectify", "1", "rfconv")))


@pytest.mark.requires_tensorrt
def test_load_library_registers_the_creator_once():
    import tensorrt as trt

    try:
        path = library.find_library()
    except FileNotFoundError as err:
        pytest.skip(f"plugin library not built: {err}")
    assert plugins.load_library(path) == path
    assert library.is_registered(trt.get_plugin_registry())
    assert plugins.load_library(path) == path  # already registered: not loaded twice


def test_spec_round_trips_through_onnx_attributes():
    spec = RectifySpec(kernel=(3, 5), stride=(1, 2), padding=(1, 2), dilation=(2, 1), average_mode=True,
                       count_mode="rfconv", activation="relu")
    node = helper.make_node("RFConvRectify", ["y", "x"], ["z"], domain=PLUGIN_DOMAIN, **spec.node_attributes())
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    assert attrs["plugin_namespace"] == b"rfconv" and attrs["plugin_version"] == b"1"
    assert attrs["kernel"] == [3, 5] and attrs["average_mode"] == 1
    assert RectifySpec.from_node_attributes(attrs) == spec


@pytest.mark.parametrize("bad, match", [
    (dict(kernel=(3,)), "kernel=.* must be two ints"),
    (dict(kernel=(3, 3), stride=(0, 1)), "must be >= 1"),
    (dict(kernel=(3, 3), count_mode="fancy"), "count_mode='fancy'"),
    (dict(kernel=(3, 3), activation="gelu"), "activation='gelu'"),
])
def test_spec_rejects_bad_attributes(bad, match):
    with pytest.raises(ValueError, match=match):
        RectifySpec(**bad)


def _conv_rectify_model(spec: RectifySpec, weight, conv_bias, bias, in_shape, dtype, opset=17) -> onnx.ModelProto:
    """Conv(X, W[, B]) -> RFConvRectify(conv_out, X[, bias]) built by hand."""
    np_dtype = np.float16 if dtype == TensorProto.FLOAT16 else np.float32
    inits = [numpy_helper.from_array(weight.astype(np_dtype), "W")]
    conv_inputs = ["X", "W"]
    if conv_bias is not None:
        inits.append(numpy_helper.from_array(conv_bias.astype(np_dtype), "B"))
        conv_inputs.append("B")
    rect_inputs = ["conv_out", "X"]
    if bias is not None:
        inits.append(numpy_helper.from_array(bias.reshape(1, -1, 1, 1).astype(np_dtype), "bias"))
        rect_inputs.append("bias")
    (ph, pw) = spec.padding
    nodes = [
        helper.make_node("Conv", conv_inputs, ["conv_out"], kernel_shape=list(spec.kernel), strides=list(spec.stride),
                         pads=[ph, pw, ph, pw], dilations=list(spec.dilation)),
        helper.make_node("RFConvRectify", rect_inputs, ["Y"], domain=PLUGIN_DOMAIN, name="rect",
                         **spec.node_attributes()),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("X", dtype, list(in_shape))],
                              [helper.make_tensor_value_info("Y", dtype, None)], initializer=inits)
    opsets = [helper.make_opsetid("", opset), helper.make_opsetid(PLUGIN_DOMAIN, 1)]
    return helper.make_model(graph, ir_version=10, opset_imports=opsets)


CASES = [
    # spec, input shape, conv bias, channel bias
    (RectifySpec((3, 3), padding=(1, 1), activation="relu"), (2, 3, 9, 8), True, True),
    (RectifySpec((3, 3), stride=(2, 2), padding=(1, 1)), (1, 2, 11, 7), False, False),
    (RectifySpec((7, 7), stride=(2, 2), padding=(3, 3), activation="relu"), (1, 3, 16, 16), False, True),
    (RectifySpec((5, 3), padding=(4, 1), dilation=(2, 1), count_mode="rfconv"), (1, 2, 12, 10), True, False),
    (RectifySpec((3, 3), padding=(1, 1), average_mode=True), (1, 2, 6, 6), False, True),
]


@pytest.mark.parametrize("dtype", [TensorProto.FLOAT, TensorProto.FLOAT16])
@pytest.mark.parametrize("spec, in_shape, with_conv_bias, with_bias", CASES)
def test_reference_op_on_onnxruntime_matches_brute_force(spec, in_shape, with_conv_bias, with_bias, dtype):
    rng = np.random.default_rng(0)
    c_in, c_out = in_shape[1], 4
    weight = rng.standard_normal((c_out, c_in, *spec.kernel)).astype(np.float32) * 0.3
    conv_bias = rng.standard_normal(c_out).astype(np.float32) if with_conv_bias else None
    bias = rng.standard_normal(c_out).astype(np.float32) if with_bias else None
    x = rng.standard_normal(in_shape).astype(np.float16 if dtype == TensorProto.FLOAT16 else np.float32)
    model = _conv_rectify_model(spec, weight, conv_bias, bias, in_shape, dtype)
    (got,) = inference_session(model).run(None, {"X": x})

    expected = rectified_conv(torch.from_numpy(x.astype(np.float64)), torch.from_numpy(weight),
                              None if conv_bias is None else torch.from_numpy(conv_bias), spec.stride, spec.padding,
                              spec.dilation, 1, spec.average_mode, spec.count_mode)
    if bias is not None:
        expected = expected + torch.from_numpy(bias).double().view(1, -1, 1, 1)
    if spec.activation == "relu":
        expected = torch.relu(expected)
    assert got.dtype == x.dtype and got.shape == tuple(expected.shape)
    tol = 2e-2 if dtype == TensorProto.FLOAT16 else 1e-5
    torch.testing.assert_close(torch.from_numpy(got.astype(np.float64)), expected, rtol=tol, atol=tol)


def test_for_onnxruntime_rewrites_only_plugin_nodes():
    spec = RectifySpec((3, 3), padding=(1, 1))
    model = _conv_rectify_model(spec, np.ones((2, 1, 3, 3), np.float32), None, None, (1, 1, 5, 5), TensorProto.FLOAT)
    converted = for_onnxruntime(model)
    assert [n.op_type for n in converted.graph.node] == ["Conv", "Cast", "Shape", "RFConvRectifyReference",
                                                         "CastLike"]
    assert {o.domain for o in converted.opset_import} == {"", "ai.onnx.contrib"}
    assert [n.op_type for n in model.graph.node] == ["Conv", "RFConvRectify"]  # the input is not modified


def test_for_onnxruntime_needs_opset_15():
    model = _conv_rectify_model(RectifySpec((3, 3), padding=(1, 1)), np.ones((2, 1, 3, 3), np.float32), None, None,
                                (1, 1, 5, 5), TensorProto.FLOAT, opset=13)
    with pytest.raises(ValueError, match="needs ONNX opset >= 15; the model has 13"):
        for_onnxruntime(model)


def test_reference_reports_a_shape_mismatch():
    spec = RectifySpec((3, 3), padding=(1, 1))
    model = _conv_rectify_model(spec, np.ones((2, 1, 3, 3), np.float32), None, None, (1, 1, 5, 5), TensorProto.FLOAT)
    model.graph.node[1].input[1] = "W"  # a 2x1x3x3 'conv input': the factor is 3x3, the conv output 5x5
    with pytest.raises(Exception, match="does not match the 3x3 output"):
        inference_session(model).run(None, {"X": np.ones((1, 1, 5, 5), np.float32)})
