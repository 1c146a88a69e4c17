"""What a comparison found, as data: backend statuses, per-output statistics, per-layer results.

:func:`pair_results` turns Polygraphy's ``RunResults`` + ``AccuracyResult`` into per-output
statistics; :class:`CompareReport` holds everything, serialises to JSON (:meth:`to_dict`) and
prints as a table (:meth:`format_table`). Errors are absolute (``|a - b|``) and relative
(``|a - b| / |reference|``), as Polygraphy computes them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from polygraphy.comparator import AccuracyResult, RunResults

# (our field, Polygraphy's OutputCompareResult attribute, how iterations combine)
ERROR_STATS = (
    ("max_abs", "max_absdiff", np.max),
    ("mean_abs", "mean_absdiff", np.mean),
    ("median_abs", "median_absdiff", np.median),
    ("max_rel", "max_reldiff", np.max),
    ("mean_rel", "mean_reldiff", np.mean),
    ("median_rel", "median_reldiff", np.median),
)
ERROR_FIELDS = tuple(ours for ours, _, _ in ERROR_STATS)


@dataclass
class BackendStatus:
    """``status`` is ``"ran"``, ``"skipped"`` (cannot run here; ``detail`` says why) or ``"error"``."""

    name: str
    status: str
    detail: str = ""
    mean_latency_ms: float | None = None


@dataclass
class OutputStats:
    """One output of one backend against the reference, over all iterations.

    ``max_*`` is the maximum and ``mean_*`` the mean over every element of every iteration;
    ``median_*`` is the median of the per-iteration medians. Relative errors of elements near
    zero are large by nature; ``reference_max_abs`` (the largest ``|reference|``) gives the scale
    to read ``max_abs`` against, and ``scaled_error`` is their ratio. ``atol`` is the absolute
    tolerance that was applied (with ``rtol``): under the noise floor ``K * floor`` with ``rtol``
    0, or ``min(K * floor, rtol * max|ref|)`` when an rtol was given (both checks in one).
    ``cosine_similarity`` is over all elements flattened; ``top1_agreement`` (classifier
    outputs ``[N, classes]`` only) is the fraction of rows whose argmax agrees; under the int8
    verdict ``top1_decided`` is that fraction over the ``top1_decided_rows`` rows whose
    reference top-1 is not a near tie (see ``INT8_VERDICT``). Under the
    noise-floor verdict ``floor`` is the output's noise floor (same units as ``max_abs``) and
    ``floor_multiple = max_abs / floor``; ``passed`` then needs ``floor_multiple <= K`` (and the
    tolerance, when one was given). For a rectified layer,
    ``ring_max_abs``/``interior_max_abs`` split ``max_abs`` into the border ring (positions whose
    factor is not 1) and the interior, ``ring_reference_max``/``interior_reference_max`` the
    largest |reference| on each.
    """

    output: str
    passed: bool
    iterations_passed: int
    iterations: int
    max_abs: float | None = None
    mean_abs: float | None = None
    median_abs: float | None = None
    max_rel: float | None = None
    mean_rel: float | None = None
    median_rel: float | None = None
    reference_max_abs: float | None = None
    scaled_error: float | None = None
    atol: float | None = None
    rtol: float | None = None
    cosine_similarity: float | None = None
    top1_agreement: float | None = None
    top1_decided: float | None = None
    top1_decided_rows: int | None = None
    floor: float | None = None
    floor_multiple: float | None = None
    ring_max_abs: float | None = None
    interior_max_abs: float | None = None
    ring_reference_max: float | None = None
    interior_reference_max: float | None = None
    note: str = ""


@dataclass
class PairResult:
    """``backend`` against ``reference`` at input shape ``input_shape``."""

    reference: str
    backend: str
    passed: bool
    outputs: list[OutputStats]
    input_shape: list[int] | None = None


@dataclass
class LayerDivergence:
    """The first rectified conv at which ``backend`` leaves ``reference``'s tolerance."""

    reference: str
    backend: str
    layer: dict | None  # RectifiedLayer fields plus the matched PyTorch module; None if none diverged
    stats: OutputStats | None
    explanation: str
    input_shape: list[int] | None = None


