"""Accuracy comparison of an exported model across backends, built on Polygraphy's ``Comparator``.

``compare(onnx_path, torch_model, config)`` reads as its four steps:

1. plan (:mod:`.plan`): read the file, check that every named backend can run here, choose the
   verdict, the input sizes and the rectified layers with their PyTorch references;
2. run (:mod:`.runs`): each backend at each size on the same feeds, one at a time (one that
   crashes is reported instead of losing the rest), and PyTorch in float64 for the noise floor;
3. judge (:mod:`.verdicts`): the verdict object turns each size's results into pairs;
4. report (:mod:`.report`): a :class:`~exporter.comparison.report.CompareReport`.

Three verdicts (:data:`~exporter.comparison.defaults.VERDICTS`):

* ``"noise-floor"`` (default, needs the PyTorch model and the ``torch`` backend): PyTorch also
  runs in float64 on the CPU (``torch-fp64``, the ground truth, untimed). The *noise floor* of
  each output is how far fp32 PyTorch (fp16 PyTorch, ``torch-fp16``, for an fp16 file) is from
  it: ``floor = max(max|fp32 - fp64|, eps * max|fp64|)`` over every element and iteration. Every
  backend is checked against ``torch-fp64``: it fails where any element is off by more than
  ``K * floor`` (:data:`~exporter.comparison.defaults.NOISE_FLOOR_MULTIPLE`), and, when ``rtol``
  or ``atol`` is given, where it leaves that tolerance. The default tolerance is not applied
  under this verdict: for fp32 it is looser than ``K * floor``, and for fp16 PyTorch itself can
  exceed it on deep networks.
* ``"tolerance"``: the tolerance alone, against the first backend that ran.
* ``"int8"`` (what an int8 Q/DQ file gets instead of the noise floor): each backend against fp32
  PyTorch by cosine similarity, top-1 agreement on decided rows and an element-wise error bound
  relative to the output's scale (:data:`~exporter.comparison.defaults.INT8_VERDICT`).

Tolerances: an element fails where both ``|a-b| > atol`` and ``|a-b| > rtol*|ref|``. ``rtol``
defaults by precision (:data:`~exporter.comparison.defaults.DEFAULT_TOLERANCE`); ``atol``
defaults, per output, to ``rtol * max|ref|``: errors are measured against the output's scale.

Unless ``outputs_only``, the file runs with the tensor after every rectified conv as an extra
output, PyTorch taps the matching modules, and each layer is held to the same verdict: the first
failing layer is named, and each layer's error is given on its border ring (factor != 1) and its
interior apart. A dynamic-H/W file is compared at the three sizes of
:func:`~exporter.comparison.defaults.check_sizes`.

Backends: named ones (``config.backends``) must each run here (else ``ValueError`` before any
work); of the default list, those that cannot run here are skipped and counted in the report.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from polygraphy.common import TensorMetadata
from polygraphy.comparator import RunResults
from polygraphy.logger import G_LOGGER

from exporter.backends import availability
from exporter.backends.runners import torch_input_metadata
from exporter.comparison.config import CompareConfig
from exporter.comparison.layerwise import border_rings
from exporter.comparison.modules import unmatched_modules, weights_differ_everywhere
from exporter.comparison.plan import Plan, make_plan
from exporter.comparison.report import CompareReport, LayerDivergence, PairResult, PerLayerResult
from exporter.comparison.runs import RunSetup, merge_statuses, reference_runs, run_backends
from exporter.comparison.saved import save_sizes
from exporter.comparison.verdicts import FP64_REFERENCE, LOW_FLOORS, Judgement, NoiseFloorVerdict, ToleranceVerdict
from exporter.onnx.feeds import load_feeds, resolve_input_metadata

_RENAMED = {"torch_model_name": "model_name"}

WEIGHTS_HINT = "the file's weights differ from the model's everywhere: did you forget --checkpoint?"
MODEL_HINT = ("give the PyTorch model the file was exported from (--model) to compare the file against "
              "PyTorch: without it only the ONNX backends that can run here are compared with each other")


@contextmanager
def _polygraphy_log(verbose: bool):
    """Polygraphy's log as asked: all of it (``verbose``) or none. The compare function computes
    no log statistics unless verbose (:mod:`.elementwise`); arrays that Polygraphy formats into
    its messages eagerly print one element per axis (``np.printoptions`` is local to this
    context)."""
    if verbose:
        yield
        return
    with G_LOGGER.verbosity(G_LOGGER.CRITICAL), np.printoptions(threshold=1, edgeitems=1):
        yield


@dataclass
class SizeRun:
    """One input shape: the backends' statuses and results (the reference first), the feeds, the
    resolved input metadata, the verdict that judges it and what it found."""

    statuses: list
    results: RunResults
    feeds: list
    metadata: TensorMetadata
    verdict: object
    judgement: Judgement

    @property
    def shape(self) -> list[int]:
        return list(next(iter(self.metadata.values())).shape)

    @property
    def label(self) -> str:
        return "x".join(str(d) for d in self.shape[2:])


def compare(onnx_path: str | os.PathLike, torch_model: torch.nn.Module | None = None,
            config: CompareConfig | None = None, **options) -> CompareReport:
    """Compare the backends of ``config`` (:class:`~exporter.comparison.config.CompareConfig`)
    on the ONNX file at ``onnx_path``; ``torch_model`` is the PyTorch model the file was exported
    from (needed for the ``torch`` backend and the noise-floor and int8 verdicts; without it the
    verdict is ``"tolerance"`` and the report says so). Keyword ``options`` are config fields
    (``backends=...``), applied on top of ``config``.

    Raises ``ValueError`` before any work for a missing or unreadable file, a bad option, a named
    backend that cannot run here, or input sizes that do not fit the file.
    """
    options = {_RENAMED.get(key, key): value for key, value in options.items()}
    config = dataclasses.replace(config, **options) if config is not None else CompareConfig(**options)
    plan = make_plan(onnx_path, torch_model, config)
    with _polygraphy_log(config.verbose), tempfile.TemporaryDirectory(prefix="rfconv-compare-") as workdir:
        run_path, run_model = plan.runnable(Path(workdir))
        copies: dict = {}  # the PyTorch model in float64 (and fp16), made once for every size
        sizes = [_run_and_judge(plan, shape, run_path, run_model, copies) for shape in plan.shapes]
        saved = save_sizes([(s.label, s.feeds, s.results) for s in sizes], config.save_inputs, config.save_results)
    return _report(plan, sizes, saved)


def _run_and_judge(plan: Plan, shape, run_path, run_model, copies: dict) -> SizeRun:
    """Every backend (and the float64 reference) at one input shape, judged by the plan's verdict."""
    config = plan.config
    metadata = resolve_input_metadata(plan.onnx_model, config.batch_size, shape)
    feeds = load_feeds(config.inputs, metadata, config.iterations, config.seed)
    torch_inputs = torch_input_metadata(metadata, plan.torch_model) if plan.torch_model is not None else None
    setup = RunSetup(plan.options, plan.torch_model, torch_inputs, feeds)
    taps = plan.taps()
    statuses, results = run_backends(plan.backends, run_path, run_model, setup, taps)
    verdict = plan.verdict
    if isinstance(verdict, NoiseFloorVerdict):
        ref_statuses, refs = reference_runs(setup, plan.onnx_model,
                                            verdict.floor_runner if verdict.floor_runner in LOW_FLOORS else None,
                                            taps, copies)
        statuses += ref_statuses
        names = dict(refs) | dict(results)
        if FP64_REFERENCE in names and verdict.floor_runner in names:
            merged = RunResults()
            for name, its in [*refs, *results]:
                merged.append((name, its))
            results = merged
        else:
            # no floor without both PyTorch runs (their errors are in the statuses, which fail
            # the report): the backends that ran are still compared with each other
            verdict = ToleranceVerdict(verdict.atol, verdict.rtol, verdict.verbose)
    judgement = Judgement([], [])
    if len(results) >= 2:
        layer_names = [layer.tensor for layer in plan.layers]
        rings = border_rings(plan.onnx_model, plan.layers, {name: tuple(meta.shape) for name, meta in
                                                            metadata.items()}) if plan.layers else {}
        judgement = verdict.judge(results, plan.outputs, layer_names, rings)
        label = list(next(iter(metadata.values())).shape)
        for pair in [*judgement.pairs, *judgement.layer_pairs]:
            pair.input_shape = label
    return SizeRun(statuses, results, feeds, metadata, verdict, judgement)


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


