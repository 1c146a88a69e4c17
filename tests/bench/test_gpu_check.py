"""The GPU check's steps that run without a GPU: its refusal here, its commands, its table."""

from __future__ import annotations

import subprocess
import sys

import pytest

from benchmarks import gpu_check
from exporter.backends import availability


@pytest.mark.skipif(availability.cuda().available, reason="a CUDA device is visible: the refusal cannot be checked")
def test_refuses_at_once_without_a_cuda_device(tmp_path, capsys):
    assert gpu_check.main(["--out", str(tmp_path / "out")]) == 2
    assert "no CUDA device visible to torch" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_cmake_builds_for_the_devices_architecture(tmp_path):
    configure, build, ctest = gpu_check.cmake_commands(tmp_path, "90")
    assert "-DCMAKE_CUDA_ARCHITECTURES=90" in configure and configure[:2] == ["cmake", "-S"]
    assert build[:2] == ["cmake", "--build"] and ctest[0] == "ctest"


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