@dataclass
class PerLayerResult:
    """``status``: ``"ran"``, ``"not requested (outputs only)"``, or why no layer could be checked.

    ``pairs`` hold every layer's statistics per backend and size; ``first_divergence`` the first
    failing layer of each failing backend; ``missing`` the rectifying PyTorch modules that no
    rectified conv of the file comes from (a lost scale ``Mul``): each fails the comparison.
    ``floor_runner`` names the backend whose layer errors are the layers' noise floors (1 x floor
    by definition), which therefore has no pairs.
    """

    status: str
    layers: list[dict] = field(default_factory=list)
    pairs: list[PairResult] = field(default_factory=list)
    first_divergence: list[LayerDivergence] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    floor_runner: str | None = None


@dataclass
class CompareReport:
    onnx_model: str
    torch_model: str | None
    precision: str
    model_precision: str
    tolerances: dict
    inputs: dict
    backends: list[BackendStatus]
    comparisons: list[PairResult]
    per_layer: PerLayerResult
    versions: dict
    saved: dict = field(default_factory=dict)
    verdict_mode: str = "tolerance"
    verdict_note: str = ""
    noise_floor: dict | None = None
    sizes: list[list[int]] = field(default_factory=list)
    hints: list[str] = field(default_factory=list)

    @property
    def ran(self) -> list[str]:
        return [b.name for b in self.backends if b.status == "ran"]

    @property
    def skipped(self) -> list[BackendStatus]:
        return [b for b in self.backends if b.status == "skipped"]

    def summary(self) -> str:
        """How many backends ran, were skipped (and which, why) and failed: "2 backends ran, 1
        skipped: trt (tensorrt does not import ...)"."""
        ran = len(self.ran)
        text = f"{ran} backend{'s' if ran != 1 else ''} ran"
        errors = [b.name for b in self.backends if b.status == "error"]
        if errors:
            text += f", {len(errors)} failed to run: {', '.join(errors)}"
        if self.skipped:
            text += f", {len(self.skipped)} skipped: " + "; ".join(f"{b.name} ({b.detail})" for b in self.skipped)
        return text

    @property
    def passed(self) -> bool:
        """True only if two or more backends ran, none failed, every comparison passed at every
        size (outputs and rectified layers) and no rectified layer is missing from the file."""
        return (
            len(self.ran) >= 2
            and not any(b.status == "error" for b in self.backends)
            and all(p.passed for p in [*self.comparisons, *self.per_layer.pairs])
            and not self.per_layer.missing
        )

    def verdict(self) -> str:
        if any(b.status == "error" for b in self.backends):
            return "FAIL: a backend failed to run"
        if len(self.ran) < 2:
            return "FAIL: fewer than two backends ran, so nothing was compared"
        if self.per_layer.missing:
            return (f"FAIL: rectifying PyTorch module(s) {', '.join(map(repr, self.per_layer.missing))} "
                    "have no rectified conv (Conv -> scale Mul) in the file")
        failed = list(dict.fromkeys(f"{p.backend} vs {p.reference}" for p in [*self.comparisons, *self.per_layer.pairs]
                                    if not p.passed))
        if not failed:
            return "PASS"
        layers = {d.backend: d.layer for d in self.per_layer.first_divergence if d.layer}
        named = "; ".join(f"{b} first at rectified conv #{layer['index']}"
                          + (f" (PyTorch module {layer['torch_module']!r})" if layer["torch_module"] else "")
                          for b, layer in layers.items())
        what = {"noise-floor": "beyond the noise floor or tolerance",
                "int8": "outside the int8 verdict (cosine, top-1, error bound)"}.get(self.verdict_mode,
                                                                                      "out of tolerance")
        return f"FAIL: {', '.join(failed)} {what}" + (f"; {named}" if named else "")

    def to_dict(self) -> dict:
        """Plain JSON-ready data; non-finite numbers become None (strict JSON has no NaN)."""
        out = _finite(asdict(self))
        out["passed"] = self.passed
        out["verdict"] = self.verdict()
        out["summary"] = self.summary()
        return out

    def format_table(self) -> str:
        lines = ["Backends"]
        for b in self.backends:
            latency = f"{b.mean_latency_ms:9.3f} ms" if b.mean_latency_ms is not None else " " * 12
            lines.append(f"  {b.name:<9} {b.status:<8} {latency}  {b.detail}")
        tol = self.tolerances
        atol = f"{tol['atol']:g}" if isinstance(tol["atol"], float) else tol["atol"]
        verdict = f"verdict {self.verdict_mode}" + (f" ({self.verdict_note})" if self.verdict_note else "")
        if self.noise_floor:
            verdict += (f": error vs {self.noise_floor['reference']} <= {self.noise_floor['multiple']:g} x floor "
                        f"({self.noise_floor['floor_runner']} vs {self.noise_floor['reference']})")
        tolerance = f"{self.precision} rtol={tol['rtol']:g}, atol={atol}" if tol.get("applied", True) else \
            "no fixed tolerance (give rtol/atol to add one)"
        sizes = ", ".join("x".join(map(str, s)) for s in self.sizes)
        lines += ["", f"Comparisons ({verdict}; {tolerance}; "
                      f"{self.inputs['iterations']} batch(es) of {self.inputs['source']} inputs; input {sizes})"]
        lines += _stats_table(self.comparisons)
        lines += ["", f"Per-layer: {self.per_layer.status}"]
        if self.per_layer.pairs:
            lines += _layer_table(self.per_layer.pairs, self.per_layer.layers)
        if self.per_layer.floor_runner:
            lines.append(f"  {self.per_layer.floor_runner}: its layer errors are the layers' noise floors "
                         "(1 x floor by definition), not listed")
        for name in self.per_layer.missing:
            lines.append(f"  PyTorch module {name!r} rectifies, but no rectified conv of the file comes from it")
        for d in self.per_layer.first_divergence:
            lines.append(f"  {d.backend} vs {d.reference}: {d.explanation}")
        lines += ["", f"Backends: {self.summary()}", f"Result: {self.verdict()}"]
        lines += [f"Hint: {hint}" for hint in self.hints]
        return "\n".join(lines)


