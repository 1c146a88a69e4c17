"""Check a decoded request against the model before it is queued, so that a bad request fails alone.

Every check raises :class:`~.protocol.RequestError` (HTTP 400) naming the input or output and
what the model expects; a request that passes can be stacked with others and run safely.
"""

from __future__ import annotations

import numpy as np

from exporter.serving.batcher import pixels
from exporter.serving.datatypes import FLOAT_TYPES, kserve_datatype
from exporter.serving.protocol import RequestedOutput, RequestError
from exporter.serving.session import TensorSpec
from exporter.shapes import InputProfile


def _shape_text(shape) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def _check_shape(shape: tuple[int, ...], spec: TensorSpec) -> None:
    fits = len(shape) == len(spec.shape) and all(want in (-1, got) for want, got in zip(spec.shape, shape, strict=True))
    if not fits:
        raise RequestError(
            f"input '{spec.name}' has shape {_shape_text(shape)} but the model takes "
            f"{_shape_text(spec.shape)} (-1 = any size)"
        )
    if 0 in shape:
        raise RequestError(f"input '{spec.name}' is empty (shape {_shape_text(shape)})")


def check_declared(name: str, datatype: str, shape: tuple[int, ...], specs: list[TensorSpec]) -> None:
    """What a request declares for one input (name, KServe datatype, shape), checked against the
    model's ``specs`` before any of its data is converted; the same 400s as :func:`check_inputs`."""
    spec = next((spec for spec in specs if spec.name == name), None)
    if spec is None:
        names = ", ".join(spec.name for spec in specs)
        raise RequestError(f"unknown input '{name}'; the model's inputs are: {names}")
    if datatype != spec.datatype:
        raise RequestError(f"input '{name}' has datatype {datatype} but the model takes {spec.datatype}")
    _check_shape(shape, spec)


def _check_range(array: np.ndarray, profile: InputProfile) -> None:
    if not profile.contains(array.shape):
        raise RequestError(
            f"input '{profile.name}' has shape {_shape_text(array.shape)}, outside the shapes this server "
            f"accepts: {profile.range_text()} (--min-shape/--max-shape)"
        )


def _check_finite(array: np.ndarray, spec: TensorSpec) -> None:
    if spec.datatype not in FLOAT_TYPES:
        return
    bad = array.size - int(np.count_nonzero(np.isfinite(array)))
    if bad:
        raise RequestError(
            f"input '{spec.name}' has {bad} non-finite values (NaN or Inf); this server rejects them "
            "(--reject-non-finite)"
        )


def check_inputs(
    inputs: dict[str, np.ndarray],
    specs: list[TensorSpec],
    *,
    max_batch: int,
    max_batch_pixels: int,
    batchable: bool,
    reject_non_finite: bool,
    profiles: tuple[InputProfile, ...] = (),
) -> dict[str, np.ndarray]:
    """The model's feeds, in graph order, from a request's ``inputs``.

    Checks names (none missing, none unknown), datatypes, shapes against ``specs`` (``-1`` matches
    any size), for a ``batchable`` model a common batch of 1 to ``max_batch`` rows, at most
    ``max_batch_pixels`` pixels (rows x H x W, :func:`~.batcher.pixels`), with
    ``reject_non_finite`` that float inputs hold no NaN or Inf, and that each input with one of
    ``profiles`` (:func:`~.session.served_profiles`) lies within its min..max shapes.
    """
    ranges = {profile.name: profile for profile in profiles}
    names = [spec.name for spec in specs]
    unknown = [name for name in inputs if name not in names]
    if unknown:
        raise RequestError(f"unknown input '{unknown[0]}'; the model's inputs are: {', '.join(names)}")
    missing = [name for name in names if name not in inputs]
    if missing:
        raise RequestError(f"missing input '{missing[0]}'; the model's inputs are: {', '.join(names)}")
    for spec in specs:
        array = inputs[spec.name]
        datatype = kserve_datatype(array.dtype)
        if datatype != spec.datatype:
            raise RequestError(
                f"input '{spec.name}' has datatype {datatype} but the model takes {spec.datatype}"
            )
        _check_shape(array.shape, spec)
        if spec.name in ranges:
            _check_range(array, ranges[spec.name])
        if reject_non_finite:
            _check_finite(array, spec)
    if batchable:
        rows = {inputs[name].shape[0] for name in names}
        if len(rows) > 1:
            raise RequestError(f"inputs disagree on the batch size (first dimension): {sorted(rows)}")
        (batch,) = rows
        if batch > max_batch:
            raise RequestError(
                f"batch of {batch} exceeds this server's max batch of {max_batch} (--max-batch)"
            )
    feeds = {name: inputs[name] for name in names}
    if pixels(feeds) > max_batch_pixels:
        raise RequestError(
            f"request of {pixels(feeds)} pixels (rows x H x W) exceeds this server's max of "
            f"{max_batch_pixels} per batch (--max-batch-pixels)", 413
        )
    return feeds


def resolve_outputs(
    requested: tuple[RequestedOutput, ...] | None, specs: list[TensorSpec], binary_output: bool
) -> tuple[RequestedOutput, ...]:
    """The outputs to send back: those requested, or every model output when none were."""
    names = [spec.name for spec in specs]
    if requested is None:
        return tuple(RequestedOutput(name, binary_output) for name in names)
    for want in requested:
        if want.name not in names:
            raise RequestError(f"unknown output '{want.name}'; the model's outputs are: {', '.join(names)}")
    return requested
