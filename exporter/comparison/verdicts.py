"""The three verdicts of a comparison, each an object with one ``judge`` method.

Modelled on Polygraphy's compare functions: a verdict holds its settings and turns the raw
results of one input shape into :class:`Judgement` (per-output and per-layer pairs, noise floors).
``results`` are Polygraphy ``RunResults`` with the reference runner first; ``outputs`` the file's
output names; ``layer_names`` the rectified layers' tensors (extra outputs of every runner);
``rings`` a bool mask ``[Ho, Wo]`` per layer tensor (True on the border ring), or None.

* :class:`ToleranceVerdict`: every runner against the first within ``atol``/``rtol``.
* :class:`NoiseFloorVerdict`: every runner against float64 PyTorch within K times the noise
  floor (fp32 or fp16 PyTorch's own error), and within the tolerance when one was given.
* :class:`Int8Verdict`: cosine, decided top-1 and a scale-relative error bound against fp32
  PyTorch (:data:`~exporter.comparison.defaults.INT8_VERDICT`); layers by their border ring.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from polygraphy.comparator import IterationResult, RunResults

from exporter.comparison.defaults import INT8_VERDICT
from exporter.comparison.elementwise import compare_runs, output_atols
from exporter.comparison.report import PairResult, pair_results

FP64_REFERENCE = "torch-fp64"
"""PyTorch in float64 on the CPU: the ground truth of the noise floor."""
FP16_FLOOR = "torch-fp16"
"""PyTorch in fp16 on the CPU: the noise floor of an fp16 file (a measurement, not a backend)."""
BF16_FLOOR = "torch-bf16"
"""PyTorch in bf16 on the CPU: the noise floor of ``precision="bf16"`` (``ov-cpu`` computing in bf16)."""
LOW_FLOORS = {FP16_FLOOR: "fp16", BF16_FLOOR: "bf16"}
"""The reduced-precision floor runners (measurements, not backends) and their precisions."""


@dataclass
class Judgement:
    """What a verdict found at one input shape: output pairs, layer pairs and the noise floors."""

    pairs: list[PairResult]
    layer_pairs: list[PairResult]
    floors: dict[str, float] = field(default_factory=dict)


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


def ring_errors(results: RunResults, pairs: list[PairResult], rings: dict) -> None:
    """Fill each layer's ``ring_max_abs``/``interior_max_abs``: the largest ``|cand - ref|`` on
    positions whose factor is not 1 and on the others (``rings``: tensor -> bool ``[Ho, Wo]``),
    and the largest |reference| on each."""
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


def _without_outputs(results: RunResults, runner: str, names: set[str]) -> RunResults:
    """``results`` with ``runner``'s iterations stripped of the outputs in ``names``."""
    kept = RunResults()
    for name, iterations in results:
        if name == runner:
            iterations = [IterationResult({k: v for k, v in it.items() if k not in names}, it.runtime, name)
                          for it in iterations]
        kept.append((name, iterations))
    return kept


def _without_runner(results: RunResults, runner: str) -> RunResults:
    kept = RunResults()
    for name, its in results:
        if name != runner:
            kept.append((name, its))
    return kept


@dataclass(frozen=True)
class ToleranceVerdict:
    """Every runner against the first: an element fails where both ``|a-b| > atol`` and
    ``|a-b| > rtol*|ref|``; ``atol=None`` is ``rtol * max|ref|`` per output."""

    atol: float | None
    rtol: float
    verbose: bool = False
    mode = "tolerance"

    def judge(self, results: RunResults, outputs: list[str], layer_names: list[str], rings: dict) -> Judgement:
        tolerance = compare_runs(results, self.atol, self.rtol, self.verbose)
        layer_pairs = pair_results(results, tolerance, outputs=layer_names) if layer_names else []
        ring_errors(results, layer_pairs, rings)
        return Judgement(pair_results(results, tolerance, outputs=outputs), layer_pairs)


