"""onnxruntime-gpu on a machine where its GPU providers cannot load (no GPU, or a CUDA library
missing: the usual first-contact failure on a GPU box). Nothing may run on the CPU while saying
it runs on a GPU: an explicitly requested provider fails at start naming the library, ``auto``
serves on the CPU and says why, compare and bench record the GPU backends as skipped.

Skipped where onnxruntime-gpu is not installed, or where its CUDA EP loads (a GPU machine:
``make gpu-check`` covers that one).
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from exporter.backends.availability import CPU_EP, CUDA_EP, TENSORRT_EP, BackendSkipped
from exporter.backends.ort import available_providers, preload_cuda_libraries, provider_load_error
from exporter.serving.config import ServeConfig
from tests.helpers.serving_models import tiny_models

ROOT = Path(__file__).resolve().parents[2]


def _gpu_providers_fail_to_load() -> str | None:
    if CUDA_EP not in available_providers():
        return "needs onnxruntime-gpu (this onnxruntime has no CUDA EP)"
    preload_cuda_libraries()
    if provider_load_error(CUDA_EP) is None:
        return "the CUDA EP loads here (a GPU machine): make gpu-check runs the GPU path"
    return None


pytestmark = pytest.mark.skipif(_gpu_providers_fail_to_load() is not None,
                                reason=_gpu_providers_fail_to_load() or "")


def _serve(model: Path, provider: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "exporter.cli", "serve", str(model), "--provider", provider,
                           "--port", "0", "--no-grpc"], capture_output=True, text=True, timeout=120, cwd=ROOT)


@pytest.mark.parametrize(("provider", "ep"), [("cuda", CUDA_EP), ("tensorrt", TENSORRT_EP)])
def test_serve_with_an_explicit_gpu_provider_fails_at_start_naming_the_library(provider, ep):
    """Before: serve started, answered ready and served on the CPU (ONNX Runtime's fallback)."""
    try:
        done = _serve(tiny_models().dynamic, provider)
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"serve --provider {provider} started serving instead of failing: {err.stdout}")
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode != 0 and "listening on" not in done.stdout
    assert last.startswith("rfconv-deploy serve: error: ") and ep in last and ".so" in last, last
    assert provider_load_error(ep).split(":")[0] in last  # ONNX Runtime's own reason: the missing library


def test_serve_finds_the_cuda_libraries_that_compare_finds():
    """serve never imports torch; compare does. Both must see the same CUDA libraries (before: serve
    missed libcublasLt, which only ``import torch`` had loaded)."""
    probe = ("import sys\n{pre}\nfrom exporter.backends import ort\n"
             "ort.preload_cuda_libraries()\nprint('torch' in sys.modules, ort.provider_load_error(sys.argv[1]))")
    for ep in (CUDA_EP, TENSORRT_EP):
        without, with_torch = (
            subprocess.run([sys.executable, "-c", probe.format(pre=pre), ep], capture_output=True, text=True,
                           cwd=ROOT, check=True).stdout.strip()
            for pre in ("", "import torch"))
        assert without.startswith("False ") and with_torch.startswith("True ")
        assert without[len("False "):] == with_torch[len("True "):], (without, with_torch)


def test_auto_serves_on_the_cpu_and_says_which_provider_runs_and_why(caplog):
    from exporter.serving.metrics import exposition
    from exporter.serving.server import load_service

    lines = []
    with caplog.at_level(logging.WARNING, logger="exporter.backends.ort"):
        service = load_service(tiny_models().dynamic, ServeConfig(name="tiny"), "auto", report=lines.append)
    assert service.model.providers == [CPU_EP]
    warned = "\n".join(r.getMessage() for r in caplog.records)
    for ep in (TENSORRT_EP, CUDA_EP):
        assert ep in warned and provider_load_error(ep) in warned
    assert service.describe().startswith(f"providers {CPU_EP};") and lines == []  # CPU warm-up: debug log only
    assert service.model_config().parameters["execution_provider"].string_value == CPU_EP
    metrics = exposition(service.metrics_registry).decode()
    (line,) = [m for m in metrics.splitlines() if m.startswith("rfconv_execution_provider{")]
    assert f'provider="{CPU_EP}"' in line and line.endswith(" 1.0")
    service.close()


@pytest.mark.parametrize(("backend", "ep"), [("ort-cuda", CUDA_EP), ("ort-trt", TENSORRT_EP)])
def test_compare_and_bench_skip_a_gpu_backend_with_the_reason(backend, ep):
    """Before: the runner was made and its CPU session failed (or passed) later; bench aborted."""
    import onnx

    from exporter.backends.runners import RunnerOptions, make_runner
    from exporter.bench.latency import _runner

    path = tiny_models().dynamic
    with pytest.raises(BackendSkipped, match=f"{ep} does not load: .*\\.so"):
        make_runner(backend, str(path), onnx.load(str(path)), RunnerOptions())
    with pytest.raises(BackendSkipped, match=ep):
        _runner(backend, tiny_models().torch_model, path, "cpu")
