"""The GPU check's steps that run without a GPU: its refusal here, its commands, its table."""

from __future__ import annotations

import subprocess
import sys

import pytest

from exporter.backends import availability
from tools import gpu_check


@pytest.mark.skipif(availability.cuda().available, reason="a CUDA device is visible: the refusal cannot be checked")
def test_without_a_device_each_step_says_why_and_nothing_passes(tmp_path, capsys):
    assert gpu_check.main(["--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "no CUDA device visible to torch" in err
    assert not (tmp_path / "out").exists()
    lines = [line.strip() for line in err.splitlines() if line.startswith("  ")]
    names = [name for name, _ in gpu_check.steps(None, tmp_path, quick=False)]
    assert len(names) == 7
    for name in names:
        (line,) = [line for line in lines if line.startswith(f"{name}: ")]
        assert line.startswith(f"{name}: skipped: no CUDA device visible to torch"), line
    if "CUDAExecutionProvider" not in availability.onnxruntime_providers():
        (ort_line,) = [line for line in lines if line.startswith("onnxruntime CUDA EP: ")]
        assert "has no CUDAExecutionProvider" in ort_line and "onnxruntime-gpu" in ort_line, ort_line
    if not availability.tensorrt().available:
        (trt_line,) = [line for line in lines if line.startswith("tensorrt: ")]
        assert "tensorrt does not import" in trt_line, trt_line


def test_onnxruntime_cuda_step_skips_with_the_providers_it_has():
    if "CUDAExecutionProvider" in availability.onnxruntime_providers():
        from exporter.backends.ort import preload_cuda_libraries, provider_load_error

        preload_cuda_libraries()
        if provider_load_error("CUDAExecutionProvider") is None:
            pytest.skip("the CUDA EP loads here: the step runs for real")
        # onnxruntime-gpu without a usable GPU: the step fails naming the library, never a CPU run
        step = gpu_check._timed("onnxruntime CUDA EP", gpu_check.ort_cuda_step)
        assert step.status == "failed" and "did not load" in step.detail and ".so" in step.detail, step
        return
    step = gpu_check._timed("onnxruntime CUDA EP", gpu_check.ort_cuda_step)
    assert step.status == "skipped" and "CPUExecutionProvider" in step.detail and "onnxruntime-gpu" in step.detail


def test_a_missing_prerequisite_is_skipped_not_passed_and_not_failed(monkeypatch):
    monkeypatch.delenv("TensorRT_INCLUDE_DIR", raising=False)
    monkeypatch.delenv("TensorRT_ROOT", raising=False)
    step = gpu_check._timed("plugin", lambda: gpu_check.cmake_step("90", plugin=True))
    assert step.status == "skipped" and ("TensorRT_INCLUDE_DIR" in step.detail or "PATH" in step.detail), step
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("CUDACXX", raising=False)
    monkeypatch.setenv("CUDA_HOME", "/nonexistent")
    step = gpu_check._timed("kernels", lambda: gpu_check.cmake_step("90", plugin=False))
    assert step.status == "skipped" and "not on PATH" in step.detail, step


def test_a_pytest_step_where_no_test_ran_is_not_ok(monkeypatch):
    monkeypatch.setattr(gpu_check, "_run", lambda commands, env=None: (True, "12 skipped, 3 deselected in 1.0s"))
    step = gpu_check._timed("pytest", lambda: gpu_check.pytest_step(["pytest"], {}))
    assert step.status == "skipped" and "no test ran" in step.detail
    monkeypatch.setattr(gpu_check, "_run", lambda commands, env=None: (True, "3 passed, 2 skipped in 4.0s"))
    step = gpu_check._timed("pytest", lambda: gpu_check.pytest_step(["pytest"], {}))
    assert step.status == "ok" and step.numbers == {"passed": 3, "skipped": 2}


def test_cmake_builds_for_the_devices_architecture(tmp_path):
    configure, build, ctest = gpu_check.cmake_commands(tmp_path, "90", compiler="/opt/cuda/bin/nvcc")
    assert "-DCMAKE_CUDA_ARCHITECTURES=90" in configure and configure[:2] == ["cmake", "-S"]
    assert "-DCMAKE_CUDA_COMPILER=/opt/cuda/bin/nvcc" in configure
    assert "-DTensorRT_INCLUDE_DIR=TensorRT_INCLUDE_DIR-NOTFOUND" in configure
    assert build[:2] == ["cmake", "--build"] and ctest[0] == "ctest"
    with_plugin = gpu_check.cmake_commands(tmp_path, "90", tensorrt_include=tmp_path / "include")[0]
    assert f"-DTensorRT_INCLUDE_DIR={tmp_path / 'include'}" in with_plugin


def test_pytest_step_selects_the_cuda_tests():
    command = gpu_check.pytest_command(quick=False)
    collected = subprocess.run([*command, "--collect-only"], cwd=gpu_check.ROOT, capture_output=True, text=True,
                               timeout=300)
    assert collected.returncode == 0, collected.stdout + collected.stderr
    ids = [line for line in collected.stdout.splitlines() if "::" in line]
    assert any("test_rectify_kernel_torch.py" in i for i in ids) and any("test_layer.py" in i for i in ids)
    assert command[:3] == [sys.executable, "-m", "pytest"] and "requires_cuda" in command


def test_table_has_a_row_per_step_with_its_numbers():
    device = {"gpu": "NVIDIA H200", "capability": "90", "torch": "2.11.0", "cuda": "13.0"}
    steps = [gpu_check.Step("kernel bandwidth", "ok", 12.3, "wrote x", {"float32 rectify": 0.91}),
             gpu_check.Step("pytest -m requires_cuda", "failed", 40.0, "line one\n2 failed, 190 passed")]
    table = gpu_check.markdown(device, steps).splitlines()
    assert table[0].startswith("GPU check on NVIDIA H200 (sm_90), torch 2.11.0, CUDA 13.0")
    assert "| kernel bandwidth | ok | 12 | float32 rectify 0.91 |" in table
    assert "| pytest -m requires_cuda | failed | 40 | 2 failed, 190 passed |" in table


def test_kernel_and_latency_numbers_are_read_from_the_benchmarks_json():
    kernel = [{"dtype": "float16", "cases": {"copy": {"copy_bandwidth_fraction": 1.0},
                                             "rectify": {"copy_bandwidth_fraction": 0.8512}}}]
    assert gpu_check.kernel_numbers(kernel) == {"float16 rectify": 0.851}
    latency = {"forward": {"rf_ms": 10.5, "plain_ms": 10.0}, "forward_backward": {"rf_ms": 30.0, "plain_ms": 30.0}}
    assert gpu_check.latency_numbers(latency)["forward RF/plain"] == 1.05