@dataclass(frozen=True)
class NoiseFloorVerdict:
    """Every runner against :data:`FP64_REFERENCE` (first in ``results``): its largest error per
    output (and layer) at most ``multiple`` times the noise floor, what ``floor_runner`` (fp32
    PyTorch, or :data:`FP16_FLOOR`) is off by, never below ``eps * max|ref|``. With
    ``user_tolerance`` the tolerance (``atol``/``rtol``) applies as well.

    Without a user tolerance the floor runner's layer tensors are the layers' floors: their
    multiple is 1 by definition, so the floor runner has no layer pairs.
    """

    multiple: float
    floor_runner: str
    eps: float
    atol: float | None
    rtol: float
    user_tolerance: bool
    verbose: bool = False
    mode = "noise-floor"

    def judge(self, results: RunResults, outputs: list[str], layer_names: list[str], rings: dict) -> Judgement:
        floors = noise_floors(dict(results)[self.floor_runner], results[0][1], self.eps)
        limits = {n: self.multiple * f for n, f in floors.items()}
        for low in LOW_FLOORS:
            if low in dict(results):
                results = _without_runner(results, low)
        unjudged = None
        if not self.user_tolerance and self.floor_runner in dict(results) and layer_names:
            unjudged = self.floor_runner  # half the per-layer work: its layers are the floors
            results = _without_outputs(results, unjudged, set(layer_names) - set(outputs))
        floor_check = None
        if not self.user_tolerance:
            tolerance = compare_runs(results, limits, 0.0, self.verbose)
        elif self.atol is None:
            # the default atol (rtol * max|ref|) is never below rtol * |ref|, so the tolerance is
            # |a-b| <= atol and both checks are one: |a-b| <= min(K * floor, atol), in one pass
            atols = output_atols(results[0][1], self.rtol)
            tolerance = compare_runs(results, {n: min(limit, atols[n]) for n, limit in limits.items()}, 0.0,
                                     self.verbose)
        else:
            tolerance = compare_runs(results, self.atol, self.rtol, self.verbose)
            floor_check = compare_runs(results, limits, 0.0, self.verbose)
        pairs = pair_results(results, tolerance, outputs=outputs, also=floor_check, floors=floors)
        layer_pairs = pair_results(results, tolerance, outputs=layer_names, also=floor_check, floors=floors) \
            if layer_names else []
        layer_pairs = [pair for pair in layer_pairs if pair.backend != unjudged]
        ring_errors(results, layer_pairs, rings)
        return Judgement(pairs, layer_pairs, floors)


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


@dataclass(frozen=True)
class Int8Verdict:
    """Every runner against fp32 PyTorch (first in ``results``) by :data:`INT8_VERDICT`: per
    output, cosine, top-1 on decided rows and ``|a-b| <= max_scaled_error * max|ref|``; per
    rectified layer, the border ring's relative error at most ``ring_ratio`` times the
    interior's plus ``ring_slack`` (int8 error grows with depth, so the output bounds do not
    apply to a deep layer; every layer's statistics are reported)."""

    limits: dict = field(default_factory=lambda: dict(INT8_VERDICT))
    verbose: bool = False
    mode = "int8"

    def judge(self, results: RunResults, outputs: list[str], layer_names: list[str], rings: dict) -> Judgement:
        # |a - b| <= bound * max|ref| per element: the scale-relative atol with rtol = bound
        pairs = pair_results(results, compare_runs(results, None, self.limits["max_scaled_error"], self.verbose),
                             outputs=outputs)
        self._output_checks(pairs, results)
        layer_pairs = []
        if layer_names:
            unbounded = {name: float("inf") for name in [*outputs, *layer_names]}
            layer_pairs = pair_results(results, compare_runs(results, unbounded, 0.0, self.verbose),
                                       outputs=layer_names)
            ring_errors(results, layer_pairs, rings)
            self._ring_checks(layer_pairs)
        return Judgement(pairs, layer_pairs)

    def _output_checks(self, pairs: list[PairResult], results: RunResults) -> None:
        """Cosine and decided top-1 (the error bound is the pairs' tolerance already); failing
        outputs get a note saying which."""
        limits, runs = self.limits, dict(results)
        for pair in pairs:
            for stats in pair.outputs:
                if stats.cosine_similarity is None:
                    continue
                reasons = []
                if stats.scaled_error is not None and stats.scaled_error > limits["max_scaled_error"]:
                    reasons.append(f"error {stats.scaled_error:.3f} of scale > {limits['max_scaled_error']}")
                if stats.cosine_similarity < limits["min_cosine"]:
                    reasons.append(f"cosine {stats.cosine_similarity:.4f} < {limits['min_cosine']}")
                if stats.top1_agreement is not None:
                    ref = [np.asarray(it[stats.output]) for it in runs[pair.reference]]
                    cand = [np.asarray(it[stats.output]) for it in runs[pair.backend]]
                    stats.top1_decided, stats.top1_decided_rows = _top1_decided(ref, cand, limits["top1_margin"])
                    if stats.top1_decided is not None and stats.top1_decided < limits["min_top1"]:
                        reasons.append(f"top-1 {stats.top1_decided:.2f} of {stats.top1_decided_rows} decided "
                                       f"row(s) < {limits['min_top1']}")
                if reasons:
                    stats.passed = False
                    stats.note = ", ".join([*([stats.note] if stats.note else []), *reasons])
            pair.passed = all(s.passed for s in pair.outputs)

    def _ring_checks(self, pairs: list[PairResult]) -> None:
        ratio, slack = self.limits["ring_ratio"], self.limits["ring_slack"]
        for pair in pairs:
            for stats in pair.outputs:
                if stats.ring_max_abs is None or not stats.ring_reference_max or not stats.interior_reference_max:
                    continue
                ring = stats.ring_max_abs / stats.ring_reference_max
                interior = stats.interior_max_abs / stats.interior_reference_max
                if ring > ratio * interior + slack:
                    stats.passed = False
                    stats.note = (f"border ring error {ring:.3f} of its scale > {ratio:g} x the interior's "
                                  f"{interior:.3f} + {slack:g}")
            pair.passed = all(s.passed for s in pair.outputs)
