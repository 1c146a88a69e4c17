"""Accuracy comparison of an exported model across backends, built on Polygraphy's ``Comparator``.

``compare(onnx_path, torch_model, backends=...)`` runs each backend on the same inputs with
``Comparator.run`` (one backend at a time, so one that crashes is reported instead of losing the
rest), checks every backend against the first one that ran with ``Comparator.compare_accuracy``
and ``SimpleCompareFunc``, and returns a :class:`~exporter.comparison.report.CompareReport`.

Three verdicts (:data:`VERDICTS`):

* ``"noise-floor"`` (default, needs the PyTorch model and the ``torch`` backend): PyTorch also
  runs in float64 on the CPU (``torch-fp64``, the ground truth, untimed). The *noise floor* of
  each output is how far fp32 PyTorch (fp16 PyTorch, ``torch-fp16``, for an fp16 file) is from
  it: ``floor = max(max|fp32 - fp64|, eps * max|fp64|)`` over every element and iteration (the
  eps term keeps the floor of an output that fp32 happens to get exact from being zero). Every
  backend is checked against ``torch-fp64``: it fails where any element is off by more than
  ``K * floor`` (:data:`NOISE_FLOOR_MULTIPLE`, Polygraphy's element-wise check with that atol and
  ``rtol=0``), and, when ``rtol`` or ``atol`` is given, where it leaves that tolerance; the report
  gives each floor and multiple. The default tolerance is not applied under this verdict: for
  fp32 it is looser than ``K * floor`` (1e-4 against at most about 2e-5 of the output's scale),
  and for fp16 PyTorch itself exceeds it on deep networks (2 % of the logits' scale on
  RF-ResNet-50 at 64 px), so it would fail honest exports.
* ``"tolerance"``: the tolerance alone, against the first backend that ran.
* ``"int8"`` (what an int8 Q/DQ file gets instead of the noise floor): each backend against fp32
  PyTorch by cosine similarity, top-1 agreement on decided rows and an element-wise error bound
  relative to the output's scale (:data:`INT8_VERDICT`), per output and per rectified layer.

Tolerances: an element fails where both ``|a-b| > atol`` and ``|a-b| > rtol*|ref|`` (Polygraphy's
element-wise check). ``rtol`` defaults by precision (:data:`DEFAULT_TOLERANCE`); ``atol``
defaults, per output, to ``rtol * max|ref|``: errors are measured against the output's scale, the
project's definition of relative error, so that logits near zero do not fail on noise.

Unless ``outputs_only``, the file runs with the tensor after every rectified conv as an extra
output (one session per backend, see :mod:`exporter.comparison.layerwise`), PyTorch taps the
matching modules, and each layer is held to the same verdict: the first failing layer is named,
and each layer's error is given on its border ring (factor != 1) and its interior apart. A
dynamic-H/W file is compared at the three sizes of :func:`check_sizes`.

"""

from __future__ import annotations

import copy
import dataclasses
import os
import tempfile
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from polygraphy.backend.onnx import util as onnx_util
from polygraphy.common import TensorMetadata
from polygraphy.comparator import Comparator, IterationResult, RunResults, SimpleCompareFunc
from polygraphy.comparator import util as comparator_util
from polygraphy.logger import G_LOGGER

from exporter.backends import availability
from exporter.backends.availability import BACKENDS
from exporter.backends.runners import (
    BackendSkipped,
    RunnerOptions,
    TorchRunner,
    custom_ops,
    feed_to_tensors,
    make_runner,
    torch_input_metadata,
)
from exporter.comparison.defaults import (
    DEFAULT_BACKENDS,
    DEFAULT_TOLERANCE,
    FLOOR_EPS,
    INT8_VERDICT,
    NOISE_FLOOR_MULTIPLE,
    VERDICTS,
    check_sizes,
    tolerance_precision,
)
from exporter.comparison.layerwise import (
    LayerMatchError,
    border_rings,
    find_rectified_layers,
    initializer_offsets,
    layer_outputs_suffix,
    layer_taps,
    layered_by_reference,
    unmatched_modules,
    with_layer_outputs,
)
from exporter.comparison.report import (
    BackendStatus,
    CompareReport,
    LayerDivergence,
    PairResult,
    PerLayerResult,
    pair_results,
)
from exporter.onnx.feeds import load_feeds, resolve_input_metadata, save_feeds
from exporter.onnx.options import PRECISIONS
from exporter.onnx.precision import file_precision as onnx_file_precision

ITERATION_FILE_WIDTH = 10  # per-iteration file names as RunResults.load_streaming reads them
FP64_REFERENCE = "torch-fp64"
FP16_FLOOR = "torch-fp16"


