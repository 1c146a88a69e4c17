"""trt_plugin_src in CI (no GPU): the factor header agrees with rectify_scale, and everything compiles.

* The host arithmetic test binary is built with the host compiler; it prints the float32 factors the
  kernel computes for random geometries, which must equal ``rectify_scale(dtype=float32)`` bit for
  bit, and it reports the same invalid geometries as ``rectify_scale``'s ValueErrors.
* CMake + nvcc build the kernel library and the C++ tests (one architecture to keep CI fast); CTest
  runs the self-check and the GPU kernel test, which CTest reports as skipped without a GPU.
* With ``TensorRT_INCLUDE_DIR`` (or ``TensorRT_ROOT``) set, the plugin library is compiled against
  those headers and its host-side logic test runs; otherwise CMake must say that it skipped it.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from exporter.model.scale import rectify_scale
from tests.helpers.tensorrt_headers import tensorrt_include_dir

SRC = Path(__file__).resolve().parents[2] / "trt_plugin_src"

# GeometryStatus codes of rfconvRectifyFactor.h and the rectify_scale messages they correspond to.
STATUS_BY_MESSAGE = (
    ("must be >=", 1),
    ("too small for kernel_size", 2),
    ("sees only padding", 3),
    ("count_mode='rfconv' cannot", 4),
)


def _host_compiler() -> str | None:
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if name and shutil.which(name):
            return name
    return None


@pytest.fixture(scope="module")
def factor_binary(tmp_path_factory) -> Path:
    compiler = _host_compiler()
    if compiler is None:
        pytest.skip("no host C++ compiler (c++, g++ or clang++) on PATH")
    binary = tmp_path_factory.mktemp("factor") / "factorHostTest"
    subprocess.run([compiler, "-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror", f"-I{SRC}",
                    str(SRC / "tests" / "factorHostTest.cpp"), "-o", str(binary)],
                   check=True, capture_output=True, text=True)
    return binary


def test_factor_header_self_check(factor_binary):
    result = subprocess.run([factor_binary, "--self-check"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 failures" in result.stdout


def _random_geometry(rng: random.Random) -> dict:
    def axis():
        k, s, d = rng.randint(1, 7), rng.randint(1, 3), rng.randint(1, 3)
        p = rng.randint(0, d * (k - 1) + 1)  # the +1 makes some positions see only padding
        return k, s, p, d, rng.randint(1, 30)

    (kh, sh, ph, dh, h), (kw, sw, pw, dw, w) = axis(), axis()
    return {"in_hw": (h, w), "kernel_size": (kh, kw), "stride": (sh, sw), "padding": (ph, pw),
            "dilation": (dh, dw), "average_mode": rng.random() < 0.3,
            "count_mode": rng.choice(("exact", "rfconv"))}


def _line(g: dict) -> str:
    (h, w), (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (g[k] for k in ("in_hw", "kernel_size", "stride",
                                                                       "padding", "dilation"))
    return f"{h} {w} {kh} {kw} {sh} {sw} {ph} {pw} {dh} {dw} {int(g['average_mode'])} {g['count_mode']}"


def _expected(g: dict) -> torch.Tensor | int:
    """rectify_scale's float32 table, or the status code its ValueError corresponds to."""
    try:
        return rectify_scale(**g, dtype=torch.float32)
    except ValueError as err:
        for text, status in STATUS_BY_MESSAGE:
            if text in str(err):
                return status
        raise


def test_factors_match_rectify_scale_bit_for_bit(factor_binary):
    rng = random.Random(20240605)
    geometries = [_random_geometry(rng) for _ in range(600)]
    result = subprocess.run([factor_binary], input="\n".join(map(_line, geometries)) + "\n",
                            capture_output=True, text=True, timeout=120, check=True)
    lines = iter(result.stdout.splitlines())
    valid = invalid = 0
    for g in geometries:
        expected, head = _expected(g), next(lines).split()
        if isinstance(expected, int):
            assert head == ["error", str(expected)], g
            invalid += 1
            continue
        assert head[0] == "ok" and (int(head[1]), int(head[2])) == tuple(expected.shape), g
        got = torch.tensor([float.fromhex(v) for v in next(lines).split()], dtype=torch.float32)
        assert torch.equal(got.view(expected.shape), expected), g
        valid += 1
    assert valid > 300 and invalid > 30  # both branches exercised


@pytest.fixture(scope="module")
def cmake_build(tmp_path_factory) -> tuple[Path, str]:
    """Configure and build trt_plugin_src for sm_80 only; returns (build dir, configure output)."""
    for tool in ("cmake", "nvcc"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not on PATH: cannot build the CUDA kernel library")
    build = tmp_path_factory.mktemp("trt_plugin_build")
    configure = ["cmake", "-S", str(SRC), "-B", str(build), "-DCMAKE_CUDA_ARCHITECTURES=80",
                 "-DCMAKE_BUILD_TYPE=Release"]
    include = tensorrt_include_dir()
    if include is not None:
        configure.append(f"-DTensorRT_INCLUDE_DIR={include}")
    configured = subprocess.run(configure, capture_output=True, text=True, timeout=300)
    assert configured.returncode == 0, configured.stdout + configured.stderr
    built = subprocess.run(["cmake", "--build", str(build), "-j", "2"], capture_output=True, text=True,
                           timeout=600)
    assert built.returncode == 0, built.stdout[-4000:] + built.stderr[-4000:]
    return build, configured.stdout


def test_kernel_library_and_cpp_tests_build_and_pass(cmake_build):
    build, _ = cmake_build
    assert (build / "librfconv_rectify_kernels.a").is_file()
    result = subprocess.run(["ctest", "--test-dir", str(build), "--output-on-failure"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "factor_self_check" in result.stdout
    if not torch.cuda.is_available():
        assert "kernel_vs_host (Skipped)" in result.stdout


def test_plugin_library_built_only_with_tensorrt_headers(cmake_build):
    build, configure_output = cmake_build
    plugin = build / "librfconv_trt_plugin.so"
    if "building the TensorRT plugin against headers" not in configure_output:
        assert tensorrt_include_dir() is None, configure_output  # headers given but not used
        assert "SKIPPING the plugin library" in configure_output
        assert not plugin.exists()
        pytest.skip("TensorRT headers not found (set TensorRT_INCLUDE_DIR to TensorRT's include/ to "
                    "compile the plugin and run its host logic test)")
    assert plugin.is_file()
    exported = subprocess.run(["nm", "-D", "--defined-only", str(plugin)], capture_output=True, text=True)
    assert {"getCreators", "setLoggerFinder"} <= {line.split()[-1] for line in exported.stdout.splitlines()}
    result = subprocess.run([build / "rfconv_plugin_host_test"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "0 failures" in result.stdout, result.stdout + result.stderr