def _failing(size: SizeRun) -> list[PairResult]:
    """Layer pairs (one per backend) whose backend failed at this size, on an output or a layer."""
    found = size.judgement
    failed = {p.backend for p in [*found.pairs, *found.layer_pairs] if not p.passed}
    return [p for p in found.layer_pairs if p.backend in failed]


def _per_layer(plan: Plan, sizes: list[SizeRun]) -> PerLayerResult:
    references = plan.references
    missing = unmatched_modules(references, plan.torch_model) if references is not None else []
    result = PerLayerResult(plan.layer_status, missing=missing)
    verdict = plan.verdict
    floor_ran = isinstance(verdict, NoiseFloorVerdict) and any(
        st.name == verdict.floor_runner and st.status == "ran" for size in sizes for st in size.statuses)
    if plan.layers and floor_ran and not plan.user_tolerance and verdict.floor_runner not in LOW_FLOORS:
        result.floor_runner = verdict.floor_runner
    if plan.layers:
        matched = {ref.tap.output_name: ref for ref in references or []}
        result.layers = [
            dict(asdict(layer), torch_module=matched[layer.tensor].tap.module if layer.tensor in matched else None,
                 fused_bias_reference=matched[layer.tensor].shift_source if layer.tensor in matched else None)
            for layer in plan.layers
        ]
        result.pairs = [pair for size in sizes for pair in size.judgement.layer_pairs]
        failing = [p for size in sizes for p in _failing(size)]
        result.first_divergence = [_first_divergence(pair, plan.layers, result.layers) for pair in failing]
    return result


