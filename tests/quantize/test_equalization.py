"""The equalization benchmark's graph rewrite: exact in fp32, and its int8 file still fuses every conv."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import pytest

from benchmarks.quantize_equalization import equalization_sites, equalize, factor_gains, measured_gains
from exporter.quantize.quantize import quantize_onnx
from exporter.quantize.rules import check_qdq
from tests.helpers.export_models import ort_session
from tests.quantize.conftest import SIZE
from tests.quantize.test_quantize import optimized_ops


def _rewritten(quantized, tmp_path, gains_of):
    graph = gs.import_onnx(onnx.load(str(quantized.fp32)))
    divides = equalize(graph, gains_of(graph))
    path = tmp_path / "equalized.onnx"
    onnx.save(gs.export_onnx(graph), str(path))
    return path, divides


def test_the_one_site_is_the_tail_before_the_1x1_conv(quantized):
    graph = gs.import_onnx(onnx.load(str(quantized.fp32)))
    sites = equalization_sites(graph)  # small_rf_net: rectified stride-2 conv -> BN -> ReLU -> 1x1 conv
    assert len(sites) == 1
    tail, conv = sites[0]
    assert [n.op for n in tail] == ["Mul", "Add", "Relu"] and conv.inputs[1].shape[2:] == [1, 1]
    assert factor_gains(graph)[0].shape == (1, 1, SIZE // 2, SIZE // 2)


@pytest.mark.parametrize("kind", ["random", "factor"])
def test_rewrite_keeps_fp32_outputs(quantized, tmp_path, kind):
    rng = np.random.default_rng(5)
    gains_of = factor_gains if kind == "factor" else (
        lambda graph: [rng.uniform(0.25, 4, (1, 1, SIZE // 2, SIZE // 2)).astype(np.float32)])
    path, divides = _rewritten(quantized, tmp_path, gains_of)
    assert len(divides) == 1
    x = np.random.default_rng(6).uniform(-2, 2, (2, 3, SIZE, SIZE)).astype(np.float32)
    want, got = (ort_session(p).run(None, {"input": x})[0] for p in (quantized.fp32, path))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def test_wrong_gain_shape_is_refused(quantized):
    graph = gs.import_onnx(onnx.load(str(quantized.fp32)))
    with pytest.raises(ValueError, match="positive and"):
        equalize(graph, [np.ones((1, 2, SIZE // 2, SIZE // 2), np.float32)])
    with pytest.raises(ValueError, match="0 gains for 1 sites"):
        equalize(gs.import_onnx(onnx.load(str(quantized.fp32))), [])


def test_measured_gain_peaks_on_the_border_and_the_int8_file_fuses(quantized, tmp_path):
    feeds = [{"input": np.random.default_rng(s).uniform(-2, 2, (1, 3, SIZE, SIZE)).astype(np.float32)}
             for s in range(4)]
    model = onnx.load(str(quantized.fp32))
    gain = measured_gains(model, gs.import_onnx(model), feeds)[0]
    assert gain.min() == 1.0 and gain.max() > 1.0
    peak = np.unravel_index(gain[0, 0].argmax(), gain.shape[2:])  # a rectified tail's largest values: its border
    assert min(peak) == 0 or max(peak) == SIZE // 2 - 1
    path, divides = _rewritten(quantized, tmp_path, lambda graph: [gain])
    int8 = tmp_path / "equalized_int8.onnx"
    report = quantize_onnx(path, int8, samples=4, exclude=divides)
    assert check_qdq(onnx.load(str(int8))) == []
    ops = optimized_ops(int8, tmp_path)
    assert ops["QLinearConv"] == report.convs == 8 and ops["Conv"] == 0
