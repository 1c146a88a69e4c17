"""``quantize_onnx`` and ``rfconv-deploy quantize``: every conv int8 in ONNX Runtime, factors exact
in fp32, calibration sources, settings and errors."""

from __future__ import annotations

import warnings
from collections import Counter

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import pytest
import torch
from torch import nn

from exporter.cli import main
from exporter.onnx.export import export_onnx
from exporter.onnx.passes.rectified import find_rectified_convs
from exporter.onnx.precision import file_precision
from exporter.quantize.placement import dedicate_qdq_pairs
from exporter.quantize.quantize import QuantizeError, quantize_onnx
from exporter.quantize.rules import check_qdq
from tests.helpers.export_models import ort_session, randomize_batchnorm, small_rf_net
from tests.quantize.conftest import SIZE


def optimized_ops(path, tmp_path, int8_allowed: bool | None = None) -> Counter:
    """Op counts of the graph ONNX Runtime's CPU provider runs (``optimized_model_filepath``)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / f"{path.stem}.optimized.onnx")
    options.log_severity_level = 3
    if int8_allowed is not None:
        options.add_session_config_entry("session.qdqisint8allowed", "1" if int8_allowed else "0")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return Counter(n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node)


def test_ort_runs_an_int8_conv_for_every_conv(quantized, tmp_path):
    convs = sum(n.op_type == "Conv" for n in onnx.load(str(quantized.int8)).graph.node)
    ops = optimized_ops(quantized.int8, tmp_path)
    assert convs == 8 and ops["QLinearConv"] == convs and ops["Conv"] == 0
    assert quantized.report.quantized_convs == quantized.report.convs == convs


def test_factors_stay_exact_float32_constants(quantized):
    fp32 = {m.mul.name: m.scale.values for m in find_rectified_convs(gs.import_onnx(onnx.load(str(quantized.fp32))))}
    matches = find_rectified_convs(gs.import_onnx(onnx.load(str(quantized.int8))))
    assert len(matches) == len(fp32) == 7 == quantized.report.rectified_convs
    for match in matches:
        assert match.qdq is not None  # Conv -> Q -> DQ -> Mul
        assert isinstance(match.scale, gs.Constant) and match.scale.values.dtype == np.float32
        np.testing.assert_array_equal(match.scale.values, fp32[match.mul.name])


def test_int8_file_is_close_to_fp32_and_precision_reads_int8(quantized):
    assert file_precision(onnx.load(str(quantized.int8))) == "int8"
    x = np.random.default_rng(5).uniform(-2, 2, (4, 3, SIZE, SIZE)).astype(np.float32)
    want = ort_session(quantized.fp32).run(None, {"input": x})[0]
    got = ort_session(quantized.int8).run(None, {"input": x})[0]
    cosine = np.dot(got.ravel(), want.ravel()) / np.linalg.norm(got) / np.linalg.norm(want)
    assert cosine > 0.99
    assert quantized.int8.stat().st_size < quantized.fp32.stat().st_size


class Residual(nn.Module):
    """A tensor read by two nodes (conv and residual add): the case ONNX Runtime leaves unfused
    unless each consumer has its own Q/DQ pair."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.body = nn.Sequential(nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1))

    def forward(self, x):
        y = self.stem(x)
        return torch.relu(y + self.body(y))


