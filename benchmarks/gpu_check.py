"""The project's one GPU check: everything that needs a CUDA device, in one command.

    make gpu-check            # or: python -m benchmarks.gpu_check [--out DIR] [--quick]

Made for a bare GPU machine with Python, torch, nvcc, CMake and ninja and no network (the device
machines lent to some sessions): carry only the working tree. In order, each step timed and
recorded, later steps running even when one fails:

1. ``cmake``: build the CUDA kernels and their C++ tests for this GPU's architecture and run
   CTest (``kernel_vs_host``: the kernel against the host arithmetic; the factor self-check).
2. ``pytest``: every test marked ``requires_cuda`` (kernel vs ``rectify_scale`` fp32 bit for bit and
   fp16 within 1 ulp through the torch extension, which this builds; RFConv2d on CUDA vs CPU,
   fp16/bf16, channels-last).
3. ``kernel bandwidth``: :mod:`benchmarks.rectify_kernel`, the RFConvRectify kernel against a
   device-to-device copy (target >= 80 % of copy bandwidth).
4. ``torch latency``: :mod:`benchmarks.torch_overhead` on CUDA, RF-ResNet-50 / ResNet-50.

Writes ``gpu_check.json`` and ``gpu_check.md`` (a table for benchmarks/README.md) under ``--out``
(default ``artifacts/gpu_check``). Exits 2 at once, saying so, where torch sees no CUDA device;
1 if a step failed; 0 otherwise. Under 5 minutes on an H100/H200.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STEP_TIMEOUT_S = 240


@dataclass
class Step:
    """One step's outcome: ``status`` is ok, failed or skipped; ``seconds`` of wall time."""

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


def cmake_commands(build_dir: Path, capability: str) -> list[list[str]]:
    """Configure (kernels and their tests only, for one architecture), build, and run CTest."""
    return [
        ["cmake", "-S", str(ROOT / "trt_plugin_src"), "-B", str(build_dir), f"-DCMAKE_CUDA_ARCHITECTURES={capability}",
         "-DTensorRT_INCLUDE_DIR=TensorRT_INCLUDE_DIR-NOTFOUND"],
        ["cmake", "--build", str(build_dir), "-j", str(os.cpu_count() or 2)],
        ["ctest", "--test-dir", str(build_dir), "--output-on-failure"],
    ]


def pytest_command(quick: bool) -> list[str]:
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "requires_cuda",
               "tests/plugins", "tests/model"]
    return command + (["-x"] if quick else [])


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
    try:
        ok, detail, numbers = work()
    except Exception as err:  # noqa: BLE001 - a failed step is recorded, the others still run
        ok, detail, numbers = False, f"{type(err).__name__}: {err}", {}
    return Step(name, "ok" if ok else "failed", time.perf_counter() - start, detail, numbers)


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "artifacts" / "gpu_check", help="folder for the results")
    parser.add_argument("--quick", action="store_true", help="stop the tests at the first failure; shorter benchmarks")
    args = parser.parse_args(argv)
    device = cuda_device()
    if device is None:
        print("gpu-check: no CUDA device visible to torch; this check needs a GPU machine "
              "(run `make gpu-check` there and record its table in benchmarks/README.md)", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"gpu-check on {device['gpu']} (sm_{device['capability']}), torch {device['torch']}", flush=True)
    arch = f"{device['capability'][:-1]}.{device['capability'][-1]}"
    env = dict(os.environ, TORCH_CUDA_ARCH_LIST=os.environ.get("TORCH_CUDA_ARCH_LIST", arch),
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    build_dir = ROOT / "build" / "gpu_check"

    def kernel_bandwidth():
        from benchmarks import rectify_kernel

        path = args.out / "rectify_kernel.json"
        code = rectify_kernel.main(["--json", str(path)] + (["--blocks", "3"] if args.quick else []))
        return code == 0, f"wrote {path}", kernel_numbers(json.loads(path.read_text()))

    def torch_latency():
        from benchmarks import torch_overhead

        path = args.out / "torch_overhead.json"
        quick = ["--blocks", "3"] if args.quick else []
        code = torch_overhead.main(["--device", "cuda", "--json", str(path), *quick])
        return code == 0, f"wrote {path}", latency_numbers(json.loads(path.read_text()))

    steps = []
    for name, work in (
        ("cmake kernels + ctest", lambda: (*_run(cmake_commands(build_dir, device["capability"])), {})),
        ("pytest -m requires_cuda", lambda: (*_run([pytest_command(args.quick)], env), {})),
        ("kernel bandwidth", kernel_bandwidth),
        ("torch latency (cuda)", torch_latency),
    ):
        print(f"--- {name}", flush=True)
        steps.append(_timed(name, work))
        print(f"    {steps[-1].status} in {steps[-1].seconds:.0f} s: {steps[-1].detail.splitlines()[-1:]}", flush=True)
    (args.out / "gpu_check.json").write_text(json.dumps({"device": device, "steps": [asdict(s) for s in steps]},
                                                        indent=2) + "\n")
    table = markdown(device, steps)
    (args.out / "gpu_check.md").write_text(table)
    print("\n" + table)
    return 0 if all(s.status == "ok" for s in steps) else 1


if __name__ == "__main__":
    sys.exit(main())