@contextmanager
def _quiet_polygraphy(verbose: bool):
    """Polygraphy's logging as asked: all of it (``verbose``) or none, and then not computed.

    ``polygraphy.comparator.util.log_output_stats`` formats the mean, median and p90/p95/p99 of
    every tensor it compares before handing the text to the logger, which drops it below INFO;
    with every rectified layer compared that was 1.0 s of a 5.1 s default compare of
    RF-ResNet-50 (benchmarks/README.md, "Compare cost"). It only logs, so while the logger is at
    CRITICAL it is replaced by a no-op, and put back after. Polygraphy also formats every
    compared array into its super-verbose messages eagerly (0.07 s more); numpy then prints one
    element per axis (``np.printoptions`` is local to this context).
    """
    if verbose:
        yield
        return
    logged = comparator_util.log_output_stats
    comparator_util.log_output_stats = lambda *args, **kwargs: None
    try:
        with G_LOGGER.verbosity(G_LOGGER.CRITICAL), np.printoptions(threshold=1, edgeitems=1):
            yield
    finally:
        comparator_util.log_output_stats = logged


@dataclass(frozen=True)
class _Setup:
    """What every run of the backends shares: options, the PyTorch side and the inputs."""

    options: RunnerOptions
    torch_model: torch.nn.Module | None
    torch_inputs: TensorMetadata | None
    feeds: list


