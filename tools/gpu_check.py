"""The project's one GPU check: everything that needs a CUDA device, in one command.

    make gpu-check            # or: python -m tools.gpu_check [--out DIR] [--quick]

Made for a bare GPU machine (the device machines lent to some sessions: Python 3.12, CUDA torch,
nvcc and CMake, no TensorRT, CPU-only ONNX Runtime, no network): carry only the working tree. In
order, each step timed and recorded, later steps running even when one fails; a step whose
prerequisite is missing is recorded as ``skipped`` with the reason (never ``ok``):

1. ``cmake kernels + ctest``: build the CUDA kernels and their C++ tests for this GPU's
   architecture, in a fresh build folder, and run CTest (``kernel_vs_host``: the kernel against the
   host arithmetic; the factor self-check). Needs cmake, a CUDA compiler (nvcc on PATH,
   ``$CUDACXX`` or ``/usr/local/cuda/bin/nvcc``) and make or ninja.
2. ``cmake plugin library + ctest``: the same with the TensorRT plugin library, when
   ``TensorRT_INCLUDE_DIR`` (or ``TensorRT_ROOT``) names TensorRT's headers: the plugin's host
   tests, its registration test and, on this GPU, what its launches report.
3. ``pytest -m requires_cuda``: every test marked ``requires_cuda`` in tests/plugins, tests/model and
   tests/trt (kernel vs ``rectify_scale`` fp32 bit for bit and fp16 within 1 ulp through the torch
   extension, which this builds with nvcc and ninja; RFConv2d on CUDA vs CPU with TF32 off, fp16/bf16,
   channels-last). Tests that need TensorRT skip without it; the counts are recorded.
4. ``onnxruntime CUDA EP``: a small RF export run on ONNX Runtime's CUDA execution provider (TF32
   off) against its CPU provider, when the installed onnxruntime lists CUDAExecutionProvider
   (onnxruntime-gpu); skipped with the providers it has otherwise.
5. ``tensorrt``: ``pytest -m requires_tensorrt`` on tests/trt and tests/plugins when ``tensorrt``
   imports; skipped with the import error otherwise.
6. ``kernel bandwidth``: :mod:`benchmarks.rectify_kernel`, the RFConvRectify kernel against a
   device-to-device copy (target >= 80 % of copy bandwidth); needs the torch extension (nvcc, ninja).
7. ``torch latency``: :mod:`benchmarks.torch_overhead` on CUDA, RF-ResNet-50 / ResNet-50.

Writes ``gpu_check.json`` and ``gpu_check.md`` (a table for benchmarks/README.md) under ``--out``
(default ``artifacts/gpu_check``). Without a CUDA device visible to torch it prints each step with
why it cannot run, writes nothing and exits 2; otherwise exits 1 if a step failed, 0 if none did
(skipped steps are listed in the table).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STEP_TIMEOUT_S = 240


@dataclass
class Step:
    """One step's outcome: ``status`` is ok, failed or skipped (``detail`` then says why); ``seconds`` of wall
    time."""

    name: str
    status: str
    seconds: float
    detail: str
    numbers: dict = field(default_factory=dict)


def cuda_device() -> dict | None:
    """Name, compute capability and versions of CUDA device 0, or None when torch sees none."""
    import torch

    if not torch.cuda.is_available():
        return None
    major, minor = torch.cuda.get_device_capability(0)
    return {"gpu": torch.cuda.get_device_name(0), "capability": f"{major}{minor}", "torch": torch.__version__,
            "cuda": torch.version.cuda}


class Skip(Exception):  # noqa: N818 - a step's outcome, not an error
    """Raised by a step whose prerequisite is missing; the message says which and what to do."""


def cuda_compiler() -> str | None:
    """The CUDA compiler CMake and torch would use: ``$CUDACXX``, nvcc on PATH, or the default toolkit's."""
    for candidate in (os.environ.get("CUDACXX"), shutil.which("nvcc"),
                      str(Path(os.environ.get("CUDA_HOME", "/usr/local/cuda")) / "bin" / "nvcc")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def build_tool() -> list[str] | None:
    """CMake generator arguments for a build tool on PATH (make preferred, as CMake's default), or None."""
    if shutil.which("make"):
        return []
    if shutil.which("ninja"):
        return ["-G", "Ninja"]
    return None


def tensorrt_headers() -> Path | None:
    """TensorRT's include folder from ``TensorRT_INCLUDE_DIR`` or ``TensorRT_ROOT``/include, if it holds
    NvInferRuntime.h."""
    if os.environ.get("TensorRT_INCLUDE_DIR"):
        include = Path(os.environ["TensorRT_INCLUDE_DIR"])
    elif os.environ.get("TensorRT_ROOT"):
        include = Path(os.environ["TensorRT_ROOT"]) / "include"
    else:
        return None
    return include if (include / "NvInferRuntime.h").is_file() else None


def cmake_commands(build_dir: Path, capability: str, *, compiler: str = "nvcc", generator: list[str] = (),
                   tensorrt_include: Path | None = None) -> list[list[str]]:
    """Configure (for one architecture; the plugin library only with ``tensorrt_include``), build, run CTest."""
    include = str(tensorrt_include) if tensorrt_include is not None else "TensorRT_INCLUDE_DIR-NOTFOUND"
    return [
        ["cmake", "-S", str(ROOT / "trt_plugin_src"), "-B", str(build_dir), *generator,
         f"-DCMAKE_CUDA_ARCHITECTURES={capability}", f"-DCMAKE_CUDA_COMPILER={compiler}",
         f"-DTensorRT_INCLUDE_DIR={include}"],
        ["cmake", "--build", str(build_dir), "-j", str(os.cpu_count() or 2)],
        ["ctest", "--test-dir", str(build_dir), "--output-on-failure"],
    ]


def cmake_ready(*, plugin: bool) -> tuple[str, list[str], Path | None]:
    """(CUDA compiler, generator arguments, TensorRT headers or None) for step 1 or 2 (``plugin``), or Skip
    naming what is missing."""
    missing = [tool for tool in ("cmake", "ctest") if shutil.which(tool) is None]
    if missing:
        raise Skip(f"{' and '.join(missing)} not on PATH (pip install cmake, or the system package)")
    compiler = cuda_compiler()
    if compiler is None:
        raise Skip("no CUDA compiler: nvcc is not on PATH, $CUDACXX is unset and /usr/local/cuda/bin/nvcc is absent")
    generator = build_tool()
    if generator is None:
        raise Skip("neither make nor ninja is on PATH (CMake needs one to build)")
    include = None
    if plugin:
        include = tensorrt_headers()
        if include is None:
            raise Skip("no TensorRT headers: set TensorRT_INCLUDE_DIR to TensorRT's include/ (the headers of "
                       "github.com/NVIDIA/TensorRT suffice) to build and test the plugin library")
    return compiler, generator, include


def cmake_step(capability: str, *, plugin: bool) -> tuple[bool, str, dict]:
    """Step 1 (kernels) or 2 (with the plugin library): raises Skip naming what is missing."""
    compiler, generator, include = cmake_ready(plugin=plugin)
    with tempfile.TemporaryDirectory(prefix="gpu_check_cmake_") as build_dir:
        ok, detail = _run(cmake_commands(Path(build_dir), capability, compiler=compiler, generator=generator,
                                         tensorrt_include=include))
    return ok, detail, {}


def pytest_command(quick: bool, marker: str = "requires_cuda",
                   folders: tuple[str, ...] = ("tests/plugins", "tests/model", "tests/trt")) -> list[str]:
    command = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-m", marker, *folders]
    return command + (["-x"] if quick else [])


def pytest_counts(output: str) -> dict:
    """The counts of pytest's summary line (``3 passed, 2 skipped in 4.0s`` -> {passed: 3, skipped: 2})."""
    counts = {}
    for line in reversed(output.splitlines()):
        found = re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected|xfailed|xpassed)", line)
        if found:
            counts = {word: int(number) for number, word in found}
            break
    return counts


