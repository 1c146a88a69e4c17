"""Accuracy comparison of an exported model across backends, built on Polygraphy's ``Comparator``.

``compare(onnx_path, torch_model, backends=...)`` runs each backend on the same inputs with
``Comparator.run`` (one backend at a time, so one that crashes is reported instead of losing the
rest), checks every backend against the first one that ran with ``Comparator.compare_accuracy``
and ``SimpleCompareFunc``, and returns a :class:`~exporter.comparison.report.CompareReport`.

Tolerances: an element fails where both ``|a-b| > atol`` and ``|a-b| > rtol*|ref|`` (Polygraphy's
element-wise check). ``rtol`` defaults by precision (:data:`DEFAULT_TOLERANCE`); ``atol``
defaults, per output, to ``rtol * max|ref|``: errors are measured against the output's scale, the
project's definition of relative error, so that logits near zero do not fail on noise.
With ``per_layer=True`` and a failed comparison it reruns with the tensor after every rectified
conv exposed (see :mod:`exporter.comparison.layerwise`) and names the first layer where backends diverge.

"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from polygraphy.common import TensorMetadata
from polygraphy.comparator import Comparator, RunResults, SimpleCompareFunc
from polygraphy.logger import G_LOGGER

from exporter.backends import availability
from exporter.backends.availability import BACKENDS
from exporter.backends.runners import (
    BackendSkipped,
    RunnerOptions,
    custom_ops,
    feed_to_tensors,
    make_runner,
    torch_input_metadata,
)
from exporter.comparison.defaults import DEFAULT_BACKENDS, DEFAULT_TOLERANCE, tolerance_precision
from exporter.comparison.feeds import load_feeds, resolve_input_metadata, save_feeds
from exporter.comparison.layerwise import LayerMatchError, find_rectified_layers, layer_taps, with_layer_outputs
from exporter.comparison.report import (
    BackendStatus,
    CompareReport,
    LayerDivergence,
    PairResult,
    PerLayerResult,
    pair_results,
)
from exporter.onnx.options import PRECISIONS
from exporter.onnx.precision import file_precision as onnx_file_precision

ITERATION_FILE_WIDTH = 10  # per-iteration file names as RunResults.load_streaming reads them


@dataclass(frozen=True)
class _Setup:
    """What every run of the backends shares: options, the PyTorch side and the inputs."""

    options: RunnerOptions
    torch_model: torch.nn.Module | None
    torch_inputs: TensorMetadata | None
    feeds: list


def _run_backends(names, onnx_path, onnx_model, setup: _Setup, taps=(), timed=True):
    """Run each backend on the feeds; returns (statuses, merged RunResults of those that ran).

    With ``timed``, every backend but the (slow, untimed) reference evaluator first runs one
    warm-up batch so that the reported mean latency leaves out first-call costs.
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
            warm_up = 1 if timed and name != "onnx-ref" else 0
            ran = Comparator.run([runner], data_loader=setup.feeds, warm_up=warm_up)
        except Exception as err:  # noqa: BLE001 - any backend failure is reported, the others still run
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            statuses.append(BackendStatus(name, "error", f"{type(err).__name__}: {first}"))
            continue
        iterations = ran[name]
        latency = 1000 * float(np.mean([it.runtime for it in iterations]))
        detail = _backend_detail(name, setup.options)
        if name in ("ort-cpu", "onnx-ref") and custom_ops(onnx_model):
            detail += ", RFConvRectify by the plugin's Python reference"
        statuses.append(BackendStatus(name, "ran", detail, latency))
        results.append((name, iterations))
    return statuses, results


def _backend_detail(name: str, options: RunnerOptions) -> str:
    if name == "torch":
        return f"PyTorch {torch.__version__} on {options.torch_device}"
    if name == "onnx-ref":
        return f"onnx.reference.ReferenceEvaluator (onnx {onnx.__version__})"
    if name == "trt":
        return availability.tensorrt().detail
    return f"onnxruntime {availability.package_version('onnxruntime')}"


def _output_atols(reference: list, rtol: float) -> dict[str, float]:
    """``rtol * max|ref|`` per output, over every iteration of the reference runner."""
    scale = {}
    for iteration in reference:
        for name, value in iteration.items():
            magnitude = np.abs(np.asarray(value, dtype=np.float64))
            largest = float(np.max(magnitude[np.isfinite(magnitude)], initial=0.0))
            scale[name] = max(scale.get(name, 0.0), largest)
    return {name: rtol * value for name, value in scale.items()}


