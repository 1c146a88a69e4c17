"""Polygraphy's element-wise accuracy check as a compare function that computes only what it returns.

:class:`ElementwiseCompareFunc` is a ``compare_func`` for ``Comparator.compare_accuracy``: per
output it gives the same ``OutputCompareResult`` as ``SimpleCompareFunc(check_error_stat="elemwise")``
(the same statistics, thresholds and verdict: an element fails where both ``|a-b| > atol`` and
``|a-b| > rtol*|b|``, NaN failing), but it formats no log statistics of the compared arrays
unless asked (``verbose``). ``SimpleCompareFunc`` computes mean, median and percentiles of every
error array for its log even when the log is off, which with every rectified layer compared is a
large share of a comparison.
"""

from __future__ import annotations

import functools
from collections import OrderedDict

import numpy as np
from polygraphy.comparator import AccuracyResult, RunResults
from polygraphy.comparator import util as comparator_util
from polygraphy.comparator.compare import (
    BaseCompareFunc,
    OutputCompareResult,
    SimpleThreshold,
    default_find_output_func,
    run_comparison,
)

DEFAULT_TOLERANCE = 1e-5
"""Polygraphy's default atol and rtol for an output missing from a per-output dict."""
ZERO_EPSILON = 2.220446049250313e-16
"""Added to zero reference values before relative errors (as Polygraphy does)."""


def _cast_up(value: np.ndarray) -> np.ndarray:
    """Polygraphy's ``cast_up``: fp16 -> fp32, small ints -> int32, uint32 -> int64."""
    if value.dtype == np.float16:
        return value.astype(np.float32)
    if value.dtype in (np.int8, np.uint8, np.int16, np.uint16):
        return value.astype(np.int32)
    if value.dtype == np.uint32:
        return value.astype(np.int64)
    return value


def _per_output(value, name: str) -> float:
    if isinstance(value, dict):
        return value.get(name, value.get("", DEFAULT_TOLERANCE))
    return DEFAULT_TOLERANCE if value is None else value


def _median(value: np.ndarray) -> float:
    return 0 if value.size == 0 else np.median(_cast_up(value))


def output_result(out0: np.ndarray, out1: np.ndarray, atol: float, rtol: float,
                  verbose: bool = False) -> OutputCompareResult:
    """One output of one iteration, ``out0`` against the reference ``out1`` (same shape)."""
    out0, out1 = np.asarray(out0), np.asarray(out1)
    if out0.dtype == np.bool_ and out1.dtype == np.bool_:
        absdiff = np.logical_xor(out0, out1)
    else:
        absdiff = np.abs(np.subtract(_cast_up(out0), _cast_up(out1)))
    ref = np.array(_cast_up(out1), copy=True)
    if ref.dtype.kind == "f":
        ref[ref == 0] += ZERO_EPSILON
    reldiff = np.divide(absdiff, np.abs(ref))
    mismatches = (np.greater(absdiff, atol) | np.isnan(absdiff)) & (np.greater(reldiff, rtol) | np.isnan(reldiff))
    result = OutputCompareResult(
        np.max(absdiff), np.max(reldiff),
        np.mean(absdiff, dtype=np.float32), np.mean(reldiff, dtype=np.float32),
        _median(absdiff), _median(reldiff), None, None,
        thresholds=SimpleThreshold("elemwise", atol, rtol), passed=not bool(np.any(mismatches)),
    )
    if verbose:
        comparator_util.log_output_stats(absdiff, not result, "Absolute Difference")
        comparator_util.log_output_stats(reldiff, not result, "Relative Difference")
    return result


class ElementwiseCompareFunc(BaseCompareFunc):
    """``SimpleCompareFunc(atol=atol, rtol=rtol, check_error_stat="elemwise")`` without its log
    statistics (see the module docstring). ``atol``/``rtol`` are floats or per-output dicts (key
    ``""``: the default). Outputs are paired by Polygraphy's own name matching, and outputs of
    different shapes give ``False``, as with ``SimpleCompareFunc``."""

    _SUMMARY_LABEL = "simple"
    _RESULT_CLASS = OutputCompareResult

    def __init__(self, atol=None, rtol=None, verbose: bool = False):
        self.atol, self.rtol, self.verbose = atol, rtol, verbose
        self.check_shapes, self.fail_fast, self.find_output_func = True, False, None

    def thresholds_for(self, output_name):
        return SimpleThreshold("elemwise", _per_output(self.atol, output_name), _per_output(self.rtol, output_name))

    def __call__(self, iter_result0, iter_result1):
        def match(out0_name, output0, _out1_name, output1):
            if np.shape(output0) != np.shape(output1):
                return False
            return output_result(output0, output1, _per_output(self.atol, out0_name),
                                 _per_output(self.rtol, out0_name), self.verbose)

        find = functools.partial(default_find_output_func, base_iter_result=iter_result0)
        return OrderedDict(run_comparison(match, False, iter_result0, iter_result1, find, self._SUMMARY_LABEL))


def compare_runs(results: RunResults, atol, rtol, verbose: bool = False) -> dict:
    """The element-wise check of every runner in ``results`` against the first, as Polygraphy's
    ``AccuracyResult``: ``(runner, reference) -> [per-iteration {output: OutputCompareResult}]``.

    Pairs are (candidate, reference): relative errors divide by the *second* output, so they come
    out relative to the reference. ``atol`` is a float or a per-output dict; ``None`` means the
    scale-relative default, :func:`output_atols` of the reference. ``verbose`` goes through
    ``Comparator.compare_accuracy`` and its log; otherwise the pairs are compared directly, since
    ``compare_accuracy`` formats statistics of every compared output for its log whatever the
    log level (the verdicts are the same either way).
    """
    atols = atol if atol is not None else output_atols(results[0][1], rtol)
    func = ElementwiseCompareFunc(atol=atols, rtol=rtol, verbose=verbose)
    if verbose:
        from polygraphy.comparator import Comparator

        return Comparator.compare_accuracy(results, comparisons=[(i, 0) for i in range(1, len(results))],
                                           compare_func=func)[0]
    accuracy = AccuracyResult()
    reference_name, reference = results[0]
    for name, iterations in list(results)[1:]:
        accuracy[(name, reference_name)] = [func(it, ref) for it, ref in zip(iterations, reference, strict=False)]
    return accuracy


def output_atols(reference: list, rtol: float) -> dict[str, float]:
    """``rtol * max|ref|`` per output, over every iteration of the reference runner."""
    scale = {}
    for iteration in reference:
        for name, value in iteration.items():
            magnitude = np.abs(np.asarray(value, dtype=np.float64))
            largest = float(np.max(magnitude[np.isfinite(magnitude)], initial=0.0))
            scale[name] = max(scale.get(name, 0.0), largest)
    return {name: rtol * value for name, value in scale.items()}