def pytest_step(command: list[str], env: dict) -> tuple[bool, str, dict]:
    """Run a pytest step; ok only when at least one test passed and none failed (no PASS for what did not run)."""
    ok, detail = _run([command], env)
    counts = pytest_counts(detail)
    if ok and not counts.get("passed"):
        raise Skip(f"no test ran: {detail.splitlines()[-1] if detail else 'no output'}")
    return ok, detail, counts


def ort_cuda_ready():
    """``onnxruntime`` when it lists the CUDA EP, else Skip with the providers it has."""
    try:
        import onnxruntime as ort
    except ImportError as err:
        raise Skip(f"onnxruntime does not import ({err})") from err
    providers = ort.get_available_providers()
    if "CUDAExecutionProvider" not in providers:
        raise Skip(f"onnxruntime {ort.__version__} has no CUDAExecutionProvider (providers: {', '.join(providers)}); "
                   "pip install onnxruntime-gpu to check the CUDA EP")
    return ort


def ort_cuda_step() -> tuple[bool, str, dict]:
    """Step 4: a small RF export on ONNX Runtime's CUDA EP (TF32 off) against its CPU EP, at fp32 tolerance."""
    ort_cuda_ready()
    import numpy as np
    import torch
    from torch import nn

    from exporter import RFConv2d
    from exporter.onnx.export import export_onnx

    torch.manual_seed(0)
    model = nn.Sequential(RFConv2d(3, 8, 3, padding=1), nn.ReLU(), RFConv2d(8, 4, 3, stride=2, padding=1)).eval()
    x = torch.randn(2, 3, 17, 13)
    with tempfile.TemporaryDirectory(prefix="gpu_check_ort_") as folder:
        path = Path(folder) / "rf.onnx"
        export_onnx(model, x, path)
        from exporter.backends.ort import CPU_EP, CUDA_EP, ProviderUnavailable, create_session, cuda_ep_options

        cpu = create_session(path, [CPU_EP])
        try:  # no CPU fallback: the CUDA EP runs, or the reason (the library it misses) is the answer
            cuda = create_session(path, [(CUDA_EP, cuda_ep_options(tf32=False)), CPU_EP], required=[CUDA_EP])
        except ProviderUnavailable as err:
            return False, f"the CUDA EP did not load: {err}", {}
        feed = {cpu.get_inputs()[0].name: x.numpy()}
        want, got = cpu.run(None, feed)[0], cuda.run(None, feed)[0]
    error = float(np.max(np.abs(got - want)) / max(float(np.max(np.abs(want))), 1e-30))
    ok = bool(np.allclose(got, want, rtol=1e-4, atol=1e-4 * float(np.max(np.abs(want)))))
    return ok, f"CUDA EP vs CPU EP, max error / max|ref| = {error:.2e} (tolerance 1e-4)", {"max rel error": error}


