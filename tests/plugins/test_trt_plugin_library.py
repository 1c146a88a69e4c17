"""The TensorRT plugin library: how it registers itself, and the CUDA architectures it is built for.

* Always (no TensorRT headers needed): the default architectures in ``trt_plugin_src/CMakeLists.txt``
  include sm_75 (T4) and a Blackwell architecture, and exactly one entry carries PTX, the newest. With
  ``cmake`` and ``nvcc`` on PATH, configuring without ``-DCMAKE_CUDA_ARCHITECTURES`` (nothing is built)
  picks that list, less what this nvcc cannot build.
* With TensorRT headers (``TensorRT_INCLUDE_DIR``, or ``TensorRT_ROOT``/include, as
  ``test_trt_plugin_src.py``): the plugin library and its autoregistration companion are built for one
  architecture. The plugin library exports ``getCreators`` and ``setLoggerFinder``, carries its CUDA
  runtime (no ``libcudart`` NEEDED: a plan that embeds it runs where only the driver is installed),
  needs nothing from libnvinfer and never looks TensorRT up (nothing runs when it is loaded, so
  ``loadLibrary`` can always load it); the autoregistration library looks ``getPluginRegistry`` up with
  ``dlsym`` when loaded and finds the plugin library next to it; the registration host test drives
  both through a real ``dlopen``. Without headers these tests are skipped, saying how to get them.
"""

from __future__ import annotations

import ctypes.util
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers.tensorrt_headers import tensorrt_include_dir

SRC = Path(__file__).resolve().parents[2] / "trt_plugin_src"
CMAKELISTS = SRC / "CMakeLists.txt"
# One architecture keeps the build to one kernel compile (CI has 2 cores); any one nvcc 12 and 13 support.
TEST_ARCHITECTURE = "80"
BLACKWELL = {100, 101, 103, 110, 120, 121}
NO_HEADERS = ("TensorRT headers not found: set TensorRT_INCLUDE_DIR to TensorRT's include/ (or TensorRT_ROOT "
              "to its install dir) to build the plugin library and check how it registers itself; the headers "
              "alone suffice (no GPU or TensorRT libraries): `git clone --depth 1 https://github.com/NVIDIA/TensorRT "
              "/tmp/TensorRT && export TensorRT_INCLUDE_DIR=/tmp/TensorRT/include`")


def _default_architectures() -> list[str]:
    """RFCONV_DEFAULT_CUDA_ARCHITECTURES as CMakeLists.txt sets it, e.g. ["75-real", ..., "120"]."""
    match = re.search(r"^set\(RFCONV_DEFAULT_CUDA_ARCHITECTURES\s+([^)]*)\)", CMAKELISTS.read_text(), re.MULTILINE)
    assert match, "CMakeLists.txt sets no RFCONV_DEFAULT_CUDA_ARCHITECTURES"
    return match.group(1).split()


def _number(arch: str) -> int:
    return int(re.match(r"\d+", arch).group())


def _has_ptx(arch: str) -> bool:
    """CMake's CUDA_ARCHITECTURES: "NN-real" is SASS only, "NN-virtual" PTX only, plain "NN" both."""
    return not arch.endswith("-real")


def test_default_architectures_cover_t4_blackwell_and_ptx_of_the_newest():
    archs = _default_architectures()
    numbers = [_number(a) for a in archs]
    assert all(re.fullmatch(r"\d+(-real|-virtual)?", a) for a in archs), archs
    assert 75 in numbers, f"no sm_75 (T4) in {archs}"
    assert BLACKWELL & set(numbers), f"no Blackwell architecture in {archs}"
    assert {80, 86, 89, 90} <= set(numbers), archs
    ptx = [a for a in archs if _has_ptx(a)]
    assert len(ptx) == 1 and _number(ptx[0]) == max(numbers), f"PTX must be the newest architecture only: {archs}"
    assert numbers == sorted(numbers), "keep the list sorted: CMake gives the newest kept entry the PTX"
    # The list is what CMAKE_CUDA_ARCHITECTURES defaults to, not a comment.
    text = CMAKELISTS.read_text()
    assert "if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)" in text
    assert "IN LISTS RFCONV_DEFAULT_CUDA_ARCHITECTURES" in text