def _hints(plan: Plan, report: CompareReport) -> list[str]:
    """What the user most likely has to change when the comparison failed."""
    hints = []
    if report.passed:
        return hints
    if plan.references is not None and weights_differ_everywhere(plan.references):
        hints.append(WEIGHTS_HINT)
    if plan.torch_model is None and len(report.ran) < 2:
        hints.append(MODEL_HINT)
    return hints


def _report(plan: Plan, sizes: list[SizeRun], saved: dict) -> CompareReport:
    config, mode = plan.config, plan.verdict.mode
    first = sizes[0]
    tolerances = {"rtol": plan.rtol, "atol": config.atol if config.atol is not None else "rtol * max|ref| per output",
                  "check": "per element: |a-b| <= atol or |a-b| <= rtol*|ref|",
                  "applied": mode == "tolerance" or plan.user_tolerance}
    noise_floor = None
    if isinstance(plan.verdict, NoiseFloorVerdict):
        noise_floor = {"reference": FP64_REFERENCE, "floor_runner": plan.verdict.floor_runner,
                       "multiple": config.floor_multiple,
                       "floor": "max(max|floor_runner - reference|, eps * max|reference|) per output",
                       "eps": plan.verdict.eps,
                       "floors": [{"input_shape": s.shape, "floors": s.judgement.floors} for s in sizes]}
    torch_model = plan.torch_model
    report = CompareReport(
        onnx_model=str(plan.onnx_path),
        torch_model=config.model_name or (type(torch_model).__name__ if torch_model is not None else None),
        precision=plan.precision,
        model_precision=plan.file_precision,
        tolerances=tolerances,
        inputs={"source": config.inputs, "seed": config.seed if config.inputs == "random" else None,
                "iterations": len(first.feeds), "shapes": {name: list(meta.shape) for name, meta in
                                                          first.metadata.items()}},
        backends=merge_statuses([s.statuses for s in sizes]),
        comparisons=[pair for size in sizes for pair in size.judgement.pairs],
        per_layer=_per_layer(plan, sizes),
        versions=availability.versions(),
        saved=saved,
        verdict_mode=mode,
        verdict_note=plan.verdict_note,
        noise_floor=noise_floor,
        sizes=[s.shape for s in sizes],
    )
    report.hints = _hints(plan, report)
    return report
