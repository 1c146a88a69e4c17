"""Proof that a file with dynamic dimensions is right at sizes other than the example's.

torch.export specialises what it cannot keep symbolic: a size-1 dimension of the example, a
pooling to a fixed size, a ``Reshape`` with the example's batch. The ONNX file still declares the
dimension dynamic, and is then wrong, or fails, at other sizes. Two checks, both run by
:func:`exporter.onnx.export.export_onnx` before it reports success:

* :func:`dynamic_ranges` reads the ranges torch.export kept for each dimension asked to be
  dynamic; :func:`check_ranges` refuses a dimension it specialised to one size. A range bounded
  above is evidence, not proof (torch bounds some decompositions, circular padding's batch for
  one, that the file computes right beyond): the sizes checked then lie beyond the bound.
* :func:`check_other_sizes` runs the written file on ONNX Runtime against the PyTorch model at
  :func:`verification_shapes` (batch 2; an odd size and a much larger size for dynamic H/W) and
  refuses a file whose error there is of the order of a wrong result (:data:`VERIFY_RTOL`),
  not of rounding, which ``compare`` checks precisely.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

AXES = {0: "batch", 2: "height", 3: "width"}
VERIFY_RTOL = {"fp32": 1e-3, "fp16": 3e-2}
"""Largest ``max|onnx - torch| / max|torch|`` accepted at the other sizes, by precision: ten times
the comparison's default, far below the errors of a specialised file (order 1 and more)."""


class ShapeCheckError(ValueError):
    """The file would be wrong or fail at sizes it declares dynamic; the message says what to change."""


def dynamic_ranges(program, dims: Sequence[int]) -> dict[str, tuple[int, float] | int]:
    """For each input dimension in ``dims`` (0, 2, 3): ``(lower, upper)`` as torch.export kept it
    (``upper`` is ``inf`` when unbounded), or the int it was specialised to.

    ``program`` is the ``torch.onnx.ONNXProgram`` of a dynamo export.
    """
    exported = program.exported_program
    name = exported.graph_signature.user_inputs[0]
    node = next(n for n in exported.graph.nodes if n.op == "placeholder" and n.name == name)
    shape = node.meta["val"].shape
    found = {}
    for dim in dims:
        size = shape[dim]
        if isinstance(size, int):
            found[AXES[dim]] = size
            continue
        bounds = exported.range_constraints.get(size.node.expr)
        if bounds is None:  # an expression of other symbols: bounded by theirs
            found[AXES[dim]] = (0, float("inf"))
            continue
        found[AXES[dim]] = (_bound(bounds.lower), _bound(bounds.upper))
    return found


def _bound(value) -> int | float:
    """A sympy range bound as a number: ``inf`` for torch's ``int_oo`` (and sympy's ``oo``)."""
    return float("inf") if str(value) in ("oo", "int_oo") else int(value)


def check_ranges(ranges: dict, example_shape: Sequence[int]) -> None:
    """Raise :class:`ShapeCheckError` for a dimension torch.export specialised to one size."""
    fixed = {axis: r for axis, r in ranges.items() if isinstance(r, int)}
    if fixed:
        raise ShapeCheckError(
            f"torch.export fixed {', '.join(f'{axis} to {r}' for axis, r in fixed.items())} for the example input "
            f"{list(example_shape)}, so the file cannot take other sizes: {_advice(fixed)}"
        )


def bounded(ranges: dict) -> dict:
    """The dimensions torch.export kept only up to a finite size: ``{axis: (lower, upper)}``."""
    return {axis: r for axis, r in ranges.items() if not isinstance(r, int) and r[1] != float("inf")}


def describe_bounds(ranges: dict) -> str:
    """``"height only in [17, 32]; width only in [17, 32]"`` for the bounded dimensions."""
    return "; ".join(f"{axis} only in [{low}, {high}]" for axis, (low, high) in bounded(ranges).items())


def _advice(axes) -> str:
    params = sorted({"dynamic_batch" if axis == "batch" else "dynamic_hw" for axis in axes})
    return ("give a larger example input (e.g. 224x224, so no feature map is 1x1, and batch 2), or export "
            f"without {' and '.join(f'{p}=True' for p in params)}")


def _beyond(upper: float, size: int) -> int:
    """The smallest odd size above both ``size`` and ``upper`` (``upper`` may be ``inf``: ignored)."""
    floor = size if upper == float("inf") else max(size, int(upper))
    return floor + 1 + floor % 2