def _finite(value):
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _non_finite(arrays: list[np.ndarray]) -> bool:
    return any(a.dtype.kind == "f" and not np.isfinite(a).all() for a in arrays)


def _fmt(value: float | None, percent: bool = False) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.1f}%" if percent else f"{value:.3g}"


def _result(s: OutputStats) -> str:
    return ("PASS" if s.passed else "FAIL") + (f" ({s.note})" if s.note else "")


def _stats_table(pairs: list[PairResult]) -> list[str]:
    header = ("backend", "vs", "input", "output", "max abs", "/ scale", "floor", "x floor", "mean abs", "med abs",
              "max rel", "mean rel", "med rel", "cosine", "top-1", "result")
    rows = [header]
    for pair in pairs:
        for s in pair.outputs:
            cosine = f"{s.cosine_similarity:.7f}" if s.cosine_similarity is not None else "-"
            errors = [_fmt(getattr(s, f)) for f in ERROR_FIELDS]
            rows.append((
                pair.backend, pair.reference, "x".join(map(str, pair.input_shape or [])) or "-", s.output,
                errors[0], _fmt(s.scaled_error), _fmt(s.floor), _fmt(s.floor_multiple), *errors[1:],
                cosine, _fmt(s.top1_agreement, percent=True), _result(s),
            ))
    return _columns(rows)


def _layer_table(pairs: list[PairResult], layers: list[dict] = ()) -> list[str]:
    """One row per rectified layer, backend and size: the error on the border ring and the
    interior. A layer is named by its PyTorch module where it was matched to one (``layers``:
    :attr:`PerLayerResult.layers`), else by its ONNX tensor."""
    modules = {layer["tensor"]: layer.get("torch_module") for layer in layers}
    rows = [("backend", "vs", "input", "layer", "max abs", "x floor", "ring", "interior", "cosine", "result")]
    for pair in pairs:
        for index, s in enumerate(pair.outputs):
            name = modules.get(s.output) or s.output
            cosine = f"{s.cosine_similarity:.5f}" if s.cosine_similarity is not None else "-"
            rows.append((pair.backend, pair.reference, "x".join(map(str, pair.input_shape or [])) or "-",
                         f"#{index} {name}", _fmt(s.max_abs), _fmt(s.floor_multiple), _fmt(s.ring_max_abs),
                         _fmt(s.interior_max_abs), cosine, _result(s)))
    return _columns(rows)


