"""Proof that a file with dynamic dimensions is right at sizes other than the example's.

torch.export specialises what it cannot keep symbolic: a size-1 dimension of the example, a
pooling to a fixed size, a ``Reshape`` with the example's batch. The ONNX file still declares the
dimension dynamic, and is then wrong, or fails, at other sizes. Two checks, both run by
:func:`exporter.onnx.export.export_onnx` before it reports success:

* :func:`dynamic_ranges` reads the ranges torch.export kept for each dimension asked to be
  dynamic; :func:`check_ranges` refuses a dimension that was specialised or bounded above.
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
    """Raise :class:`ShapeCheckError` for a dimension specialised to one size or bounded above."""
    narrow = {axis: r for axis, r in ranges.items() if isinstance(r, int) or r[1] != float("inf")}
    if not narrow:
        return
    kept = "; ".join(f"{axis} fixed to {r}" if isinstance(r, int) else f"{axis} only in [{r[0]}, {r[1]}]"
                     for axis, r in narrow.items())
    params = sorted({"dynamic_batch" if axis == "batch" else "dynamic_hw" for axis in narrow})
    raise ShapeCheckError(
        f"torch.export kept {kept} for the example input {list(example_shape)}, so the file would be "
        f"wrong at other sizes: give a larger example input (e.g. 224x224, so no feature map is 1x1, and "
        f"batch 2), or export without {' and '.join(f'{p}=True' for p in params)}"
    )


def verification_shapes(example_shape: Sequence[int], dynamic_batch: bool, dynamic_hw: bool) -> list[tuple]:
    """Input shapes other than the example's to check the file at.

    Batch 2 (or 1 when the example has 2) for a dynamic batch; for dynamic H/W one odd size next to
    the example's and one about twice as large and odd, where stride-2 layers round.
    """
    n, c, h, w = example_shape
    batch = (1 if n == 2 else 2) if dynamic_batch else n
    shapes = []
    if dynamic_hw:
        shapes.append((batch, c, h + 1 + h % 2, w + 1 + w % 2))  # the next odd size
        shapes.append((batch, c, 2 * h + 1, 2 * w + 3))
    elif dynamic_batch:
        shapes.append((batch, c, h, w))
    return shapes


def check_other_sizes(path, model: torch.nn.Module, shapes: Sequence[tuple], precision: str, session) -> list[dict]:
    """Run ``session`` (ONNX Runtime, on the file at ``path``) and ``model`` at each of ``shapes``.

    Returns one ``{"shape", "rel_err"}`` per shape; raises :class:`ShapeCheckError` when ONNX
    Runtime fails or the error exceeds :data:`VERIFY_RTOL`.
    """
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
                f"({type(err).__name__}: {str(err).strip().splitlines()[0][:300]}): the exporter fixed a "
                "size to the example's (a pooling to a fixed output, a reshape with the example's batch); "
                "export with fewer dynamic dimensions"
            ) from None
        with torch.no_grad():
            want = model(x)
        wants = [want] if isinstance(want, torch.Tensor) else list(want)
        error = max(_relative_error(g, wt.float().numpy()) for g, wt in zip(got, wants, strict=False))
        checked.append({"shape": list(shape), "rel_err": error})
        if not error <= VERIFY_RTOL[precision]:
            raise ShapeCheckError(
                f"{path} is wrong at input {list(shape)}: relative error {error:.3g} against PyTorch "
                f"(allowed {VERIFY_RTOL[precision]}); a size was fixed to the example's while tracing. "
                "Export with a larger example input or fewer dynamic dimensions"
            )
    return checked


def _relative_error(got: np.ndarray, want: np.ndarray) -> float:
    """``max|got - want| / max|want|`` (infinite for a shape mismatch, NaN-aware)."""
    if got.shape != want.shape:
        return float("inf")
    scale = float(np.max(np.abs(want))) or 1.0
    diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
    return float("inf") if np.isnan(diff).any() else float(diff.max()) / scale