def _need_tools(*tools: str) -> None:
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not on PATH")


def _clean_env() -> dict[str, str]:
    """The environment without the TensorRT variables, so that configure checks do not depend on them."""
    return {k: v for k, v in os.environ.items() if k not in ("TensorRT_ROOT", "TensorRT_INCLUDE_DIR")}


def test_configure_picks_the_default_architectures_this_nvcc_supports(tmp_path):
    _need_tools("cmake", "nvcc")
    codes = subprocess.run(["nvcc", "--list-gpu-code"], capture_output=True, text=True, timeout=60)
    if codes.returncode != 0:
        pytest.skip(f"nvcc --list-gpu-code failed: {codes.stderr.strip()}")
    supported = set(re.findall(r"^sm_(\d+)$", codes.stdout, re.MULTILINE))
    expected = [a for a in _default_architectures() if str(_number(a)) in supported]
    if expected and not any(_has_ptx(a) for a in expected):
        expected[-1] = str(_number(expected[-1]))  # the newest kept one carries the PTX then
    configured = subprocess.run(["cmake", "-S", str(SRC), "-B", str(tmp_path / "build")], capture_output=True,
                                text=True, timeout=300, env=_clean_env())
    assert configured.returncode == 0, configured.stdout + configured.stderr
    match = re.search(r"RFConvRectify: CUDA architectures (\S+) \((\S+)\)", configured.stdout)
    assert match, configured.stdout
    assert match.group(1).split(";") == expected
    targets = match.group(2).split(",")
    assert "sm_75" in targets and f"compute_{_number(expected[-1])}" in targets, targets
    if {"100", "120"} <= supported:  # nvcc >= 12.8
        assert "sm_100" in targets and "sm_120" in targets, targets


@pytest.fixture(scope="module")
def plugin_build(tmp_path_factory) -> Path:
    """The plugin library and its registration test, built for TEST_ARCHITECTURE; returns the build dir."""
    include = tensorrt_include_dir()
    if include is None:
        pytest.skip(NO_HEADERS)
    assert (include / "NvInferRuntime.h").is_file(), f"the TensorRT headers given ({include}) lack NvInferRuntime.h"
    _need_tools("cmake", "nvcc", "nm", "readelf")
    build = tmp_path_factory.mktemp("trt_plugin_library")
    configured = subprocess.run(
        ["cmake", "-S", str(SRC), "-B", str(build), f"-DCMAKE_CUDA_ARCHITECTURES={TEST_ARCHITECTURE}",
         "-DCMAKE_BUILD_TYPE=Release", f"-DTensorRT_INCLUDE_DIR={include}"],
        capture_output=True, text=True, timeout=300)
    assert configured.returncode == 0, configured.stdout + configured.stderr
    assert "building the TensorRT plugin against headers" in configured.stdout, configured.stdout
    built = subprocess.run(["cmake", "--build", str(build), "-j", "2", "--target", "rfconv_trt_plugin",
                            "rfconv_trt_plugin_autoreg", "rfconv_registration_host_test"], capture_output=True,
                           text=True, timeout=600)
    assert built.returncode == 0, built.stdout[-4000:] + built.stderr[-4000:]
    return build


def _dynamic_symbols(library: Path, which: str) -> set[str]:
    listed = subprocess.run(["nm", "-D", which, str(library)], capture_output=True, text=True, check=True).stdout
    return {line.split()[-1].split("@")[0] for line in listed.splitlines() if line.strip()}


def test_library_exports_the_dynamic_registration_entry_points(plugin_build):
    library = plugin_build / "librfconv_trt_plugin.so"
    defined = _dynamic_symbols(library, "--defined-only")
    assert {"getCreators", "setLoggerFinder"} <= defined, sorted(defined)
    # It is not TensorRT: it must not define (and so shadow) the registry functions it looks up.
    assert not {"getPluginRegistry", "getLogger", "getInferLibVersion"} & defined


