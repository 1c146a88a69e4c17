"""The TensorRT plugin library: how it registers itself, and the CUDA architectures it is built for.

* Always (no TensorRT headers needed): the default architectures in ``trt_plugin_src/CMakeLists.txt``
  include sm_75 (T4) and a Blackwell architecture, and exactly one entry carries PTX, the newest. With
  ``cmake`` and ``nvcc`` on PATH, configuring without ``-DCMAKE_CUDA_ARCHITECTURES`` (nothing is built)
  picks that list, less what this nvcc cannot build.
* With TensorRT headers (``TensorRT_INCLUDE_DIR``, or ``TensorRT_ROOT``/include, as
  ``test_trt_plugin_src.py``): the plugin library is built for one architecture. Its dynamic symbol
  table exports ``getCreators`` and ``setLoggerFinder`` (dynamic registration) and needs nothing from
  libnvinfer at link time; it has a static initializer (``.init_array``) that looks ``getPluginRegistry``
  up with ``dlsym`` (static registration); and the registration host test drives both, and both in
  turn, through a real ``dlopen`` of the built library. Without headers these tests are skipped.
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
              "to its install dir) to build the plugin library and check how it registers itself")


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
                            "rfconv_registration_host_test"], capture_output=True, text=True, timeout=600)
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


def test_library_registers_on_load_without_linking_libnvinfer(plugin_build):
    library = plugin_build / "librfconv_trt_plugin.so"
    # Static registration runs from a static initializer...
    sections = subprocess.run(["readelf", "-W", "-S", str(library)], capture_output=True, text=True,
                              check=True).stdout
    init_array = re.search(r"\.init_array\s+INIT_ARRAY\s+\S+\s+\S+\s+([0-9a-f]+)", sections)
    assert init_array and int(init_array.group(1), 16) > 0, "no static initializer (.init_array is empty)"
    # ...that finds getPluginRegistry at load time (dlsym), not through a link-time dependency on libnvinfer.
    undefined = _dynamic_symbols(library, "--undefined-only")
    assert {"dlsym", "dlopen"} <= undefined, sorted(undefined)
    assert "getPluginRegistry" not in undefined
    needed = subprocess.run(["readelf", "-d", str(library)], capture_output=True, text=True, check=True).stdout
    assert "libnvinfer" not in needed, needed
    assert b"getPluginRegistry\0" in library.read_bytes(), "the library does not look getPluginRegistry up"


def test_registration_on_load_and_through_get_creators(plugin_build):
    """dlopen registers once and dlclose deregisters; loadLibrary alone, and after a dlopen, registers once."""
    library = plugin_build / "librfconv_trt_plugin.so"
    result = subprocess.run([plugin_build / "rfconv_registration_host_test", library], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0 and "registration host test: 0 failures" in result.stdout, (
        result.stdout + result.stderr)


def test_preloaded_into_a_process_without_tensorrt_it_only_says_so(plugin_build):
    """LD_PRELOAD makes the library try to load libnvinfer; where there is none the program runs on."""
    if shutil.which("true") is None:
        pytest.skip("no `true` program to preload the library into")
    library = plugin_build / "librfconv_trt_plugin.so"
    result = subprocess.run(["true"], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "LD_PRELOAD": str(library)})
    assert result.returncode == 0, result.stderr
    noted = "was not registered when the library was loaded" in result.stderr
    if ctypes.util.find_library("nvinfer") is None and not os.environ.get("LD_LIBRARY_PATH"):
        assert noted, result.stderr  # surely no libnvinfer to load: it must say it registered nothing
    if not noted:
        assert "RFConvRectify" not in result.stderr, result.stderr  # TensorRT was found: registered silently
