"""Running the backends of a comparison: each backend, and PyTorch in float64 (and fp16), on the same feeds.

Each backend runs alone through Polygraphy's ``Comparator.run`` (so one that crashes is reported
instead of losing the rest) and gets a :class:`~exporter.comparison.report.BackendStatus`:
``"ran"`` with its mean latency, ``"skipped"`` with why it cannot run here, or ``"error"`` with
the first line of what it raised.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnx
import torch
from polygraphy.common import TensorMetadata
from polygraphy.comparator import Comparator, RunResults

from exporter.backends import availability
from exporter.backends.runners import (
    BackendSkipped,
    RunnerOptions,
    TorchRunner,
    custom_ops,
    make_runner,
    torch_input_metadata,
)
from exporter.comparison.report import BackendStatus
from exporter.comparison.verdicts import BF16_FLOOR, FP16_FLOOR, FP64_REFERENCE


@dataclass(frozen=True)
class RunSetup:
    """What every run of the backends at one input shape shares: options, the PyTorch side and
    the feeds (a list of feed dicts, one per iteration)."""

    options: RunnerOptions
    torch_model: torch.nn.Module | None
    torch_inputs: TensorMetadata | None
    feeds: list


def _error_status(name: str, err: Exception) -> BackendStatus:
    first = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return BackendStatus(name, "error", f"{type(err).__name__}: {first}")


def run_backends(names: Sequence[str], onnx_path, onnx_model: onnx.ModelProto, setup: RunSetup,
                 taps=()) -> tuple[list[BackendStatus], RunResults]:
    """Run each backend on the feeds; returns (statuses, RunResults of those that ran).

    Every backend but the (slow, untimed) reference evaluator first runs one warm-up batch so
    that the reported mean latency leaves out first-call costs.
    """
    statuses, results = [], RunResults()
    for name in names:
        try:
            runner = make_runner(name, str(onnx_path), onnx_model, setup.options, setup.torch_model,
                                 setup.torch_inputs, taps)
        except BackendSkipped as why:
            statuses.append(BackendStatus(name, "skipped", str(why)))
            continue
        try:
            warm_up = 0 if name == "onnx-ref" else 1
            ran = Comparator.run([runner], data_loader=setup.feeds, warm_up=warm_up)
        except Exception as err:  # noqa: BLE001 - any backend failure is reported, the others still run
            statuses.append(_error_status(name, err))
            continue
        iterations = ran[name]
        latency = 1000 * float(np.mean([it.runtime for it in iterations]))
        detail = backend_detail(name, setup.options)
        if name in ("ort-cpu", "onnx-ref") and custom_ops(onnx_model):
            detail += ", RFConvRectify by the plugin's Python reference"
        statuses.append(BackendStatus(name, "ran", detail, latency))
        results.append((name, iterations))
    return statuses, results


def backend_detail(name: str, options: RunnerOptions) -> str:
    """What ran ``name``: the package and its version (and the device, for PyTorch)."""
    if name == "torch":
        return f"PyTorch {torch.__version__} on {options.torch_device}"
    if name == "onnx-ref":
        return f"onnx.reference.ReferenceEvaluator (onnx {onnx.__version__})"
    if name == "trt":
        return availability.tensorrt().detail
    if name == "ov-cpu":
        precision = "bf16" if options.precision == "bf16" else "fp32"
        return f"{availability.ov_cpu().detail}, {precision}"
    return f"onnxruntime {availability.package_version('onnxruntime')}"


def copy_as(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """A copy of ``model`` on the CPU in eval mode with floating parameters and buffers in ``dtype``.

    Each tensor is converted straight into the copy (``deepcopy``'s memo hands it the converted
    tensor) instead of being cloned and then converted.
    """
    memo = {}
    for tensor in [*model.parameters(), *model.buffers()]:
        if id(tensor) in memo:
            continue
        value = tensor.detach().to("cpu", dtype if tensor.is_floating_point() else tensor.dtype, copy=True)
        memo[id(tensor)] = torch.nn.Parameter(value, requires_grad=False) \
            if isinstance(tensor, torch.nn.Parameter) else value
    return copy.deepcopy(model, memo).eval()


LOW_FLOOR_DTYPES = {FP16_FLOOR: torch.float16, BF16_FLOOR: torch.bfloat16}


def _to_bf16(_module, args):
    return tuple(a.to(torch.bfloat16) if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args)


def reference_runs(setup: RunSetup, onnx_model: onnx.ModelProto, low_floor: str | None, taps,
                   copies: dict) -> tuple[list[BackendStatus], RunResults]:
    """PyTorch in float64 on the CPU (:data:`FP64_REFERENCE`) and, with ``low_floor``
    (:data:`FP16_FLOOR` or :data:`BF16_FLOOR`), in that precision, untimed, with the same taps.
    ``copies`` keeps the model's copy at each dtype between the sizes of one comparison."""
    statuses, results = [], RunResults()
    wanted = [(FP64_REFERENCE, torch.float64)] + ([(low_floor, LOW_FLOOR_DTYPES[low_floor])] if low_floor else [])
    tapped = {tap.output_name for tap in taps}
    output_names = [out.name for out in onnx_model.graph.output if out.name not in tapped]
    for name, dtype in wanted:
        if dtype not in copies:
            copies[dtype] = copy_as(setup.torch_model, dtype)
            if dtype == torch.bfloat16:  # numpy has no bf16: fed in fp32, cast on entry to our copy
                copies[dtype].register_forward_pre_hook(_to_bf16)
        model = copies[dtype]
        metadata = setup.torch_inputs if dtype == torch.bfloat16 else torch_input_metadata(setup.torch_inputs, model)
        runner = TorchRunner(model, metadata, output_names, device="cpu", taps=taps, name=name)
        try:
            ran = Comparator.run([runner], data_loader=setup.feeds, warm_up=0)
        except Exception as err:  # noqa: BLE001 - reported like any backend failure
            statuses.append(_error_status(name, err))
            continue
        what = "ground truth" if dtype == torch.float64 else \
            f"{'bf16' if dtype == torch.bfloat16 else 'fp16'} noise floor"
        statuses.append(BackendStatus(name, "ran", f"PyTorch {torch.__version__} in {dtype} on cpu ({what})"))
        results.append((name, ran[name]))
    return statuses, results


def merge_statuses(per_size: list[list[BackendStatus]]) -> list[BackendStatus]:
    """One status per backend over all sizes: an error at any size is the status; latency is the
    first size's."""
    merged: dict[str, BackendStatus] = {}
    for statuses in per_size:
        for status in statuses:
            if status.name not in merged or (status.status == "error" and merged[status.name].status != "error"):
                merged[status.name] = status
    return list(merged.values())