def tensorrt_ready() -> None:
    """Skip when the tensorrt package does not import."""
    from exporter.backends import availability

    found = availability.tensorrt()
    if not found.available:
        raise Skip(f"{found.detail}; install TensorRT's Python package to build and run engines")


def tensorrt_step(quick: bool, env: dict) -> tuple[bool, str, dict]:
    """Step 5: the TensorRT tests, when the tensorrt package imports."""
    tensorrt_ready()
    return pytest_step(pytest_command(quick, "requires_tensorrt", ("tests/trt", "tests/plugins")), env)


def torch_extension_ready() -> None:
    """Raises Skip when the torch extension holding the kernel cannot be built here (nvcc, ninja)."""
    if cuda_compiler() is None:
        raise Skip("no CUDA compiler (nvcc) to build the torch extension")
    from torch.utils.cpp_extension import is_ninja_available

    if not is_ninja_available():
        raise Skip("ninja is not available (pip install ninja): torch builds its extensions with it")


def _run(commands: list[list[str]], env: dict | None = None) -> tuple[bool, str]:
    """Run ``commands`` in order until one fails; (all ok, the last lines of output)."""
    output = ""
    for command in commands:
        if shutil.which(command[0]) is None and not Path(command[0]).is_file():
            return False, f"{command[0]} is not on PATH"
        try:
            result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=STEP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return False, f"{' '.join(command[:3])} ... ran past {STEP_TIMEOUT_S} s"
        output = (result.stdout + result.stderr).strip()
        if result.returncode != 0:
            return False, "\n".join(output.splitlines()[-15:])
    return True, "\n".join(output.splitlines()[-3:])


def _timed(name: str, work) -> Step:
    start = time.perf_counter()
    status = "failed"
    try:
        ok, detail, numbers = work()
        status = "ok" if ok else "failed"
    except Skip as why:
        status, detail, numbers = "skipped", str(why), {}
    except Exception as err:  # noqa: BLE001 - a failed step is recorded, the others still run
        detail, numbers = f"{type(err).__name__}: {err}", {}
    return Step(name, status, time.perf_counter() - start, detail, numbers)


def kernel_numbers(results: list[dict]) -> dict:
    """Per dtype, the RFConvRectify kernel's share of device-to-device copy bandwidth."""
    return {f"{r['dtype']} {name}": round(case["copy_bandwidth_fraction"], 3)
            for r in results for name, case in r["cases"].items() if name != "copy"}


def latency_numbers(result: dict) -> dict:
    return {f"{key} RF/plain": round(result[key]["rf_ms"] / result[key]["plain_ms"], 3)
            for key in ("forward", "forward_backward")} | {
            f"{key} RF ms": round(result[key]["rf_ms"], 2) for key in ("forward", "forward_backward")}