def _compare_runs(results: RunResults, atol: float | None, rtol: float):
    """Polygraphy accuracy check of every runner against the first.

    Pairs are (candidate, reference): Polygraphy divides by the *second* output for relative
    errors, so they come out relative to the reference. ``atol=None`` is scale-relative.
    """
    comparisons = [(i, 0) for i in range(1, len(results))]
    atols = atol if atol is not None else _output_atols(results[0][1], rtol)
    func = SimpleCompareFunc(atol=atols, rtol=rtol, check_error_stat="elemwise")
    return Comparator.compare_accuracy(results, comparisons=comparisons, compare_func=func)[0]


def _save_results(results: RunResults, path: str) -> str:
    """Save as one JSON file (path with a suffix) or one file per iteration in a new directory."""
    if os.path.splitext(path)[1]:
        results.save(path)
        return path
    directory = Path(path)
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise ValueError(
            f"save_results={path!r}: give a new or empty directory, or a file name ending in .json"
        )
    directory.mkdir(parents=True, exist_ok=True)
    for index, single in enumerate(results.split()):
        single.save(str(directory / f"{index:0{ITERATION_FILE_WIDTH}d}.json"))
    return path


def _per_layer(onnx_model, ran, failing: list[PairResult], setup: _Setup, atol, rtol, workdir):
    """Rerun the backends that ran with every rectified conv's output exposed.

    Returns every layer's statistics for every pair, and for each ``failing`` pair the first
    layer where it leaves the tolerance.
    """
    layers = find_rectified_layers(onnx_model)
    if not layers:
        return PerLayerResult("no rectified conv (Conv -> scale Mul, or RFConvRectify) in the ONNX graph")
    references = []
    if "torch" in ran:
        try:
            first = feed_to_tensors(setup.feeds[0], setup.torch_inputs)
            references = layer_taps(layers, onnx_model, setup.torch_model, first)
        except LayerMatchError as err:
            return PerLayerResult(f"cannot match ONNX layers to PyTorch modules: {err}")
    taps = [ref.tap for ref in references]
    matched = {ref.tap.output_name: ref for ref in references}
    layer_model = with_layer_outputs(onnx_model, layers)
    layer_path = Path(workdir) / "layers.onnx"
    onnx.save(layer_model, str(layer_path))
    statuses, results = _run_backends(ran, layer_path, layer_model, setup, taps, timed=False)
    failed = [f"{s.name} ({s.detail})" for s in statuses if s.status != "ran"]
    if failed or len(results) < 2:
        why = ", ".join(failed) or "fewer than two backends ran"
        return PerLayerResult(f"could not rerun with layer outputs: {why}")
    accuracy = _compare_runs(results, atol, rtol)
    pairs = pair_results(results, accuracy, outputs=[layer.tensor for layer in layers])
    layer_dicts = [
        dict(asdict(layer), torch_module=matched[layer.tensor].tap.module if layer.tensor in matched else None,
             fused_bias_reference=matched[layer.tensor].shift_source if layer.tensor in matched else None)
        for layer in layers
    ]
    failing_names = {(p.reference, p.backend) for p in failing}
    divergences = [_first_divergence(pair, layers, layer_dicts) for pair in pairs
                   if (pair.reference, pair.backend) in failing_names]
    return PerLayerResult("ran", layer_dicts, pairs, divergences)


def _first_divergence(pair: PairResult, layers, layer_dicts) -> LayerDivergence:
    for layer, info, stats in zip(layers, layer_dicts, pair.outputs, strict=True):
        if not stats.passed:
            module = f", PyTorch module {info['torch_module']!r}" if info["torch_module"] else ""
            scale = f", scale {layer.scale!r}" if layer.scale else ""
            explanation = (
                f"first diverges at rectified conv #{layer.index} (Conv {layer.conv!r} -> {layer.node!r}"
                f"{scale}{module}): max abs error {stats.max_abs:.3g} (reference values up to "
                f"{stats.reference_max_abs:.3g}), max rel error {stats.max_rel:.3g}"
                if stats.max_abs is not None else
                f"first diverges at rectified conv #{layer.index} ({layer.node!r}): {stats.note}"
            )
            return LayerDivergence(pair.reference, pair.backend, info, stats, explanation)
    return LayerDivergence(
        pair.reference, pair.backend, None, None,
        f"all {len(layers)} rectified conv outputs agree: the difference arises after them",
    )