def _needed(library: Path) -> list[str]:
    """The DT_NEEDED entries of ``library`` (readelf -d)."""
    dynamic = subprocess.run(["readelf", "-d", str(library)], capture_output=True, text=True, check=True).stdout
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dynamic)


def test_libraries_carry_their_cuda_runtime(plugin_build):
    """cudart linked statically (as NVIDIA's embeddable plugin/vc library): no libcudart NEEDED, so a
    version-compatible plan that embeds the library needs no CUDA runtime installed where it runs."""
    for name in ("librfconv_trt_plugin.so", "librfconv_trt_plugin_autoreg.so"):
        needed = _needed(plugin_build / name)
        assert needed, f"readelf found no NEEDED entries in {name}"
        assert not [n for n in needed if n.startswith("libcudart")], f"{name} needs {needed}"
        assert not [n for n in needed if n.startswith("libnvinfer")], f"{name} needs {needed}"
    if shutil.which("ldd"):
        resolved = subprocess.run(["ldd", str(plugin_build / "librfconv_trt_plugin.so")], capture_output=True,
                                  text=True).stdout
        assert "libcudart" not in resolved, resolved


def test_plugin_library_does_nothing_when_loaded(plugin_build):
    """No registry lookup in the plugin library: TensorRT's loadLibrary dlopens it, and a registry call from
    its static initializers would re-enter the registry. The autoregistration library does the lookup."""
    library = plugin_build / "librfconv_trt_plugin.so"
    # (It may import dlopen/dlsym: the static CUDA runtime loads libcuda.so with them.)
    assert b"getPluginRegistry\0" not in library.read_bytes(), "the plugin library looks getPluginRegistry up"
    autoreg = plugin_build / "librfconv_trt_plugin_autoreg.so"
    assert {"dlsym", "dlopen"} <= _dynamic_symbols(autoreg, "--undefined-only")
    assert b"getPluginRegistry\0" in autoreg.read_bytes()
    assert "librfconv_trt_plugin.so" in _needed(autoreg)
    dynamic = subprocess.run(["readelf", "-d", str(autoreg)], capture_output=True, text=True, check=True).stdout
    assert "$ORIGIN" in dynamic, "the autoregistration library does not look for the plugin library next to it"
    assert "getCreators" not in _dynamic_symbols(autoreg, "--defined-only"), "loadLibrary must not accept it"


def test_registration_through_get_creators_and_on_autoregistration(plugin_build):
    """loadLibrary registers through getCreators with no registry call from the library while it loads;
    the autoregistration library registers on dlopen and deregisters on dlclose; both in turn register once."""
    result = subprocess.run([plugin_build / "rfconv_registration_host_test", plugin_build / "librfconv_trt_plugin.so",
                             plugin_build / "librfconv_trt_plugin_autoreg.so"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0 and "registration host test: 0 failures" in result.stdout, (
        result.stdout + result.stderr)


def test_preloaded_into_a_process_without_tensorrt_it_only_says_so(plugin_build):
    """LD_PRELOAD of the autoregistration library makes it try to load libnvinfer; where there is none the
    program runs on."""
    if shutil.which("true") is None:
        pytest.skip("no `true` program to preload the library into")
    library = plugin_build / "librfconv_trt_plugin_autoreg.so"
    result = subprocess.run(["true"], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "LD_PRELOAD": str(library)})
    assert result.returncode == 0, result.stderr
    noted = "RFConvRectify was not registered when librfconv_trt_plugin_autoreg.so was loaded" in result.stderr
    if ctypes.util.find_library("nvinfer") is None and not os.environ.get("LD_LIBRARY_PATH"):
        assert noted, result.stderr  # surely no libnvinfer to load: it must say it registered nothing
    if not noted:
        assert "RFConvRectify" not in result.stderr, result.stderr  # TensorRT was found: registered silently
    # The plugin library alone, preloaded, says nothing and does nothing.
    quiet = subprocess.run(["true"], capture_output=True, text=True, timeout=60,
                           env={**os.environ, "LD_PRELOAD": str(plugin_build / "librfconv_trt_plugin.so")})
    assert quiet.returncode == 0 and "rfconv" not in quiet.stderr, quiet.stderr