def markdown(device: dict, steps: list[Step]) -> str:
    """The table to paste into benchmarks/README.md."""
    lines = [f"GPU check on {device['gpu']} (sm_{device['capability']}), torch {device['torch']}, "
             f"CUDA {device['cuda']}, {time.strftime('%Y-%m-%d')}: `make gpu-check`", "",
             "| step | status | seconds | numbers |", "| --- | --- | --- | --- |"]
    for step in steps:
        summary = ", ".join(f"{k} {v}" for k, v in step.numbers.items()) or (step.detail.splitlines() or [""])[-1]
        lines.append(f"| {step.name} | {step.status} | {step.seconds:.0f} | {summary.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def steps(device: dict | None, out: Path, quick: bool) -> list[tuple[str, object]]:
    """The steps in order, as (name, work); ``device`` None gives works that each raise Skip with the reason."""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if device is not None:
        arch = f"{device['capability'][:-1]}.{device['capability'][-1]}"
        env["TORCH_CUDA_ARCH_LIST"] = os.environ.get("TORCH_CUDA_ARCH_LIST", arch)
        compiler = cuda_compiler()
        if compiler is not None and "CUDA_HOME" not in env:
            env["CUDA_HOME"] = str(Path(compiler).resolve().parents[1])

    def kernel_bandwidth():
        torch_extension_ready()
        from benchmarks import rectify_kernel

        path = out / "rectify_kernel.json"
        code = rectify_kernel.main(["--json", str(path)] + (["--blocks", "3"] if quick else []))
        return code == 0, f"wrote {path}", kernel_numbers(json.loads(path.read_text()))

    def torch_latency():
        from benchmarks import torch_overhead

        path = out / "torch_overhead.json"
        code = torch_overhead.main(["--device", "cuda", "--json", str(path), *(["--blocks", "3"] if quick else [])])
        return code == 0, f"wrote {path}", latency_numbers(json.loads(path.read_text()))

    work = [
        ("cmake kernels + ctest", lambda: cmake_step(device["capability"], plugin=False),
         lambda: cmake_ready(plugin=False)),
        ("cmake plugin library + ctest", lambda: cmake_step(device["capability"], plugin=True),
         lambda: cmake_ready(plugin=True)),
        ("pytest -m requires_cuda", lambda: pytest_step(pytest_command(quick), env), lambda: None),
        ("onnxruntime CUDA EP", ort_cuda_step, ort_cuda_ready),
        ("tensorrt", lambda: tensorrt_step(quick, env), tensorrt_ready),
        ("kernel bandwidth", kernel_bandwidth, torch_extension_ready),
        ("torch latency (cuda)", torch_latency, lambda: None),
    ]
    if device is None:
        return [(name, _without_device(ready)) for name, _, ready in work]
    return [(name, run) for name, run, _ in work]


def _without_device(ready):
    """A step's work on a machine without a CUDA device: Skip naming that, and whatever else it lacks."""

    def work():
        try:
            ready()
        except Skip as why:
            raise Skip(f"no CUDA device visible to torch; also {why}") from why
        raise Skip("no CUDA device visible to torch (its other prerequisites are here)")

    return work


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "artifacts" / "gpu_check", help="folder for the results")
    parser.add_argument("--quick", action="store_true", help="stop the tests at the first failure; shorter benchmarks")
    args = parser.parse_args(argv)
    device = cuda_device()
    if device is None:
        from exporter.backends import availability

        print(f"gpu-check: {availability.cuda().detail}: nothing can run; this check needs a GPU machine (run "
              "`make gpu-check` there and record its table in benchmarks/README.md). Each step:", file=sys.stderr)
        for name, work in steps(None, args.out, args.quick):
            print(f"  {name}: skipped: {_timed(name, work).detail}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"gpu-check on {device['gpu']} (sm_{device['capability']}), torch {device['torch']}, "
          f"Python {sys.version.split()[0]}", flush=True)
    results = []
    for name, work in steps(device, args.out, args.quick):
        print(f"--- {name}", flush=True)
        results.append(_timed(name, work))
        print(f"    {results[-1].status} in {results[-1].seconds:.0f} s: {results[-1].detail.splitlines()[-1:]}",
              flush=True)
    (args.out / "gpu_check.json").write_text(json.dumps({"device": device, "steps": [asdict(s) for s in results]},
                                                        indent=2) + "\n")
    table = markdown(device, results)
    (args.out / "gpu_check.md").write_text(table)
    print("\n" + table)
    return 0 if all(s.status != "failed" for s in results) else 1


if __name__ == "__main__":
    sys.exit(main())