def test_one_pair_per_consumer_lets_ort_fuse_every_conv(tmp_path):
    """Regression of the placement: ORT 1.32's quantize_static output leaves convs on a shared
    tensor unfused (S8 -> U8 conversion needs a single-consumer Q); after the pass all fuse."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    from exporter.quantize.calibration import FeedReader

    torch.manual_seed(0)
    model = randomize_batchnorm(Residual(), 0)
    fp32, raw = tmp_path / "residual.onnx", tmp_path / "residual_raw.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_onnx(model, torch.randn(1, 3, 16, 16), fp32)
    feeds = [{"input": np.random.default_rng(i).uniform(-2, 2, (1, 3, 16, 16)).astype(np.float32)} for i in range(4)]
    quantize_static(str(fp32), str(raw), FeedReader(feeds), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    extra_options={"ActivationSymmetric": True, "WeightSymmetric": True})
    before = optimized_ops(raw, tmp_path)
    assert before["Conv"] > 0  # unfused: the problem exists in this ONNX Runtime
    graph = gs.import_onnx(onnx.load(str(raw)))
    assert dedicate_qdq_pairs(graph) > 0
    fixed = tmp_path / "residual_pairs.onnx"
    onnx.save(gs.export_onnx(graph), str(fixed))
    after = optimized_ops(fixed, tmp_path)
    assert after["Conv"] == 0 and after["QLinearConv"] == 3
    x = feeds[0]["input"]
    ref = ort_session(raw).run(None, {"input": x})[0]
    np.testing.assert_allclose(ort_session(fixed).run(None, {"input": x})[0], ref, atol=2 * np.abs(ref).max() / 127)


def test_uint8_variant_follows_its_rules_and_fuses(quantized, tmp_path):
    path = tmp_path / "u8.onnx"
    report = quantize_onnx(quantized.fp32, path, samples=4, activations="uint8", method="minmax")
    model = onnx.load(str(path))
    assert check_qdq(model, "uint8") == [] and {v.rule for v in check_qdq(model, "int8")} >= {"int8"}
    assert "ONNX Runtime CPU only" in report.summary()
    ops = optimized_ops(path, tmp_path)
    assert ops["QLinearConv"] == report.convs and ops["Conv"] == 0


def test_excluded_conv_stays_fp32_and_rules_hold(quantized, tmp_path):
    graph = gs.import_onnx(onnx.load(str(quantized.fp32)))
    first = next(n for n in graph.nodes if n.op == "Conv")
    path = tmp_path / "excluded.onnx"
    report = quantize_onnx(quantized.fp32, path, samples=2, exclude=[first.name])
    assert report.excluded == [first.name] and report.quantized_convs == report.convs - 1
    conv = next(n for n in onnx.load(str(path)).graph.node if n.name == first.name)
    producers = {o: n.op_type for n in onnx.load(str(path)).graph.node for o in n.output}
    assert producers.get(conv.input[1]) != "DequantizeLinear"
    assert check_qdq(onnx.load(str(path))) == []


@pytest.mark.parametrize("method", ["percentile", "entropy", "minmax"])
def test_calibration_holds_a_few_samples_at_a_time(quantized, tmp_path, monkeypatch, method):
    """Regression: ORT's histogram calibrators kept every sample's activations until the end, so
    ``--samples 256 --method percentile`` on ResNet-50 was killed for memory. Each of ORT's own
    ``collect_data`` calls (wrapped to count, then run) now takes at most
    CALIBRATION_BATCH_LIMIT samples, and every sample is still collected."""
    from onnxruntime.quantization import calibrate

    from exporter.quantize.quantize import CALIBRATION_BATCH_LIMIT

    held = []
    original = {cls: cls.collect_data for cls in (calibrate.HistogramCalibrater, calibrate.MinMaxCalibrater)}

    def counting(cls):
        def collect_data(self, data_reader):
            taken = []

            class Counted:
                def get_next(self):
                    feed = data_reader.get_next()
                    if feed:
                        taken.append(1)
                    return feed

            original[cls](self, Counted())
            held.append(len(taken))
        return collect_data

    for cls in original:
        monkeypatch.setattr(cls, "collect_data", counting(cls))
    samples = 3 * CALIBRATION_BATCH_LIMIT
    quantize_onnx(quantized.fp32, tmp_path / "strided.onnx", samples=samples, method=method)
    assert sum(held) == samples and max(held) <= CALIBRATION_BATCH_LIMIT, held


def test_calibration_from_images_and_npz(quantized, tmp_path):
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    report = quantize_onnx(quantized.fp32, tmp_path / "img.onnx", calibration=str(folder), samples=8)
    assert report.samples == 3
    npz = tmp_path / "calib.npz"
    np.savez(npz, input=rng.uniform(-2, 2, (5, 3, SIZE, SIZE)).astype(np.float32))
    assert quantize_onnx(quantized.fp32, tmp_path / "npz.onnx", calibration=str(npz), samples=4).samples == 4


@pytest.mark.parametrize("setup, match", [
    (lambda q, t: dict(onnx_path=t / "missing.onnx"), "does not exist"),
    (lambda q, t: dict(calibration=str(t / "nothing.npz")), "not 'random', a folder of images or an existing"),
    (lambda q, t: dict(method="kl"), "method='kl' is not one of"),
    (lambda q, t: dict(exclude=["no_such_node"]), "no node or tensor named 'no_such_node'"),
    (lambda q, t: dict(output_path=t), "it is a directory"),
    (lambda q, t: dict(output_path=q.fp32), "is the input file"),
    (lambda q, t: dict(onnx_path=q.int8), "is int8: quantize the fp32 export"),
])
def test_bad_settings_say_what_to_change(quantized, tmp_path, setup, match):
    kwargs = dict(onnx_path=quantized.fp32, output_path=tmp_path / "out.onnx", samples=1)
    kwargs.update(setup(quantized, tmp_path))
    with pytest.raises(QuantizeError, match=match):
        quantize_onnx(kwargs.pop("onnx_path"), kwargs.pop("output_path"), **kwargs)
    assert not (tmp_path / "out.onnx").exists()


def test_npz_with_wrong_sample_shape_is_refused(quantized, tmp_path):
    npz = tmp_path / "bad.npz"
    np.savez(npz, input=np.zeros((2, 3, 8, 8), np.float32))
    with pytest.raises(QuantizeError, match=r"samples of shape \[3, 8, 8\], but the input takes \[3, 24, 24\]"):
        quantize_onnx(quantized.fp32, tmp_path / "out.onnx", calibration=str(npz))


def test_cli_quantize_prints_progress_and_summary(quantized, tmp_path, capsys):
    out = tmp_path / "cli_int8.onnx"
    assert main(["quantize", str(quantized.fp32), "-o", str(out), "--samples", "3", "--method", "minmax"]) == 0
    captured = capsys.readouterr()
    assert "calibration sample 3/3" in captured.err
    assert f"wrote {out}" in captured.out and "int8 convs: 8 of 8" in captured.out and "0 violation(s)" in captured.out
    assert check_qdq(onnx.load(str(out))) == []


def test_cli_quantize_error_names_the_flag(quantized, tmp_path, capsys):
    assert main(["quantize", str(quantized.fp32), "-o", str(tmp_path / "x.onnx"), "--calibration", "nope"]) == 2
    assert "rfconv-deploy quantize: error: --calibration nope is not 'random'" in capsys.readouterr().err


def test_dynamic_hw_file_keeps_its_factor_computation_in_fp32(tmp_path):
    fp32, int8 = tmp_path / "dyn.onnx", tmp_path / "dyn_int8.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_onnx(small_rf_net(0), torch.randn(1, 3, SIZE, SIZE), fp32, dynamic_hw=True)
    with pytest.raises(QuantizeError, match="input_shape"):
        quantize_onnx(fp32, int8, samples=2)
    report = quantize_onnx(fp32, int8, samples=4, input_shape=(1, 3, SIZE, SIZE))
    assert report.quantized_convs == report.convs == 8 and report.shape_path_convs > 0
    assert check_qdq(onnx.load(str(int8))) == []
    for hw in (SIZE, 31):  # the factor is still computed at the file's size
        x = np.random.default_rng(hw).uniform(-2, 2, (2, 3, hw, hw)).astype(np.float32)
        want = ort_session(fp32).run(None, {"input": x})[0]
        got = ort_session(int8).run(None, {"input": x})[0]
        assert np.dot(got.ravel(), want.ravel()) / np.linalg.norm(got) / np.linalg.norm(want) > 0.99


def test_batchnorm_is_folded_before_quantizing(tmp_path):
    fp32, int8 = tmp_path / "bn.onnx", tmp_path / "bn_int8.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_onnx(small_rf_net(0), torch.randn(1, 3, SIZE, SIZE), fp32, fold_bn=False)
    batchnorms = sum(n.op_type == "BatchNormalization" for n in onnx.load(str(fp32)).graph.node)
    assert batchnorms > 0
    report = quantize_onnx(fp32, int8, samples=2)
    ops = {n.op_type for n in onnx.load(str(int8)).graph.node}
    assert report.batchnorms_folded == batchnorms and "BatchNormalization" not in ops
    assert report.quantized_convs == report.convs == 8 and check_qdq(onnx.load(str(int8))) == []


def test_image_calibration_without_a_decoder_says_what_to_install(quantized, tmp_path, monkeypatch):
    from exporter.quantize import calibration

    monkeypatch.setattr(calibration, "_image_decoder_available", lambda: "No module named 'PIL'")
    with pytest.raises(QuantizeError, match=r"needs Pillow to decode them .*pip install pillow"):
        quantize_onnx(quantized.fp32, tmp_path / "out.onnx", calibration=str(tmp_path))


def _unique_tensor_names(model: onnx.ModelProto) -> bool:
    """No two distinct tensors of the file share a name: initializers, graph inputs and node outputs."""
    names = [t.name for t in model.graph.initializer] + [i.name for i in model.graph.input]
    names += [o for n in model.graph.node for o in n.output if o]
    return len(names) == len(set(names))


def test_dedicated_pairs_of_quantizers_sharing_a_scale_get_distinct_names(tmp_path):
    """ONNX Runtime's quantizer gives ops that keep the scale (Reshape, MaxPool, ...) the same scale
    initializer on both sides, so two QuantizeLinear nodes share it; each pair's copy was named
    after the shared scale alone, so the graph held distinct tensors of one name (about a thousand
    onnx-graphsurgeon warnings for ResNeSt-50)."""
    scale, zero = gs.Constant("s", np.array(0.1, np.float32)), gs.Constant("zp", np.array(0, np.int8))
    nodes, outputs = [], []
    x = gs.Variable("x", np.float32, (1, 4))
    for i in range(2):  # two quantizers of one scale, each read through one DQ by two nodes
        q, dq = gs.Variable(f"q{i}", np.int8, (1, 4)), gs.Variable(f"dq{i}", np.float32, (1, 4))
        nodes += [gs.Node("QuantizeLinear", f"Q{i}", inputs=[x, scale, zero], outputs=[q]),
                  gs.Node("DequantizeLinear", f"DQ{i}", inputs=[q, scale, zero], outputs=[dq])]
        for op in ("Relu", "Neg"):
            out = gs.Variable(f"{op}{i}", np.float32, (1, 4))
            nodes.append(gs.Node(op, f"{op}_{i}", inputs=[dq], outputs=[out]))
            outputs.append(out)
    graph = gs.Graph(nodes=nodes, inputs=[x], outputs=outputs, opset=19)
    assert dedicate_qdq_pairs(graph) == 2
    graph.tensors(check_duplicates=True)  # raised: distinct tensors share the same name
    model = gs.export_onnx(graph, ir_version=10)  # onnxruntime-gpu 1.31 reads IR <= 13
    assert _unique_tensor_names(model)
    onnx.checker.check_model(model, full_check=True)
    x_value = np.linspace(-1, 1, 4, dtype=np.float32).reshape(1, 4)
    onnx.save(model, str(tmp_path / "pairs.onnx"))
    got = ort_session(tmp_path / "pairs.onnx").run(None, {"x": x_value})
    want = np.round(x_value / 0.1) * 0.1
    for value, sign in zip(got, (1, -1, 1, -1), strict=True):
        np.testing.assert_allclose(value, np.maximum(want, 0) if sign > 0 else -want, atol=1e-6)


def test_quantized_file_has_unique_tensor_names(quantized):
    assert _unique_tensor_names(onnx.load(str(quantized.int8)))
    gs.import_onnx(onnx.load(str(quantized.int8))).tensors(check_duplicates=True)


@pytest.mark.slow
def test_quantized_resnest50_has_unique_tensor_names(tmp_path, capfd):
    """The registry's resnest50 quantizes to a graph whose tensors each have their own name: its
    pairs used to be named after scales that several quantizers share, and onnx-graphsurgeon
    printed "Found distinct tensors that share the same name" about a thousand lines long."""
    pytest.importorskip("resnest")
    from exporter.model.registry import build_model

    fp32, int8 = tmp_path / "rs50.onnx", tmp_path / "rs50_int8.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_onnx(build_model("resnest50"), torch.randn(1, 3, 64, 64), fp32, dynamic_batch=False)
    capfd.readouterr()
    quantize_onnx(fp32, int8, samples=2)
    printed = capfd.readouterr()
    assert "share the same name" not in printed.out + printed.err
    model = onnx.load(str(int8))
    assert _unique_tensor_names(model)
    gs.import_onnx(model).tensors(check_duplicates=True)