def _run_backends(names, onnx_path, onnx_model, setup: _Setup, taps=()):
    """Run each backend on the feeds; returns (statuses, merged RunResults of those that ran).

    Every backend but the (slow, untimed) reference evaluator first runs one
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
            warm_up = 0 if name == "onnx-ref" else 1
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


def _compare_runs(results: RunResults, atol, rtol: float):
    """Polygraphy accuracy check of every runner against the first.

    Pairs are (candidate, reference): Polygraphy divides by the *second* output for relative
    errors, so they come out relative to the reference. ``atol=None`` is scale-relative; a dict
    gives it per output.
    """
    comparisons = [(i, 0) for i in range(1, len(results))]
    atols = atol if atol is not None else _output_atols(results[0][1], rtol)
    func = SimpleCompareFunc(atol=atols, rtol=rtol, check_error_stat="elemwise")
    return Comparator.compare_accuracy(results, comparisons=comparisons, compare_func=func)[0]


def noise_floors(floor_run: list, reference_run: list, eps: float) -> dict[str, float]:
    """Per output, the noise floor: ``max(max|floor - ref|, eps * max|ref|)`` over all elements
    and iterations, in the output's units.

    ``floor_run`` is PyTorch at the deployment precision and ``reference_run`` PyTorch in float64
    on the same inputs (lists of iterations, name -> array). The largest element error is what
    fp32 (or fp16) arithmetic alone moves an output by; the ``eps * max|ref|`` minimum (one unit
    in the last place at the output's scale) covers outputs that it happens to leave exact,
    whose measured error would be zero and would fail any backend for rounding alone.
    """
    floors: dict[str, float] = {}
    for low, ref in zip(floor_run, reference_run, strict=True):
        for name, value in ref.items():
            ref64 = np.asarray(value, np.float64)
            err = float(np.max(np.abs(np.asarray(low[name], np.float64) - ref64), initial=0.0))
            scale = eps * float(np.max(np.abs(ref64), initial=0.0))
            floors[name] = max(floors.get(name, 0.0), err, scale, float(np.finfo(np.float32).tiny))
    return floors


def _ring_errors(results: RunResults, pairs: list[PairResult], rings: dict):
    """Fill each layer's ``ring_max_abs``/``interior_max_abs``: the largest ``|cand - ref|`` on
    positions whose factor is not 1 and on the others (``rings``: tensor -> bool ``[Ho, Wo]``)."""
    runs = dict(results)
    for pair in pairs:
        for stats in pair.outputs:
            ring = rings.get(stats.output)
            if ring is None or stats.max_abs is None:
                continue
            errors = [np.abs(np.asarray(c[stats.output], np.float64) - np.asarray(r[stats.output], np.float64))
                      for c, r in zip(runs[pair.backend], runs[pair.reference], strict=True)]
            stats.ring_max_abs = float(max(np.max(e[..., ring], initial=0.0) for e in errors))
            stats.interior_max_abs = float(max(np.max(e[..., ~ring], initial=0.0) for e in errors))
            refs = [np.abs(np.asarray(r[stats.output], np.float64)) for r in runs[pair.reference]]
            stats.ring_reference_max = float(max(np.max(r[..., ring], initial=0.0) for r in refs))
            stats.interior_reference_max = float(max(np.max(r[..., ~ring], initial=0.0) for r in refs))


def _first_divergence(pair: PairResult, layers, layer_dicts) -> LayerDivergence:
    for layer, info, stats in zip(layers, layer_dicts, pair.outputs, strict=True):
        if not stats.passed:
            module = f", PyTorch module {info['torch_module']!r}" if info["torch_module"] else ""
            scale = f", scale {layer.scale!r}" if layer.scale else ""
            where = ""
            if stats.ring_max_abs is not None:
                where = f"; border ring {stats.ring_max_abs:.3g}, interior {stats.interior_max_abs:.3g}"
            floor = f", {stats.floor_multiple:.3g} x its noise floor" if stats.floor_multiple is not None else ""
            explanation = (
                f"first diverges at rectified conv #{layer.index} (Conv {layer.conv!r} -> {layer.node!r}"
                f"{scale}{module}): max abs error {stats.max_abs:.3g}{floor} (reference values up to "
                f"{stats.reference_max_abs:.3g}{where}), max rel error {stats.max_rel:.3g}"
                if stats.max_abs is not None else
                f"first diverges at rectified conv #{layer.index} ({layer.node!r}{module}): {stats.note}"
            )
            return LayerDivergence(pair.reference, pair.backend, info, stats, explanation, pair.input_shape)
    return LayerDivergence(
        pair.reference, pair.backend, None, None,
        f"all {len(layers)} rectified conv outputs agree: the difference arises after them", pair.input_shape,
    )


@dataclass
class _Verdict:
    """How pairs are judged: ``mode`` from :data:`VERDICTS`, the tolerance, and for noise floors
    K, the floor runner, the floor epsilon and whether the tolerance applies as well."""

    mode: str
    atol: float | None
    rtol: float
    multiple: float
    floor_runner: str
    eps: float
    user_tolerance: bool  # noise floor: rtol or atol given, so the tolerance applies too


def _without_outputs(results: RunResults, runner: str, names: set[str]) -> RunResults:
    """``results`` with ``runner``'s iterations stripped of the outputs in ``names``."""
    kept = RunResults()
    for name, iterations in results:
        if name == runner:
            iterations = [IterationResult({k: v for k, v in it.items() if k not in names}, it.runtime, name)
                          for it in iterations]
        kept.append((name, iterations))
    return kept


def _top1_decided(reference: list[np.ndarray], candidate: list[np.ndarray], margin: float):
    """(agreement, rows) over the rows whose reference top-1 leads its runner-up by at least
    ``margin`` times the largest |reference|; ``(None, 0)`` when no row is decided."""
    scale = max(float(np.max(np.abs(r), initial=0.0)) for r in reference)
    agree = []
    for ref, cand in zip(reference, candidate, strict=True):
        top2 = np.sort(np.asarray(ref, np.float64), axis=1)[:, -2:]
        decided = (top2[:, 1] - top2[:, 0]) >= margin * scale
        agree.append((np.argmax(ref, 1) == np.argmax(cand, 1))[decided])
    agree = np.concatenate(agree)
    return (float(np.mean(agree)), int(agree.size)) if agree.size else (None, 0)


def _int8_checks(pairs: list[PairResult], results: RunResults) -> None:
    """Add the cosine and decided top-1 conditions of :data:`INT8_VERDICT` to ``pairs`` (the
    error bound is their tolerance already); failing outputs get a note saying which."""
    runs = dict(results)
    for pair in pairs:
        for stats in pair.outputs:
            if stats.cosine_similarity is None:
                continue
            reasons = []
            if stats.scaled_error is not None and stats.scaled_error > INT8_VERDICT["max_scaled_error"]:
                reasons.append(f"error {stats.scaled_error:.3f} of scale > {INT8_VERDICT['max_scaled_error']}")
            if stats.cosine_similarity < INT8_VERDICT["min_cosine"]:
                reasons.append(f"cosine {stats.cosine_similarity:.4f} < {INT8_VERDICT['min_cosine']}")
            if stats.top1_agreement is not None:
                ref = [np.asarray(it[stats.output]) for it in runs[pair.reference]]
                cand = [np.asarray(it[stats.output]) for it in runs[pair.backend]]
                stats.top1_decided, stats.top1_decided_rows = _top1_decided(ref, cand, INT8_VERDICT["top1_margin"])
                if stats.top1_decided is not None and stats.top1_decided < INT8_VERDICT["min_top1"]:
                    reasons.append(f"top-1 {stats.top1_decided:.2f} of {stats.top1_decided_rows} decided row(s) "
                                   f"< {INT8_VERDICT['min_top1']}")
            if reasons:
                stats.passed = False
                stats.note = ", ".join([*([stats.note] if stats.note else []), *reasons])
        pair.passed = all(s.passed for s in pair.outputs)


def _int8_ring_checks(pairs: list[PairResult]) -> None:
    """The int8 verdict of a rectified layer: its border ring's error, relative to the ring's
    largest |reference|, may exceed the interior's relative error by at most
    ``INT8_VERDICT["ring_ratio"]`` (plus ``ring_slack``). Int8 rounding spreads over ring and
    interior alike and grows with depth in both; a wrong factor or count shows on the ring."""
    ratio, slack = INT8_VERDICT["ring_ratio"], INT8_VERDICT["ring_slack"]
    for pair in pairs:
        for stats in pair.outputs:
            if stats.ring_max_abs is None or not stats.ring_reference_max or not stats.interior_reference_max:
                continue
            ring = stats.ring_max_abs / stats.ring_reference_max
            interior = stats.interior_max_abs / stats.interior_reference_max
            if ring > ratio * interior + slack:
                stats.passed = False
                stats.note = (f"border ring error {ring:.3f} of its scale > {ratio:g} x the interior's {interior:.3f}"
                              f" + {slack:g}")
        pair.passed = all(s.passed for s in pair.outputs)


def _judge(results: RunResults, verdict: _Verdict, outputs: list[str], layer_names: list[str]):
    """(output pairs, layer pairs, floors) of every runner against the first in ``results``.

    Under the noise-floor verdict without a user tolerance, the floor runner has no layer pairs:
    its layer errors are the layers' floors.
    """
    if verdict.mode == "int8":
        # |a - b| <= bound * max|ref| per element: the scale-relative atol with rtol = bound
        tolerance = _compare_runs(results, None, INT8_VERDICT["max_scaled_error"])
        out_pairs = pair_results(results, tolerance, outputs=outputs)
        _int8_checks(out_pairs, results)
        # layers: statistics for every layer, judged on the ring by _int8_ring_checks (int8 error
        # accumulates with depth, so the output bounds do not apply to a deep layer)
        unbounded = {name: float("inf") for name in [*outputs, *layer_names]}
        layer_pairs = pair_results(results, _compare_runs(results, unbounded, 0.0), outputs=layer_names) \
            if layer_names else []
        return out_pairs, layer_pairs, {}
    unjudged = None
    if verdict.mode == "tolerance":
        tolerance, floors, floor_check = _compare_runs(results, verdict.atol, verdict.rtol), {}, None
    else:
        floors = noise_floors(dict(results)[verdict.floor_runner], results[0][1], verdict.eps)
        limits = {n: verdict.multiple * f for n, f in floors.items()}
        if FP16_FLOOR in dict(results):  # a measurement, not a backend under test
            kept = RunResults()
            for name, its in results:
                if name != FP16_FLOOR:
                    kept.append((name, its))
            results = kept
        if not verdict.user_tolerance and verdict.floor_runner in dict(results) and layer_names:
            # the floor runner's layer tensors define the layers' floors: their multiple is 1 by
            # definition, so they are not compared again (half the per-layer work)
            unjudged = verdict.floor_runner
            results = _without_outputs(results, unjudged, set(layer_names) - set(outputs))
        if not verdict.user_tolerance:
            tolerance, floor_check = _compare_runs(results, limits, 0.0), None
        elif verdict.atol is None:
            # the default atol (rtol * max|ref|) is never below rtol * |ref|, so the tolerance is
            # |a-b| <= atol and both checks are one: |a-b| <= min(K * floor, atol), in one pass
            atols = _output_atols(results[0][1], verdict.rtol)
            tolerance = _compare_runs(results, {n: min(limit, atols[n]) for n, limit in limits.items()}, 0.0)
            floor_check = None
        else:
            tolerance = _compare_runs(results, verdict.atol, verdict.rtol)
            floor_check = _compare_runs(results, limits, 0.0)
    out_pairs = pair_results(results, tolerance, outputs=outputs, also=floor_check, floors=floors)
    layer_pairs = pair_results(results, tolerance, outputs=layer_names, also=floor_check, floors=floors) \
        if layer_names else []
    return out_pairs, [pair for pair in layer_pairs if pair.backend != unjudged], floors


@dataclass
class _SizeResult:
    """What one input shape gave: statuses, raw results (reference first), feeds, the resolved
    input metadata, output and layer pairs, and the floors."""

    statuses: list
    results: RunResults
    feeds: list
    metadata: TensorMetadata
    pairs: list
    layer_pairs: list
    floors: dict


def _copy_as(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """A copy of ``model`` on the CPU in eval mode with floating parameters and buffers in ``dtype``.

    Each tensor is converted straight into the copy (``deepcopy``'s memo hands it the converted
    tensor), instead of being cloned and then converted: on RF-ResNet-50 the clone was a third
    of the float64 reference's cost outside its forward pass.
    """
    memo = {}
    for tensor in [*model.parameters(), *model.buffers()]:
        if id(tensor) in memo:
            continue
        value = tensor.detach().to("cpu", dtype if tensor.is_floating_point() else tensor.dtype, copy=True)
        memo[id(tensor)] = torch.nn.Parameter(value, requires_grad=False) \
            if isinstance(tensor, torch.nn.Parameter) else value
    return copy.deepcopy(model, memo).eval()


def _reference_runs(setup: _Setup, onnx_model, verdict: _Verdict, taps, copies: dict) -> tuple[list, RunResults]:
    """PyTorch in float64 on the CPU (and in fp16 for an fp16 floor), untimed, with the same taps.

    ``copies`` keeps the model's copy at each dtype between the sizes of one comparison.
    """
    statuses, results = [], RunResults()
    wanted = [(FP64_REFERENCE, torch.float64)]
    if verdict.floor_runner == FP16_FLOOR:
        wanted.append((FP16_FLOOR, torch.float16))
    tapped = {tap.output_name for tap in taps}
    output_names = [out.name for out in onnx_model.graph.output if out.name not in tapped]
    for name, dtype in wanted:
        if dtype not in copies:
            copies[dtype] = _copy_as(setup.torch_model, dtype)
        model = copies[dtype]
        metadata = torch_input_metadata(setup.torch_inputs, model)
        runner = TorchRunner(model, metadata, output_names, device="cpu", taps=taps, name=name)
        try:
            ran = Comparator.run([runner], data_loader=setup.feeds, warm_up=0)
        except Exception as err:  # noqa: BLE001 - reported like any backend failure
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            statuses.append(BackendStatus(name, "error", f"{type(err).__name__}: {first}"))
            continue
        iterations = ran[name]
        what = "ground truth" if dtype == torch.float64 else "fp16 noise floor"
        statuses.append(BackendStatus(name, "ran", f"PyTorch {torch.__version__} in {dtype} on cpu ({what})"))
        results.append((name, iterations))
    return statuses, results


def _size_label(size: _SizeResult) -> str:
    return "x".join(str(d) for d in list(next(iter(size.metadata.values())).shape)[2:])


def _at_size(path: str, label: str) -> str:
    """Where a further size's file goes: ``name-HxW.ext`` beside a file, ``HxW/`` inside a folder."""
    stem, ext = os.path.splitext(path)
    return f"{stem}-{label}{ext}" if ext else os.path.join(path, label)


def _save_sizes(per_size: list[_SizeResult], save_inputs: str | None, save_results: str | None) -> dict:
    """Save each size's inputs and results: the first size at the paths given, the others by
    :func:`_at_size`. Returns ``{"inputs": ..., "results": ..., "sizes": {HxW: {...}}}`` (the
    per-size table only when there are several sizes)."""
    saved, by_size = {}, {}
    for index, size in enumerate(per_size):
        label = _size_label(size)
        here = {}
        if save_inputs:
            here["inputs"] = str(save_inputs) if index == 0 else _at_size(str(save_inputs), label)
            save_feeds(size.feeds, here["inputs"])
        if save_results and len(size.results):
            target = str(save_results) if index == 0 else _at_size(str(save_results), label)
            here["results"] = _save_results(size.results, target)
        if index == 0:
            saved.update(here)
        by_size[label] = here
    if len(per_size) > 1 and (save_inputs or save_results):
        saved["sizes"] = by_size
    return saved


def _uses_external_data(model: onnx.ModelProto) -> bool:
    """Whether an initializer or a main-graph constant keeps its data in another file."""
    tensors = [*model.graph.initializer, *(a.t for n in model.graph.node for a in n.attribute if a.HasField("t"))]
    return any(t.data_location == onnx.TensorProto.EXTERNAL for t in tensors)


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


LOADERS_REFUSING_LINKS = ("onnx-ref", "trt", "ort-trt")
"""Backends whose ONNX loader reads the layered model's weights other than ONNX Runtime's own:
``onnx``'s (onnx-ref, and the plugin's reference session for plugin nodes) refuses external data
in a hard-linked file, and TensorRT's parser (trt, and ONNX Runtime's TensorRT EP) is not
verified here, so they get the layered file whole."""


def _links_readable(backends: Sequence[str], run_model: onnx.ModelProto) -> bool:
    """Whether every backend that can run here reads a layered model whose weights are external
    data in a hard link to the original file (see :data:`LOADERS_REFUSING_LINKS`)."""
    if custom_ops(run_model):
        return False
    return not any(_can_run(name) for name in backends if name in LOADERS_REFUSING_LINKS)


def _can_run(backend: str) -> bool:
    """Whether ``backend`` of :data:`LOADERS_REFUSING_LINKS` is installed here (onnx-ref always is)."""
    if backend == "trt":
        return availability.tensorrt().available
    if backend == "ort-trt":
        return availability.ort_provider(availability.ORT_PROVIDERS[backend], backend).available
    return True


def _write_layered(onnx_path: Path, serialized: bytes, onnx_model, run_model, workdir: Path, backends,
                   external: bool) -> Path:
    """Write ``run_model`` (``onnx_model`` with every layer's tensor as an output) into ``workdir``.

    Cheapest first: when the backends read it (:func:`_links_readable`) and the file can be
    hard-linked into ``workdir``, a small model whose weights are external data at their offsets
    in the link (:func:`~exporter.comparison.layerwise.layered_by_reference`), so the 100 MB of
    weights are not written again (benchmarks/README.md, "Cost of the default compare");
    otherwise the file's bytes and a suffix declaring the outputs; a file with external data
    (its weights read already) is saved whole.
    """
    path = workdir / "layers.onnx"
    if external:
        onnx.save(run_model, str(path))
        return path
    if _links_readable(backends, run_model):
        weights = workdir / "weights.onnx"
        try:
            os.link(onnx_path, weights)
        except OSError:  # another file system, or links not allowed: the copy below
            pass
        else:
            by_reference = layered_by_reference(run_model, initializer_offsets(serialized), weights.name)
            path.write_bytes(by_reference.SerializeToString())
            return path
    with open(path, "wb") as layered:  # two writes: no 100 MB concatenation
        layered.write(serialized)
        layered.write(layer_outputs_suffix(onnx_model, run_model))
    return path


def _dynamic_hw(metadata: TensorMetadata) -> bool:
    """True when the (single) input is ``[N, C, H, W]`` with H or W not fixed in the file."""
    if len(metadata) != 1:
        return False
    shape = list(next(iter(metadata.values())).shape)
    return len(shape) == 4 and any(not (isinstance(d, int) and d >= 0) for d in shape[2:])


def _sizes_to_check(onnx_model, batch_size, input_shape, sizes) -> list[tuple[int, ...] | None]:
    """Full input shapes to compare at: ``None`` is the file's own (static) shape."""
    declared = onnx_util.get_input_metadata(onnx_model.graph)
    sized = {name: [i for i, d in enumerate(meta.shape) if i and not (isinstance(d, int) and d >= 0)]
             for name, meta in declared.items()}
    if len(declared) > 1 and any(sized.values()):
        dims = "; ".join(f"{name!r} {list(declared[name].shape)}" for name, dynamic in sized.items() if dynamic)
        raise ValueError(
            f"compare takes a file with several inputs at its declared sizes (a dynamic batch is fine), but "
            f"{dims} have dynamic dimensions past the batch: compare an export of the model with static H/W "
            "(export's own check already ran the dynamic file on ONNX Runtime against PyTorch at other sizes)"
        )
    if not _dynamic_hw(declared):
        if sizes:
            raise ValueError("sizes applies to files with dynamic H/W; this file's input size is fixed")
        return [tuple(input_shape) if input_shape else None]
    if input_shape is None:
        raise ValueError(
            "the file has dynamic H/W: pass input_shape with concrete sizes, e.g. input_shape=(1, 3, 224, 224) "
            f"(it is then also checked at the sizes of check_sizes, e.g. {check_sizes((224, 224))})"
        )
    n, c = input_shape[0], input_shape[1]
    hws = [tuple(hw) for hw in sizes] if sizes else check_sizes(tuple(input_shape[2:]))
    return [(n, c, *hw) for hw in hws]


def _compare_at(shape, onnx_model, run_path, run_model, layers, references, backends, verdict, options,
                torch_model, inputs, iterations, seed, batch_size, copies) -> _SizeResult:
    """Every backend (and the float64 reference) at one input shape; judged by ``verdict``."""
    metadata = resolve_input_metadata(onnx_model, batch_size, shape)
    feeds = load_feeds(inputs, metadata, iterations, seed)
    torch_inputs = torch_input_metadata(metadata, torch_model) if torch_model is not None else None
    setup = _Setup(options, torch_model, torch_inputs, feeds)
    outputs = [out.name for out in onnx_model.graph.output]
    # a layer whose tensor is a model output is compared as that output's PyTorch value already
    taps = [ref.tap for ref in references or [] if ref.tap.output_name not in outputs]
    statuses, ran = _run_backends(backends, run_path, run_model, setup, taps)
    results = ran
    if verdict.mode == "noise-floor":
        ref_statuses, refs = _reference_runs(setup, onnx_model, verdict, taps, copies)
        statuses += ref_statuses
        results = RunResults()
        for name, its in [*refs, *ran]:
            results.append((name, its))
        if FP64_REFERENCE not in dict(results) or verdict.floor_runner not in dict(results):
            # no floor without both PyTorch runs (their errors are in the statuses, which fail
            # the report): the backends that ran are still compared with each other
            results, verdict = ran, dataclasses.replace(verdict, mode="tolerance")
    if len(results) < 2:
        return _SizeResult(statuses, results, feeds, metadata, [], [], {})
    layer_names = [layer.tensor for layer in layers]
    pairs, layer_pairs, floors = _judge(results, verdict, outputs, layer_names)
    label = list(next(iter(metadata.values())).shape)
    for pair in [*pairs, *layer_pairs]:
        pair.input_shape = label
    if layer_pairs:
        _ring_errors(results, layer_pairs, border_rings(onnx_model, layers, {
            name: tuple(meta.shape) for name, meta in metadata.items()}))
        if verdict.mode == "int8":
            _int8_ring_checks(layer_pairs)
    return _SizeResult(statuses, results, feeds, metadata, pairs, layer_pairs, floors)


def _layer_plan(onnx_model, torch_model, outputs_only: bool, backends, batch_size, shape, inputs, seed):
    """(layers, PyTorch references or None, status) for the per-layer check."""
    if outputs_only:
        return [], None, "not requested (outputs only)"
    layers = find_rectified_layers(onnx_model)
    if not layers:
        return [], None, "no rectified conv (Conv -> scale Mul, or RFConvRectify) in the ONNX graph"
    if torch_model is None or "torch" not in backends:
        return layers, None, "ran"
    metadata = resolve_input_metadata(onnx_model, batch_size, shape)
    first = feed_to_tensors(load_feeds(inputs, metadata, 1, seed)[0], torch_input_metadata(metadata, torch_model))
    try:
        return layers, layer_taps(layers, onnx_model, torch_model, first), "ran"
    except LayerMatchError as err:
        return [], None, f"cannot match ONNX layers to PyTorch modules: {err}"


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
    verdict: str = "noise-floor",
    floor_multiple: float = NOISE_FLOOR_MULTIPLE,
    outputs_only: bool = False,
    sizes: Sequence[tuple[int, int]] | None = None,
    save_results: str | None = None,
    save_inputs: str | None = None,
    torch_device: str = "cpu",
    plugin_library: str | None = None,
    torch_model_name: str | None = None,
    verbose: bool = False,
) -> CompareReport:
    """Compare ``backends`` (names from :data:`exporter.backends.runners.BACKENDS`) on one ONNX model.

    ``torch_model`` is the PyTorch model the file was exported from (needed for ``"torch"`` and
    for the ``"noise-floor"`` verdict; without it the verdict is ``"tolerance"`` and the report
    says so). ``inputs`` is ``"random"`` (seeded with ``seed``), a folder of images or a
    Polygraphy input JSON; ``iterations`` caps how many batches are used (random: default 1).
    ``precision`` defaults to the file's own and sets the default tolerances
    (:data:`DEFAULT_TOLERANCE`) and the floor (fp16 files: PyTorch in fp16); ``rtol`` overrides
    it, ``atol`` replaces the scale-relative absolute tolerance (see the module docstring).
    ``verdict`` is one of :data:`VERDICTS`, ``floor_multiple`` is K. ``outputs_only`` skips the
    per-layer check. ``sizes`` lists the ``(H, W)`` in pixels a dynamic-H/W file is checked at
    (default :func:`check_sizes` of ``input_shape``); ``save_results``/``save_inputs`` keep the
    first size's at the paths given and each other size's beside them (``name-HxW.json``, or a
    ``HxW`` folder inside a results folder). Unavailable backends are reported as skipped, never
    dropped. Plugin-mode models run on ``trt`` with ``plugin_library`` (default: the built one) and
    on ``ort-cpu``/``onnx-ref`` through the plugin's Python reference.
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
    if verdict not in VERDICTS:
        raise ValueError(f"verdict {verdict!r} is not one of {VERDICTS}")
    if not floor_multiple >= 1:
        raise ValueError(f"floor_multiple must be >= 1, got {floor_multiple}")
    try:
        serialized = onnx_path.read_bytes()
        onnx_model = onnx.load_from_string(serialized)
        external = _uses_external_data(onnx_model)
        if external:
            onnx.external_data_helper.load_external_data_for_model(onnx_model, str(onnx_path.parent))
    except Exception as err:  # noqa: BLE001 - protobuf raises assorted errors for non-ONNX files
        raise ValueError(f"cannot read {onnx_path} as an ONNX model: {err}") from None
    file_precision = onnx_file_precision(onnx_model)
    precision = precision or tolerance_precision(file_precision)
    user_tolerance = rtol is not None or atol is not None
    rtol = DEFAULT_TOLERANCE[precision] if rtol is None else rtol
    verdict_note = ""
    if file_precision == "int8" and verdict == "noise-floor":
        verdict = "int8"
    if verdict == "int8":
        verdict_note = (f"cosine >= {INT8_VERDICT['min_cosine']}, |err| <= {INT8_VERDICT['max_scaled_error']} x "
                        f"max|ref|, top-1 >= {INT8_VERDICT['min_top1']:.0%} of decided rows, against fp32 PyTorch")
        if torch_model is None or "torch" not in backends:
            verdict, verdict_note = "tolerance", "the int8 verdict needs the PyTorch model and the torch backend"
    if verdict == "noise-floor" and (torch_model is None or "torch" not in backends):
        verdict, verdict_note = "tolerance", "noise-floor needs the PyTorch model and the torch backend"
    floor_precision = "fp32" if precision == "fp32" else "fp16"
    judge = _Verdict(verdict, atol, rtol, floor_multiple,
                     "torch" if floor_precision == "fp32" else FP16_FLOOR, FLOOR_EPS[floor_precision],
                     user_tolerance)

    with _quiet_polygraphy(verbose), tempfile.TemporaryDirectory(prefix="rfconv-compare-") as workdir:
        shapes = _sizes_to_check(onnx_model, batch_size, input_shape, sizes)
        layers, references, layer_status = _layer_plan(onnx_model, torch_model, outputs_only, backends,
                                                       batch_size, shapes[0], inputs, seed)
        run_path, run_model = onnx_path, onnx_model
        if layers:
            run_model = with_layer_outputs(onnx_model, layers)
            run_path = _write_layered(onnx_path, serialized, onnx_model, run_model, Path(workdir), backends, external)
        options = RunnerOptions(precision, file_precision, torch_device,
                                str(plugin_library) if plugin_library is not None else None)
        copies: dict = {}  # the PyTorch model in float64 (and fp16), made once for every size
        per_size = [
            _compare_at(shape, onnx_model, run_path, run_model, layers, references, backends, judge,
                        options, torch_model, inputs, iterations, seed, batch_size, copies)
            for shape in shapes
        ]
        first = per_size[0]
        saved = _save_sizes(per_size, save_inputs, save_results)
    missing = unmatched_modules(references, torch_model) if references is not None else []
    layer_result = PerLayerResult(layer_status, missing=missing)
    floor_ran = any(st.name == judge.floor_runner and st.status == "ran" for size in per_size for st in size.statuses)
    if layers and verdict == "noise-floor" and not user_tolerance and floor_ran and judge.floor_runner != FP16_FLOOR:
        layer_result.floor_runner = judge.floor_runner
    if layers:
        matched = {ref.tap.output_name: ref for ref in references or []}
        layer_result.layers = [
            dict(asdict(layer), torch_module=matched[layer.tensor].tap.module if layer.tensor in matched else None,
                 fused_bias_reference=matched[layer.tensor].shift_source if layer.tensor in matched else None)
            for layer in layers
        ]
        layer_result.pairs = [pair for size in per_size for pair in size.layer_pairs]
        failing = [p for size in per_size for p in _failing(size)]
        layer_result.first_divergence = [_first_divergence(pair, layers, layer_result.layers) for pair in failing]
    tolerances = {"rtol": rtol, "atol": atol if atol is not None else "rtol * max|ref| per output",
                  "check": "per element: |a-b| <= atol or |a-b| <= rtol*|ref|",
                  "applied": verdict == "tolerance" or user_tolerance}
    noise_floor = None
    if verdict == "noise-floor":
        noise_floor = {"reference": FP64_REFERENCE, "floor_runner": judge.floor_runner, "multiple": floor_multiple,
                       "floor": "max(max|floor_runner - reference|, eps * max|reference|) per output",
                       "eps": judge.eps,
                       "floors": [{"input_shape": list(next(iter(s.metadata.values())).shape), "floors": s.floors}
                                  for s in per_size]}
    return CompareReport(
        onnx_model=str(onnx_path),
        torch_model=torch_model_name or (type(torch_model).__name__ if torch_model is not None else None),
        precision=precision,
        model_precision=file_precision,
        tolerances=tolerances,
        inputs={"source": inputs, "seed": seed if inputs == "random" else None, "iterations": len(first.feeds),
                "shapes": {name: list(meta.shape) for name, meta in first.metadata.items()}},
        backends=_merge_statuses([s.statuses for s in per_size]),
        comparisons=[pair for size in per_size for pair in size.pairs],
        per_layer=layer_result,
        versions=availability.versions(),
        saved=saved,
        verdict_mode=verdict,
        verdict_note=verdict_note,
        noise_floor=noise_floor,
        sizes=[list(next(iter(s.metadata.values())).shape) for s in per_size],
    )


def _failing(size: _SizeResult) -> list[PairResult]:
    """Layer pairs (one per backend) whose backend failed at this size, on an output or a layer."""
    failed = {p.backend for p in [*size.pairs, *size.layer_pairs] if not p.passed}
    return [p for p in size.layer_pairs if p.backend in failed]


def _merge_statuses(per_size: list[list[BackendStatus]]) -> list[BackendStatus]:
    """One status per backend over all sizes: an error at any size is the status; latency is the
    first size's."""
    merged: dict[str, BackendStatus] = {}
    for statuses in per_size:
        for status in statuses:
            if status.name not in merged or (status.status == "error" and merged[status.name].status != "error"):
                merged[status.name] = status
    return list(merged.values())
