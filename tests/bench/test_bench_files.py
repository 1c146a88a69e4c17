"""``rfconv-deploy bench FILE [FILE ...]``: the user's own .onnx files on every ONNX backend here,
a .plan on TensorRT only (refused with one line without it), registry names as before."""

import json

import pytest

from exporter.backends import availability
from exporter.cli import main
from tests.helpers.serving_models import tiny_models

needs_openvino = pytest.mark.skipif(not availability.ov_cpu().available, reason=availability.ov_cpu().detail)
FAST = ["--blocks", "2", "--runs", "1", "--size", "16"]


@needs_openvino
def test_two_files_on_ort_cpu_and_ov_cpu(tmp_path, capsys):
    tiny = tiny_models()
    out = tmp_path / "bench"
    code = main(["bench", str(tiny.dynamic), str(tiny.fixed), "--backends", "ort-cpu,ov-cpu",
                 "--batch-sizes", "1,2", *FAST, "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads((out / "bench.json").read_text())
    # the fixed file (static batch 1) is timed at batch 1 only, beside the dynamic one
    assert [(r["backend"], r["batch"], r["file"]) for r in report["rows"]] == [
        ("ort-cpu", 1, "tiny.onnx"), ("ort-cpu", 1, "tiny_fixed.onnx"), ("ort-cpu", 2, "tiny.onnx"),
        ("ov-cpu", 1, "tiny.onnx"), ("ov-cpu", 1, "tiny_fixed.onnx"), ("ov-cpu", 2, "tiny.onnx")]
    for row in report["rows"]:
        assert row["p90_ms"] >= row["median_ms"] > 0
        assert row["images_per_s"] == pytest.approx(row["batch"] / row["median_ms"] * 1e3)
        together = row["batch"] == 1
        assert (row["baseline"] == "tiny.onnx") is together and (row["ratio"] is not None) is together
        if together:
            assert row["ratio_min"] <= row["ratio"] <= row["ratio_max"]
    assert report["ran"] == ["ort-cpu", "ov-cpu"] and report["skipped"] == {}
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "timing ov-cpu batch 1: tiny.onnx, tiny_fixed.onnx" in captured.out
    assert "tiny_fixed.onnx has a static batch of 1" not in captured.out  # 1 is asked for
    assert "Backends: 2 backends ran" in captured.out


def test_default_backends_skip_what_cannot_run_here(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["bench", str(tiny_models().dynamic), "--batch-sizes", "2", *FAST, "--out", str(out)]) == 0
    report = json.loads((out / "bench.json").read_text())
    assert "ort-cpu" in report["ran"] and "torch" not in report["ran"] and "torch" not in report["skipped"]
    for name in ("ort-cpu", "ov-cpu", "ort-cuda", "ort-trt", "trt"):
        assert (name in report["ran"]) != (name in report["skipped"])
        if name in report["skipped"]:
            assert report["skipped"][name] == availability.why_not(name)


def test_a_file_a_backend_refuses_is_skipped_for_that_file_with_why(tmp_path, capsys):
    """OpenVINO cannot run a plugin-mode export: skipped for it, with what to do; the named backend
    that skipped a file makes the exit code 1."""
    if not availability.ov_cpu().available:
        pytest.skip(availability.ov_cpu().detail)
    import torch

    from exporter.onnx.export import export_onnx

    plugin = tmp_path / "plugin.onnx"
    export_onnx(tiny_models().torch_model, torch.randn(1, 3, 16, 16), plugin, mode="plugin")
    out = tmp_path / "bench"
    code = main(["bench", str(plugin), str(tiny_models().dynamic), "--backends", "ov-cpu", "--batch-sizes", "1",
                 *FAST, "--out", str(out)])
    assert code == 1
    report = json.loads((out / "bench.json").read_text())
    assert [r["file"] for r in report["rows"]] == ["tiny.onnx"]
    assert "RFConvRectify" in report["skipped"]["ov-cpu plugin.onnx"]
    assert "ov-cpu plugin.onnx skipped: " in capsys.readouterr().out


@pytest.mark.skipif(availability.tensorrt().available, reason="TensorRT runs on this machine")
def test_a_plan_without_tensorrt_is_one_line(tmp_path, capsys):
    plan = tmp_path / "model.plan"
    plan.write_bytes(b"not an engine")
    out = tmp_path / "bench"
    assert main(["bench", str(plan), "--out", str(out)]) == 2
    captured = capsys.readouterr()
    (line,) = captured.err.strip().splitlines()
    assert line.startswith(f"rfconv-deploy bench: error: {plan}: a TensorRT plan runs on TensorRT only, "
                           "which cannot run here (")
    assert line.endswith("bench the .onnx file it was built from instead")
    assert not out.exists() and captured.out == ""


@pytest.mark.parametrize("args, message", [
    (["missing.onnx"], "missing.onnx does not exist"),
    (["resnet50", "{onnx}"], "give .onnx/.plan files or one registry model name, not both"),
    (["resnet18", "resnet50"], "bench times one registry model at a time"),
    (["{onnx}", "--backends", "torch"], "backend(s) torch cannot time a file"),
])
def test_bad_targets_are_one_line(args, message, tmp_path, capsys):
    args = [a.format(onnx=tiny_models().dynamic) for a in args]
    assert main(["bench", *args, "--out", str(tmp_path / "bench")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert message in line
    assert not (tmp_path / "bench").exists()


def test_a_positional_registry_name_is_the_model(monkeypatch, tmp_path):
    """RF vs plain of a registry model stays: a name without .onnx/.plan is --model."""
    from exporter.bench import latency

    seen = {}

    def fake(config, log=print):
        seen["config"] = config
        return {"rows": [], "skipped": {}, "ran": [], "named": None, "model": config.model_name}

    monkeypatch.setattr(latency, "run_bench", fake)
    monkeypatch.setattr(latency, "format_table", lambda report: "")
    assert main(["bench", "resnet18", "--out", str(tmp_path)]) == 0
    assert seen["config"].model_name == "resnet18" and seen["config"].files == ()
