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
    tolerance that was applied (with ``rtol``). ``cosine_similarity`` is over all
    elements flattened; ``top1_agreement`` (classifier outputs ``[N, classes]`` only) is the
    fraction of rows whose argmax agrees.
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
    note: str = ""


@dataclass
class PairResult:
    reference: str
    backend: str
    passed: bool
    outputs: list[OutputStats]


@dataclass
class LayerDivergence:
    """The first rectified conv at which ``backend`` leaves ``reference``'s tolerance."""

    reference: str
    backend: str
    layer: dict | None  # RectifiedLayer fields plus the matched PyTorch module; None if none diverged
    stats: OutputStats | None
    explanation: str


@dataclass
class PerLayerResult:
    """``status``: ``"not requested"``, ``"not needed"`` (all outputs agreed), ``"ran"`` or an error."""

    status: str
    layers: list[dict] = field(default_factory=list)
    pairs: list[PairResult] = field(default_factory=list)
    first_divergence: list[LayerDivergence] = field(default_factory=list)


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

    @property
    def ran(self) -> list[str]:
        return [b.name for b in self.backends if b.status == "ran"]

    @property
    def passed(self) -> bool:
        """True only if two or more backends ran, none failed, and every comparison passed."""
        return (
            len(self.ran) >= 2
            and not any(b.status == "error" for b in self.backends)
            and all(p.passed for p in self.comparisons)
        )

    def verdict(self) -> str:
        if any(b.status == "error" for b in self.backends):
            return "FAIL: a backend failed to run"
        if len(self.ran) < 2:
            return "FAIL: fewer than two backends ran, so nothing was compared"
        failed = [f"{p.backend} vs {p.reference}" for p in self.comparisons if not p.passed]
        return f"FAIL: {', '.join(failed)} out of tolerance" if failed else "PASS"

    def to_dict(self) -> dict:
        """Plain JSON-ready data; non-finite numbers become None (strict JSON has no NaN)."""
        out = _finite(asdict(self))
        out["passed"] = self.passed
        out["verdict"] = self.verdict()
        return out

    def format_table(self) -> str:
        lines = ["Backends"]
        for b in self.backends:
            latency = f"{b.mean_latency_ms:9.3f} ms" if b.mean_latency_ms is not None else " " * 12
            lines.append(f"  {b.name:<9} {b.status:<8} {latency}  {b.detail}")
        tol = self.tolerances
        atol = f"{tol['atol']:g}" if isinstance(tol["atol"], float) else tol["atol"]
        lines += ["", f"Comparisons ({self.precision}: rtol={tol['rtol']:g}, atol={atol}; "
                      f"{self.inputs['iterations']} batch(es) of {self.inputs['source']} inputs)"]
        lines += _stats_table(self.comparisons)
        if self.per_layer.status != "not requested":
            lines += ["", f"Per-layer: {self.per_layer.status}"]
            for d in self.per_layer.first_divergence:
                lines.append(f"  {d.backend} vs {d.reference}: {d.explanation}")
        lines += ["", f"Result: {self.verdict()}"]
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


def _stats_table(pairs: list[PairResult]) -> list[str]:
    header = ("backend", "vs", "output", "max abs", "/ scale", "mean abs", "med abs", "max rel", "mean rel",
              "med rel", "cosine", "top-1", "result")
    rows = [header]
    for pair in pairs:
        for s in pair.outputs:
            cosine = f"{s.cosine_similarity:.7f}" if s.cosine_similarity is not None else "-"
            errors = [_fmt(getattr(s, f)) for f in ERROR_FIELDS]
            rows.append((
                pair.backend, pair.reference, s.output, errors[0], _fmt(s.scaled_error), *errors[1:],
                cosine, _fmt(s.top1_agreement, percent=True),
                ("PASS" if s.passed else "FAIL") + (f" ({s.note})" if s.note else ""),
            ))
    if len(rows) == 1:
        return ["  (nothing compared)"]
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(header))]
    return ["  " + "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        return 1.0 if na == nb else 0.0
    return float(np.dot(a, b) / (na * nb))


def output_stats(
    output: str,
    per_iteration: list,
    reference: list[np.ndarray],
    candidate: list[np.ndarray],
) -> OutputStats:
    """Aggregate Polygraphy's per-iteration results for one output (see :class:`OutputStats`).

    ``per_iteration`` holds Polygraphy ``OutputCompareResult`` objects, or ``False`` where it
    could not compare (shape mismatch); ``reference``/``candidate`` are the raw arrays.
    """
    passed = [bool(r) for r in per_iteration]
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
    stats.cosine_similarity = _cosine(ref, cand)
    if all(a.ndim == 2 and a.shape[1] > 1 for a in reference):
        agree = [np.argmax(r, 1) == np.argmax(c, 1) for r, c in zip(reference, candidate, strict=True)]
        stats.top1_agreement = float(np.mean(np.concatenate(agree)))
    return stats


def pair_results(
    run_results: RunResults,
    accuracy: AccuracyResult,
    outputs: list[str] | None = None,
) -> list[PairResult]:
    """One :class:`PairResult` per ``(candidate, reference)`` runner pair in ``accuracy``.

    ``outputs`` limits the statistics to those outputs (default: every output compared).
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
            stats.append(output_stats(out, per_iteration, ref, cand))
        pairs.append(PairResult(ref_name, name, all(s.passed for s in stats), stats))
    return pairs