def _columns(rows: list[tuple]) -> list[str]:
    header = rows[0]
    if len(rows) == 1:
        return ["  (nothing compared)"]
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(header))]
    return ["  " + "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two arrays flattened, in float64 (``einsum`` rather than BLAS ``dot``,
    whose threads contend with PyTorch's and ONNX Runtime's); 1 for two zero arrays, 0 for one."""
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    na, nb = np.sqrt(np.einsum("i,i->", a, a)), np.sqrt(np.einsum("i,i->", b, b))
    if na == 0 or nb == 0:
        return 1.0 if na == nb else 0.0
    return float(np.einsum("i,i->", a, b) / (na * nb))


def output_stats(
    output: str,
    per_iteration: list,
    reference: list[np.ndarray],
    candidate: list[np.ndarray],
    also: list | None = None,
    floor: float | None = None,
) -> OutputStats:
    """Aggregate Polygraphy's per-iteration results for one output (see :class:`OutputStats`).

    ``per_iteration`` holds Polygraphy ``OutputCompareResult`` objects, or ``False`` where it
    could not compare (shape mismatch); ``reference``/``candidate`` are the raw arrays. ``also``
    holds a second check's results (the noise floor's), which each iteration must pass too, and
    ``floor`` the noise floor it applied.
    """
    passed = [bool(r) for r in per_iteration]
    if also is not None:
        passed = [p and bool(a) for p, a in zip(passed, also, strict=True)]
    notes = [f"{side} has NaN/Inf" for side, arrays in (("reference", reference), ("candidate", candidate))
             if _non_finite(arrays)]
    stats = OutputStats(output, all(passed), sum(passed), len(passed))
    if not all(hasattr(r, "max_absdiff") for r in per_iteration):
        stats.note = ", ".join(["shapes differ", *notes])
        return stats
    stats.note = ", ".join(notes)
    for ours, theirs, combine in ERROR_STATS:
        setattr(stats, ours, float(combine([getattr(r, theirs) for r in per_iteration])))
    stats.atol, stats.rtol = per_iteration[0].thresholds.atol, per_iteration[0].thresholds.rtol
    ref = np.concatenate([np.ravel(a) for a in reference])
    cand = np.concatenate([np.ravel(a) for a in candidate])
    stats.reference_max_abs = float(np.max(np.abs(ref), initial=0.0))
    if stats.reference_max_abs > 0:
        stats.scaled_error = stats.max_abs / stats.reference_max_abs
    if floor is not None:
        stats.floor, stats.floor_multiple = floor, stats.max_abs / floor
    stats.cosine_similarity = _cosine(ref, cand)
    if all(a.ndim == 2 and a.shape[1] > 1 for a in reference):
        agree = [np.argmax(r, 1) == np.argmax(c, 1) for r, c in zip(reference, candidate, strict=True)]
        stats.top1_agreement = float(np.mean(np.concatenate(agree)))
    return stats


def pair_results(
    run_results: RunResults,
    accuracy: AccuracyResult,
    outputs: list[str] | None = None,
    also: AccuracyResult | None = None,
    floors: dict[str, float] | None = None,
) -> list[PairResult]:
    """One :class:`PairResult` per ``(candidate, reference)`` runner pair in ``accuracy``.

    ``outputs`` limits the statistics to those outputs (default: every output compared).
    ``also`` is a second check of the same pairs (the noise floor's) that must pass too, and
    ``floors`` the noise floor per output it applied.
    """
    pairs = []
    for (name, ref_name), iterations in accuracy.items():
        names = outputs if outputs is not None else list(iterations[0].keys()) if iterations else []
        stats = []
        for out in names:
            per_iteration = [it.get(out, False) for it in iterations]
            ref = [it[out] for it in run_results[ref_name]]
            cand = [it[out] for it in run_results[name]] if all(out in it for it in run_results[name]) else []
            if not cand:
                missing = OutputStats(out, False, 0, len(iterations), note=f"{name} has no output {out!r}")
                stats.append(missing)
                continue
            second = [it.get(out, False) for it in also[(name, ref_name)]] if also is not None else None
            stats.append(output_stats(out, per_iteration, ref, cand, second, (floors or {}).get(out)))
        pairs.append(PairResult(ref_name, name, all(s.passed for s in stats), stats))
    return pairs