def compare(
    onnx_path: str | os.PathLike,
    torch_model: torch.nn.Module | None = None,
    *,
    backends: Sequence[str] = DEFAULT_BACKENDS,
    inputs: str = "random",
    iterations: int | None = None,
    seed: int = 0,
    batch_size: int | None = None,
    input_shape: Sequence[int] | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    precision: str | None = None,
    per_layer: bool = False,
    save_results: str | None = None,
    save_inputs: str | None = None,
    torch_device: str = "cpu",
    plugin_library: str | None = None,
    torch_model_name: str | None = None,
    verbose: bool = False,
) -> CompareReport:
    """Compare ``backends`` (names from :data:`exporter.backends.runners.BACKENDS`) on one ONNX model.

    ``torch_model`` is the PyTorch model the file was exported from (needed for ``"torch"``).
    ``inputs`` is ``"random"`` (seeded with ``seed``), a folder of images or a Polygraphy input
    JSON; ``iterations`` caps how many batches are used (random: default 1). ``precision``
    defaults to the file's own and sets the default tolerances (:data:`DEFAULT_TOLERANCE`);
    ``rtol`` overrides it, ``atol`` replaces the scale-relative absolute tolerance (see the module
    docstring). Unavailable backends are reported as skipped, never dropped. Plugin-mode models
    run on ``trt`` with ``plugin_library`` (default: the built one) and on ``ort-cpu``/``onnx-ref``
    through the plugin's Python reference.
    """
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise ValueError(f"ONNX model {onnx_path} does not exist")
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        raise ValueError(f"unknown backend(s) {', '.join(unknown)}; choose from {', '.join(BACKENDS)}")
    if len(set(backends)) != len(backends):
        raise ValueError(f"backends are listed more than once: {', '.join(backends)}")
    for option, value in (("iterations", iterations), ("batch_size", batch_size)):
        if value is not None and value < 1:
            raise ValueError(f"{option.replace('_', '-')} must be >= 1, got {value}")
    if precision is not None and precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {PRECISIONS}")
    try:
        onnx_model = onnx.load(str(onnx_path))
    except Exception as err:  # noqa: BLE001 - protobuf raises assorted errors for non-ONNX files
        raise ValueError(f"cannot read {onnx_path} as an ONNX model: {err}") from None
    file_precision = onnx_file_precision(onnx_model)
    precision = precision or tolerance_precision(file_precision)
    rtol = DEFAULT_TOLERANCE[precision] if rtol is None else rtol

    quiet = nullcontext() if verbose else G_LOGGER.verbosity(G_LOGGER.CRITICAL)
    with quiet, tempfile.TemporaryDirectory(prefix="rfconv-compare-") as workdir:
        metadata = resolve_input_metadata(onnx_model, batch_size, tuple(input_shape) if input_shape else None)
        feeds = load_feeds(inputs, metadata, iterations, seed)
        saved = {}
        if save_inputs:
            save_feeds(feeds, save_inputs)
            saved["inputs"] = str(save_inputs)
        setup = _Setup(
            RunnerOptions(precision, file_precision, torch_device,
                          str(plugin_library) if plugin_library is not None else None),
            torch_model,
            torch_input_metadata(metadata, torch_model) if torch_model is not None else None,
            feeds,
        )
        statuses, results = _run_backends(backends, onnx_path, onnx_model, setup)
        comparisons = pair_results(results, _compare_runs(results, atol, rtol)) if len(results) >= 2 else []
        if save_results and len(results):
            saved["results"] = _save_results(results, str(save_results))
        layer_result = PerLayerResult("not requested")
        if per_layer:
            failing = [p for p in comparisons if not p.passed]
            if not failing:
                layer_result = PerLayerResult("not needed: all outputs agree")
            else:
                ran = [s.name for s in statuses if s.status == "ran"]
                layer_result = _per_layer(onnx_model, ran, failing, setup, atol, rtol, workdir)
    return CompareReport(
        onnx_model=str(onnx_path),
        torch_model=torch_model_name or (type(torch_model).__name__ if torch_model is not None else None),
        precision=precision,
        model_precision=file_precision,
        tolerances={"rtol": rtol, "atol": atol if atol is not None else "rtol * max|ref| per output",
                    "check": "per element: |a-b| <= atol or |a-b| <= rtol*|ref|"},
        inputs={"source": inputs, "seed": seed if inputs == "random" else None, "iterations": len(feeds),
                "shapes": {name: list(meta.shape) for name, meta in metadata.items()}},
        backends=statuses,
        comparisons=comparisons,
        per_layer=layer_result,
        versions=availability.versions(),
        saved=saved,
    )
