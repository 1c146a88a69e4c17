"""INT8 files downstream: ``compare`` judges them against fp32 PyTorch (and fails a damaged one),
``serve`` and ``triton`` take them."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from exporter.comparison.compare import compare
from exporter.comparison.defaults import INT8_VERDICT
from exporter.onnx.passes.rectified import find_rectified_convs
from tests.helpers.export_models import ort_session

BACKENDS = ("torch", "ort-cpu")


def test_compare_int8_file_passes_with_layers(quantized):
    report = compare(quantized.int8, quantized.model, backends=BACKENDS, iterations=2, batch_size=2)
    assert report.verdict_mode == "int8" and report.model_precision == "int8"
    assert report.passed, report.format_table()
    (pair,) = report.comparisons
    assert (pair.backend, pair.reference) == ("ort-cpu", "torch")
    (stats,) = pair.outputs
    assert INT8_VERDICT["min_cosine"] <= stats.cosine_similarity < 1.0
    assert 0 < stats.scaled_error <= INT8_VERDICT["max_scaled_error"]
    assert len(report.per_layer.layers) == 7 and report.per_layer.pairs
    assert all(s.cosine_similarity > INT8_VERDICT["min_cosine"] for p in report.per_layer.pairs for s in p.outputs)
    assert "verdict int8" in report.format_table()


def test_compare_fails_an_int8_file_with_a_wrong_factor_at_its_layer(quantized, tmp_path):
    graph = gs.import_onnx(onnx.load(str(quantized.int8)))
    match = find_rectified_convs(graph)[3]
    match.mul.inputs[match.scale_index] = gs.Constant("flat_factor", np.ones_like(match.scale.values))
    broken = tmp_path / "flat_factor_int8.onnx"
    onnx.save(gs.export_onnx(graph), str(broken))
    report = compare(broken, quantized.model, backends=BACKENDS, iterations=2, batch_size=2)
    assert not report.passed
    (divergence,) = report.per_layer.first_divergence
    assert divergence.layer["index"] == 3, report.format_table()
    assert "outside the int8 verdict" in report.verdict()


def test_serve_runs_an_int8_file(quantized):
    from exporter.serving.server import load_service
    from exporter.serving.service import ServeConfig

    service = load_service(quantized.int8, ServeConfig(name="int8"), provider="cpu")
    try:
        x = np.random.default_rng(0).uniform(-2, 2, (2, 3, 24, 24)).astype(np.float32)
        got = service.model.run({"input": x})
        (output,) = got.values() if isinstance(got, dict) else got
        want = ort_session(quantized.int8).run(None, {"input": x})[0]
        np.testing.assert_allclose(np.asarray(output), want, rtol=0, atol=1e-6 * np.abs(want).max())
    finally:
        service.close()


def test_triton_repository_of_an_int8_file(quantized, tmp_path):
    from exporter.serving.triton_repo import write_repository

    written = write_repository(quantized.int8, tmp_path / "repo", name="rf_int8")
    assert written.model_file.read_bytes() == quantized.int8.read_bytes()
    (accelerator,) = written.config.optimization.execution_accelerators.gpu_execution_accelerator
    assert accelerator.parameters["precision_mode"] == "INT8"
    fp32 = write_repository(quantized.fp32, tmp_path / "repo", name="rf_fp32")
    (accelerator,) = fp32.config.optimization.execution_accelerators.gpu_execution_accelerator
    assert accelerator.parameters["precision_mode"] == "FP32"


def test_a_file_with_excluded_convs_is_judged_and_served_as_int8(quantized, tmp_path):
    """``quantize --exclude`` leaves convs fp32 between Q/DQ ones: the file is still a Q/DQ file.
    It was read as ``"mixed"`` and judged by the fp32 noise floor (FAIL at its first rectified
    layer), and neither ORT's TensorRT EP in ``serve`` nor ``compare``'s ``ort-trt`` got int8 on."""
    from exporter.onnx.precision import file_precision
    from exporter.quantize.quantize import quantize_onnx
    from exporter.serving.triton_repo import write_repository

    graph = gs.import_onnx(onnx.load(str(quantized.fp32)))
    excluded = find_rectified_convs(graph)[1].conv.name
    partial = tmp_path / "partial_int8.onnx"
    report = quantize_onnx(quantized.fp32, partial, samples=8, exclude=[excluded])
    assert report.quantized_convs == report.convs - 1
    assert file_precision(onnx.load(str(partial))) == "int8"
    judged = compare(partial, quantized.model, backends=BACKENDS, iterations=2, batch_size=2)
    assert judged.verdict_mode == "int8" and judged.passed, judged.format_table()
    from exporter.backends.ort import tensorrt_ep_options
    from exporter.serving.model_io import graph_summary

    for path, int8 in ((partial, True), (quantized.fp32, False)):
        summary = graph_summary(path)
        options = tensorrt_ep_options(summary.inputs, 8, precision=summary.precision)
        assert ("trt_int8_enable" in options) == int8 and options.get("trt_int8_enable", "True") == "True"
    written = write_repository(partial, tmp_path / "repo", name="partial_int8")
    (accelerator,) = written.config.optimization.execution_accelerators.gpu_execution_accelerator
    assert accelerator.parameters["precision_mode"] == "INT8"