def verification_shapes(example_shape: Sequence[int], dynamic_batch: bool, dynamic_hw: bool,
                        ranges: dict | None = None) -> list[tuple]:
    """Input shapes other than the example's to check the file at.

    Batch 2 (or 1 when the example has 2) for a dynamic batch; for dynamic H/W one odd size next to
    the example's and one about twice as large and odd, where stride-2 layers round. Where torch.export
    bounded a dimension (``ranges``), the sizes lie beyond the bound: past it, the file must still agree.
    """
    n, c, h, w = example_shape
    limits = bounded(ranges or {})
    batch = n
    if dynamic_batch:
        batch = 1 if n == 2 else 2
        if "batch" in limits:
            batch = int(limits["batch"][1]) + 1
    shapes = []
    if dynamic_hw:
        h1 = _beyond(limits.get("height", (0, float("inf")))[1], h)
        w1 = _beyond(limits.get("width", (0, float("inf")))[1], w)
        shapes.append((batch, c, h1, w1))  # the next odd size (past any bound)
        shapes.append((batch, c, 2 * h + 1, 2 * w + 3))
    elif dynamic_batch:
        shapes.append((batch, c, h, w))
    return shapes


def check_other_sizes(path, model: torch.nn.Module, shapes: Sequence[tuple], precision: str, session,
                      ranges: dict | None = None) -> list[dict]:
    """Run ``session`` (ONNX Runtime, on the file at ``path``) and ``model`` at each of ``shapes``.

    Returns one ``{"shape", "rel_err"}`` per shape; raises :class:`ShapeCheckError` when ONNX
    Runtime fails, an output's shape contradicts the one the file declares, or the error exceeds
    :data:`VERIFY_RTOL` (naming torch.export's bounds, if any).
    """
    kept = describe_bounds(ranges or {})
    why = (f"torch.export kept {kept}, so the file would be wrong at other sizes: "
           f"{_advice(bounded(ranges or {}))}" if kept else
           "a size was fixed to the example's while tracing (a pooling to a fixed output, a reshape with the "
           "example's batch): export with a larger example input or fewer dynamic dimensions")
    input_name = session.get_inputs()[0].name
    input_dtype = np.float16 if session.get_inputs()[0].type == "tensor(float16)" else np.float32
    checked = []
    generator = torch.Generator().manual_seed(0)
    for shape in shapes:
        x = torch.randn(shape, generator=generator)
        try:
            got = session.run(None, {input_name: x.numpy().astype(input_dtype)})
        except Exception as err:  # noqa: BLE001 - ORT raises its own pybind types
            raise ShapeCheckError(
                f"{path} declares dynamic dimensions but ONNX Runtime fails at input {list(shape)} "
                f"({type(err).__name__}: {str(err).strip().splitlines()[0][:300]}); {why}"
            ) from None
        declared = [(o.name, o.shape) for o in session.get_outputs()]
        for (name, dims), value in zip(declared, got, strict=True):
            fixed = [(d, v) for d, v in zip(dims, value.shape, strict=False) if isinstance(d, int)]
            if len(dims) != value.ndim or any(d != v for d, v in fixed):
                raise ShapeCheckError(
                    f"{path} declares output {name!r} as {list(dims)}, but at input {list(shape)} it is "
                    f"{list(value.shape)}: the declared shape was fixed to the example's; {why}"
                )
        with torch.no_grad():
            want = model(x)
        wants = [want] if isinstance(want, torch.Tensor) else list(want.values() if isinstance(want, dict) else want)
        error = max(_relative_error(g, wt.float().numpy()) for g, wt in zip(got, wants, strict=False))
        checked.append({"shape": list(shape), "rel_err": error})
        if not error <= VERIFY_RTOL[precision]:
            raise ShapeCheckError(
                f"{path} is wrong at input {list(shape)}: relative error {error:.3g} against PyTorch "
                f"(allowed {VERIFY_RTOL[precision]}); {why}"
            )
    return checked


def _relative_error(got: np.ndarray, want: np.ndarray) -> float:
    """``max|got - want| / max|want|`` (infinite for a shape mismatch, NaN-aware)."""
    if got.shape != want.shape:
        return float("inf")
    scale = float(np.max(np.abs(want))) or 1.0
    diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
    return float("inf") if np.isnan(diff).any() else float(diff.max()) / scale
