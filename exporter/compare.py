"""Accuracy comparison of an exported model across backends, built on Polygraphy's ``Comparator``.

``compare(onnx_path, torch_model, backends=...)`` runs each backend on the same inputs with
``Comparator.run`` (one backend at a time, so one that crashes is reported instead of losing the
rest), checks every backend against the first one that ran with ``Comparator.compare_accuracy``
and ``SimpleCompareFunc``, and returns a :class:`~exporter.compare_report.CompareReport`.

Tolerances: an element fails where both ``|a-b| > atol`` and ``|a-b| > rtol*|ref|`` (Polygraphy's
element-wise check). ``rtol`` defaults by precision (:data:`DEFAULT_TOLERANCE`); ``atol``
defaults, per output, to ``rtol * max|ref|``: errors are measured against the output's scale, the
project's definition of relative error, so that logits near zero do not fail on noise.
With ``per_layer=True`` and a failed comparison it reruns with the tensor after every rectified
conv exposed (see :mod:`exporter.layerwise`) and names the first layer where backends diverge.

``rfconv-deploy compare`` is the same on the command line; it exits 0 only if every comparison
passed.
"""

from __future__ import annotations

import argparse
import json
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

from . import backends as availability
from .compare_report import (
    BackendStatus,
    CompareReport,
    LayerDivergence,
    PairResult,
    PerLayerResult,
    pair_results,
)
from .feeds import load_feeds, resolve_input_metadata, save_feeds
from .layerwise import LayerMatchError, find_rectified_layers, layer_taps, with_layer_outputs
from .runners import BACKENDS, BackendSkipped, RunnerOptions, custom_ops, feed_to_tensors, make_runner

DEFAULT_TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2}
"""Default rtol by precision (the default atol is rtol times each output's largest |reference|)."""
DEFAULT_BACKENDS = ("torch", "ort-cpu", "ort-cuda", "ort-trt", "trt")
"""``onnx-ref`` is opt-in: exact but slow (seconds per image for a ResNet-50)."""
PRECISIONS = ("fp32", "fp16")
ITERATION_FILE_WIDTH = 10  # per-iteration file names as RunResults.load_streaming reads them


def model_precision(model: onnx.ModelProto) -> str:
    """``"fp16"`` when the Conv weights are stored as float16, else ``"fp32"``."""
    initializers = {init.name: init.data_type for init in model.graph.initializer}
    conv_types = {initializers.get(n.input[1]) for n in model.graph.node if n.op_type == "Conv"}
    return "fp16" if onnx.TensorProto.FLOAT16 in conv_types else "fp32"


def _torch_metadata(metadata: TensorMetadata, torch_model: torch.nn.Module) -> TensorMetadata:
    """The ONNX inputs' names and shapes in the PyTorch model's floating dtype."""
    dtype = next((p.dtype for p in torch_model.parameters() if p.is_floating_point()), torch.float32)
    meta = TensorMetadata()
    for name, (onnx_dtype, shape) in metadata.items():
        meta.add(name, dtype if onnx_dtype.is_floating else onnx_dtype, shape)
    return meta


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
            f"--save-results {path}: give a new or empty directory, or a file name ending in .json"
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
    """Compare ``backends`` (names from :data:`exporter.runners.BACKENDS`) on one ONNX model.

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
    file_precision = model_precision(onnx_model)
    precision = precision or file_precision
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
            _torch_metadata(metadata, torch_model) if torch_model is not None else None,
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


def _backend_list(values: list[str]) -> list[str]:
    return [name for value in values for name in value.split(",") if name]


def _shape(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a shape like 1,3,224,224") from None


def _run(args: argparse.Namespace) -> int:
    from .models import load_model

    torch_model = None
    if args.model:
        torch_model = load_model(args.model, rectify=not args.no_rectify, average_mode=args.average_mode,
                                 checkpoint=args.checkpoint)
    report = compare(
        args.onnx, torch_model, backends=_backend_list(args.backends), inputs=args.inputs,
        iterations=args.iterations, seed=args.seed, batch_size=args.batch_size,
        input_shape=args.input_shape, atol=args.atol, rtol=args.rtol, precision=args.precision,
        per_layer=args.per_layer, save_results=args.save_results, save_inputs=args.save_inputs,
        torch_device=args.torch_device, plugin_library=args.plugin_lib,
        torch_model_name=args.model, verbose=args.verbose,
    )
    print(report.format_table())
    if args.report:
        Path(args.report).write_text(json.dumps(report.to_dict(), indent=2) + "\n")
        print(f"Report written to {args.report}")
    return 0 if report.passed else 1


def add_subcommand(sub) -> None:
    """Register ``rfconv-deploy compare``."""
    p = sub.add_parser(
        "compare", help="compare an exported model across PyTorch, ONNX Runtime and TensorRT",
        description="Run the same inputs through several backends and check every output against "
                    "the first backend that ran. Exit code 0 only if every comparison passes.",
    )
    p.add_argument("onnx", help="the exported .onnx file")
    p.add_argument("--model", help="the PyTorch model it was exported from: registry name or "
                                   "package.module:factory (needed for the torch backend)")
    p.add_argument("--checkpoint", help="weights for --model (loaded with weights_only=True)")
    p.add_argument("--no-rectify", action="store_true", help="--model is the plain baseline")
    p.add_argument("--average-mode", action="store_true", help="--model uses average-mode rectification")
    p.add_argument("--backends", nargs="+", default=[",".join(DEFAULT_BACKENDS)], metavar="LIST",
                   help=f"comma-separated, first is the reference; from {','.join(BACKENDS)} "
                        f"(default: {','.join(DEFAULT_BACKENDS)})")
    p.add_argument("--inputs", default="random",
                   help="'random' (seeded), a folder of images (ImageNet preprocessing) or a "
                        "Polygraphy input JSON (default: random)")
    p.add_argument("--iterations", type=int, help="number of input batches (random: default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    p.add_argument("--batch-size", type=int, help="batch size for a dynamic batch dimension (default 1)")
    p.add_argument("--input-shape", type=_shape, help="full input shape, e.g. 1,3,224,224 (dynamic H/W)")
    p.add_argument("--precision", choices=PRECISIONS,
                   help="sets the default rtol (fp32 1e-4, fp16 1e-2) and TensorRT build precision "
                        "(default: the model file's)")
    p.add_argument("--rtol", type=float, help="relative tolerance (default by precision: fp32 1e-4, fp16 1e-2)")
    p.add_argument("--atol", type=float,
                   help="absolute tolerance (default: rtol times each output's largest |reference| value)")
    p.add_argument("--report", help="write the JSON report here")
    p.add_argument("--save-results", help="save Polygraphy RunResults: FILE.json, or a new directory "
                                          "for one file per iteration")
    p.add_argument("--save-inputs", help="save the inputs as Polygraphy input JSON (reusable with --inputs)")
    p.add_argument("--per-layer", action="store_true",
                   help="when outputs disagree, compare after every rectified conv and name the first "
                        "layer that diverges")
    p.add_argument("--torch-device", default="cpu", help="device for the torch backend (default cpu)")
    p.add_argument("--plugin-lib", metavar="PATH",
                   help="RFConvRectify TensorRT plugin library for the trt backend (default: the built one)")
    p.add_argument("--verbose", action="store_true", help="show Polygraphy's log")
    p.set_defaults(func=_run)
