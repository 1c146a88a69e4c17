"""rfconv-deploy bench: every available backend measured, unavailable ones skipped with a reason."""

import json

import pytest

from exporter.backends import availability as backends
from exporter.cli import main


@pytest.mark.slow
def test_bench_cli_reports_rows_skips_and_chart(tmp_path, capsys):
    code = main(["bench", "--backends", "torch,ort-cpu,ort-cuda,trt", "--batch-sizes", "1,2", "--blocks", "2",
                 "--runs", "1", "--size", "32", "--out", str(tmp_path)])
    assert code == 0
    report = json.loads((tmp_path / "bench.json").read_text())
    assert [(r["backend"], r["batch"]) for r in report["rows"]] == [
        ("torch", 1), ("torch", 2), ("ort-cpu", 1), ("ort-cpu", 2)]
    for row in report["rows"]:
        assert row["ratio_min"] <= row["ratio"] <= row["ratio_max"]
        assert row["rf_p90_ms"] >= row["rf_median_ms"] > 0
        assert row["rf_images_per_s"] == pytest.approx(row["batch"] / row["rf_median_ms"] * 1e3)
    if not backends.tensorrt().available:
        assert "does not import" in report["skipped"]["trt"]
    if "CUDAExecutionProvider" not in backends.onnxruntime_providers():
        assert "CUDAExecutionProvider" in report["skipped"]["ort-cuda"]
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = capsys.readouterr().out
    assert "ort-cpu" in table and "trt       skipped" in table


def test_bench_rejects_unknown_backend(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--backends", "torch,tensorflow"])
    assert "unknown backend(s) ['tensorflow']" in capsys.readouterr().err
