"""rfconv-deploy bench: every available backend measured, unavailable ones skipped with a reason."""

import json

import pytest

from exporter.backends import availability as backends
from exporter.cli import main


@pytest.mark.slow
def test_bench_cli_reports_rows_skips_and_chart(tmp_path, capsys):
    code = main(["bench", "--batch-sizes", "1,2", "--blocks", "2", "--runs", "1", "--size", "32",
                 "--out", str(tmp_path)])  # the default backends: those that cannot run here are skipped
    assert code == 0
    report = json.loads((tmp_path / "bench.json").read_text())
    assert [(r["backend"], r["batch"]) for r in report["rows"]][:4] == [
        ("torch", 1), ("torch", 2), ("ort-cpu", 1), ("ort-cpu", 2)]
    for row in report["rows"]:
        assert row["ratio_min"] <= row["ratio"] <= row["ratio_max"]
        assert row["rf_p90_ms"] >= row["rf_median_ms"] > 0
        assert row["rf_images_per_s"] == pytest.approx(row["batch"] / row["rf_median_ms"] * 1e3)
    if not backends.tensorrt().available:
        assert report["skipped"]["trt"] == "the tensorrt package is not installed" or \
            "does not import" in report["skipped"]["trt"]
    if "CUDAExecutionProvider" not in backends.onnxruntime_providers():
        assert "CUDAExecutionProvider" in report["skipped"]["ort-cuda"]
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = capsys.readouterr().out
    ran = len({r["backend"] for r in report["rows"]})
    assert f"Backends: {ran} backends ran, {len(report['skipped'])} skipped: " in table
    if not backends.tensorrt().available:
        assert "trt       skipped" in table


def test_bench_rejects_unknown_backend(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--backends", "torch,tensorflow"])
    assert "unknown backend(s) ['tensorflow']" in capsys.readouterr().err


@pytest.mark.skipif(backends.tensorrt().available, reason="TensorRT runs on this machine")
def test_named_backend_that_cannot_run_is_an_error_before_any_export(tmp_path, capsys):
    """Was: two ResNet-50s built and exported, "trt skipped", exit 0."""
    out = tmp_path / "bench"
    assert main(["bench", "--backends", "trt", "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines() == [
        "rfconv-deploy bench: error: backend 'trt' cannot run here: the tensorrt package is not installed"]
    assert "exporting" not in captured.out and not out.exists()


def _tiny_registry(monkeypatch):
    """Bench builds registry models by name; a small rectified net stands in for them."""
    from exporter.model import registry
    from tests.helpers.export_models import small_rf_net

    monkeypatch.setattr(registry, "build_model", lambda name, rectify=True: small_rf_net(0).eval())


def test_provider_that_fails_to_load_inside_the_run_is_recorded_as_skipped(tmp_path, monkeypatch, capsys):
    """Was: bench aborted with no bench.json when a GPU provider listed by ONNX Runtime failed to
    load. The backend is recorded as skipped with the reason, the others are timed, and a named
    backend that did not run makes the exit code 1."""
    from exporter.bench import latency

    _tiny_registry(monkeypatch)
    made = latency._runner
    reason = ("ort-cpu: ONNX Runtime did not load CPUExecutionProvider (session providers: []); check the "
              "CUDA/TensorRT libraries it needs")

    def failing(backend, model, onnx_path, device):
        runner, name = made(backend, model, onnx_path, device)
        if backend == "ort-cpu":
            def activate():
                raise RuntimeError(reason)

            runner.activate = activate
        return runner, name

    monkeypatch.setattr(latency, "_runner", failing)
    code = main(["bench", "--backends", "torch,ort-cpu", "--batch-sizes", "1", "--blocks", "1", "--runs", "1",
                 "--size", "16", "--out", str(tmp_path)])
    report = json.loads((tmp_path / "bench.json").read_text())
    assert code == 1
    assert report["skipped"] == {"ort-cpu": reason}
    assert [(r["backend"], r["batch"]) for r in report["rows"]] == [("torch", 1)]
    assert report["summary"] == f"1 backend ran, 1 skipped: ort-cpu ({reason})"
    assert f"Backends: 1 backend ran, 1 skipped: ort-cpu ({reason})" in capsys.readouterr().out
