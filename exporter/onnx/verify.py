"""Proof that a file with dynamic dimensions is right at sizes other than the example's.

torch.export specialises what it cannot keep symbolic: a size-1 dimension of the example, a
pooling to a fixed size, a ``Reshape`` with the example's batch. The ONNX file still declares the
dimension dynamic, and is then wrong, or fails, at other sizes. Two checks, both run by
:func:`exporter.onnx.export.export_onnx` before it reports success, for every input of the model:

* :func:`dynamic_dims` reads, for each dimension asked to be dynamic, the range torch.export kept
  and the symbol it stands for (inputs that must agree, an image and a mask of its size, share
  one); :func:`check_ranges` refuses a dimension it specialised to one size. A range bounded
  above is evidence, not proof (torch bounds some decompositions, circular padding's batch for
  one, that the file computes right beyond): the sizes checked then lie beyond the bound.
* :func:`check_other_sizes` runs the written file on ONNX Runtime against the PyTorch model at
  :func:`verification_shapes` (batch 2; for dynamic H/W the sizes of :mod:`exporter.onnx.sizes`,
  the same for every dimension of one symbol) and refuses a file whose error there is of the order
  of a wrong result (:data:`VERIFY_RTOL`, or :data:`ROUNDING_MULTIPLE` times the file's error at
  the example's shapes when fp16 rounding alone is larger), not of rounding, which ``compare``
  checks precisely.

Shapes of several inputs are dicts ``{input name: shape}`` in the model's argument order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from exporter.onnx.sizes import axis_sizes

AXES = {0: "batch", 2: "height", 3: "width"}
VERIFY_RTOL = {"fp32": 1e-3, "fp16": 3e-2}
"""Largest ``max|onnx - torch| / max|torch|`` accepted at the other sizes, by precision: ten times
the comparison's default, far below the errors of a specialised file (order 1 and more)."""
ROUNDING_MULTIPLE = 4.0
"""At the other sizes the error may also reach this many times the file's error at the example's
shapes, where the traced file is right by construction: that error is rounding. fp16 rounding in
deep networks can exceed :data:`VERIFY_RTOL` at every size alike (benchmarks/README.md, the
registry sweep), while a file specialised to the example errs by order 1 and more at other sizes."""
EXAMPLE_RTOL_LIMIT = 10.0
"""The example's own error may scale the bound (:data:`ROUNDING_MULTIPLE`) only up to this many
times :data:`VERIFY_RTOL`; above it the file is refused as wrong at the example size too."""
INF = float("inf")


class ShapeCheckError(ValueError):
    """The file would be wrong or fail at sizes it declares dynamic; the message says what to change."""


class ModelRejectsSize(ShapeCheckError):
    """The PyTorch model itself fails at a check size (it takes some sizes only): no fault of the file."""


@dataclass(frozen=True)
class DynamicDims:
    """What torch.export kept of the dimensions asked to be dynamic, per input name.

    ``ranges[name][axis]`` is ``(lower, upper)`` (``upper`` is ``inf`` when unbounded) or the int
    the dimension was specialised to (axis: ``batch``, ``height``, ``width``). ``symbols[name][dim]``
    is the sympy expression of a dynamic dimension (its index ``dim``): dimensions with one
    expression must have one size, and an expression of other symbols (``2*s0``) follows theirs.
    ``values`` holds each symbol's size at the example.
    """

    ranges: dict
    symbols: dict
    values: dict


def dynamic_dims(program, dims: Mapping[str, Sequence[int]]) -> DynamicDims:
    """:class:`DynamicDims` of ``program`` (the ``torch.onnx.ONNXProgram`` of a dynamo export) for
    ``dims``: input name -> its dimensions asked to be dynamic (0, 2, 3), in argument order."""
    exported = program.exported_program
    placeholders = {n.name: n for n in exported.graph.nodes if n.op == "placeholder"}
    users = exported.graph_signature.user_inputs
    ranges, symbols, values = {}, {}, {}
    for user, (name, wanted) in zip(users, dims.items(), strict=True):
        shape = placeholders[user].meta["val"].shape
        ranges[name], symbols[name] = {}, {}
        for dim in wanted:
            size = shape[dim]
            if isinstance(size, int):
                ranges[name][AXES[dim]] = size
                continue
            expr = size.node.expr
            symbols[name][dim] = expr
            values.update(_symbol_values(size))
            bounds = exported.range_constraints.get(expr)
            ranges[name][AXES[dim]] = (0, INF) if bounds is None else (_bound(bounds.lower), _bound(bounds.upper))
    return DynamicDims(ranges, symbols, values)


def _symbol_values(size) -> dict:
    """The example's value of each symbol in a SymInt's expression (torch's shape environment)."""
    env = size.node.shape_env
    known = getattr(env, "backed_var_to_val", None) or env.var_to_val
    return {s: int(known[s]) for s in size.node.expr.free_symbols if s in known}


UNBOUNDED_FROM = 2**30
"""An upper bound this large means none: older torch (2.9) writes a dimension's open range as
``[2, 2147483648]`` or ``[3, 2147483647]`` instead of ``int_oo``, and a few less after the layers'
arithmetic (``2147483644`` behind a dilated conv); no input of a CNN has a dimension of 2**30."""


def _bound(value) -> int | float:
    """A sympy range bound as a number: ``inf`` for torch's ``int_oo`` (and sympy's ``oo``) and for
    bounds of :data:`UNBOUNDED_FROM` or more."""
    if str(value) in ("oo", "int_oo"):
        return INF
    return INF if int(value) >= UNBOUNDED_FROM else int(value)


def _label(name: str, axis: str, ranges: Mapping) -> str:
    """``height`` for a one-input model, ``'mask' height`` when there are several inputs."""
    return axis if len(ranges) == 1 else f"{name!r} {axis}"


def check_ranges(ranges: Mapping, example_shapes: Mapping[str, Sequence[int]]) -> None:
    """Raise :class:`ShapeCheckError` for a dimension torch.export specialised to one size."""
    fixed = {_label(name, axis, ranges): r for name, axes in ranges.items() for axis, r in axes.items()
             if isinstance(r, int)}
    if fixed:
        examples = " and ".join(str(list(s)) for s in example_shapes.values())
        axes = {axis for axes in ranges.values() for axis, r in axes.items() if isinstance(r, int)}
        raise ShapeCheckError(
            f"torch.export fixed {', '.join(f'{label} to {r}' for label, r in fixed.items())} for the example "
            f"input {examples}, so the file cannot take other sizes: {_advice(axes)}"
        )


def bounded(ranges: Mapping) -> dict:
    """The dimensions torch.export kept only up to a finite size: ``{label: (lower, upper)}``."""
    return {_label(name, axis, ranges): r for name, axes in ranges.items() for axis, r in axes.items()
            if not isinstance(r, int) and r[1] != INF}


def describe_bounds(ranges: Mapping) -> str:
    """``"height only in [17, 32]; width only in [17, 32]"`` for the bounded dimensions."""
    return "; ".join(f"{label} only in [{low}, {high}]" for label, (low, high) in bounded(ranges).items())


def _advice(axes) -> str:
    params = sorted({"dynamic_batch" if axis.endswith("batch") else "dynamic_hw" for axis in axes})
    return ("give a larger example input (e.g. 224x224, so no feature map is 1x1, and batch 2), or export "
            f"without {' and '.join(f'{p}=True' for p in params)}")


def _other_hw(axis: str, size: int, kept: tuple, index: int, size_multiple: int | None,
              sizes: Sequence[tuple[int, int]] | None) -> int:
    """Height or width of check set ``index``: the given ``sizes`` (``(H, W)`` pairs), else
    :func:`exporter.onnx.sizes.axis_sizes` within the range torch.export ``kept`` (past its upper
    bound when it has one, and above the example where the smaller size is below its lower bound)."""
    if sizes is not None:
        return int(sizes[index][0 if axis == "height" else 1])
    lower, upper = kept
    pair = axis_sizes(size, size_multiple, None if upper == INF else int(upper))
    if pair[0] < lower:
        pair = axis_sizes(size, size_multiple, size if upper == INF else max(size, int(upper)))
    return pair[index]


def verification_shapes(example_shapes: Mapping[str, Sequence[int]], found: DynamicDims,
                        size_multiple: int | None = None,
                        sizes: Sequence[tuple[int, int]] | None = None) -> list[dict]:
    """Input shapes other than the example's to check the file at: ``[{input name: shape}, ...]``.

    Batch 2 (or 1 when the example has 2; past a bound torch.export kept) for a dynamic batch;
    where some input has dynamic H/W, one set per size of the one rule of check sizes
    (:func:`exporter.onnx.sizes.axis_sizes`: a smaller odd size and a larger one where stride-2
    layers round, or multiples of ``size_multiple``), past any bound torch.export kept, or one
    set per ``(H, W)`` of ``sizes`` (given explicitly). Dimensions of one symbol get one size,
    and one that is an expression of symbols (``2*s0``) gets its value; one whose symbols have
    no size of their own stays at the example's.
    """
    hw = any(axis in ("height", "width") for axes in found.ranges.values() for axis in axes)
    if not any(found.symbols.values()):
        return []
    count = (len(sizes) if sizes is not None else 2) if hw else 1
    sets = []
    for index in range(count):
        chosen = {}
        for name, exprs in found.symbols.items():
            for dim, expr in exprs.items():
                if expr.is_Symbol and expr not in chosen:
                    axis = AXES[dim]
                    kept = found.ranges[name].get(axis, (0, INF))
                    size = example_shapes[name][dim]
                    if axis == "batch":
                        chosen[expr] = int(kept[1]) + 1 if kept[1] != INF else (1 if size == 2 else 2)
                    else:
                        chosen[expr] = _other_hw(axis, size, kept, index, size_multiple, sizes)
        values = {**found.values, **chosen}
        shapes = {}
        for name, example in example_shapes.items():
            shape = list(example)
            for dim, expr in found.symbols.get(name, {}).items():
                shape[dim] = int(expr.subs(values)) if expr.free_symbols <= values.keys() else example[dim]
            shapes[name] = tuple(shape)
        sets.append(shapes)
    return sets


def check_other_sizes(path, model: torch.nn.Module, shape_sets: Sequence[Mapping[str, tuple]], precision: str,
                      session, ranges: Mapping | None = None,
                      example_shapes: Mapping[str, Sequence[int]] | None = None) -> list[dict]:
    """Run ``session`` (ONNX Runtime, on the file at ``path``) and ``model`` at each of ``shape_sets``.

    Returns one ``{"shape", "inputs", "rel_err"}`` per set (``shape``: the first input's, ``inputs``:
    every input's by name); raises :class:`ShapeCheckError` when ONNX Runtime fails, an output's
    shape contradicts the one the file declares, or the error exceeds the bound (naming
    torch.export's bounds, if any). The bound is :data:`VERIFY_RTOL`, or :data:`ROUNDING_MULTIPLE`
    times the error at ``example_shapes`` (measured first, on other random inputs) when that is
    larger: rounding, not a specialised size.
    """
    ranges = ranges or {}
    kept = describe_bounds(ranges)
    why = (f"torch.export kept {kept}, so the file would be wrong at other sizes: "
           f"{_advice(bounded(ranges))}" if kept else
           "a size was fixed to the example's while tracing (a pooling to a fixed output, a reshape with the "
           "example's batch): export with a larger example input or fewer dynamic dimensions")
    generator = torch.Generator().manual_seed(0)
    allowed, basis = VERIFY_RTOL[precision], ""
    if example_shapes is not None:
        example_error = _error_at(path, model, session, example_shapes, generator, why)
        if not example_error <= EXAMPLE_RTOL_LIMIT * VERIFY_RTOL[precision]:
            raise ShapeCheckError(
                f"{path} is wrong at the example's own input {_at(example_shapes)}: relative error "
                f"{example_error:.3g} against PyTorch; compare it to find the layer that differs"
            )
        if ROUNDING_MULTIPLE * example_error > allowed:
            allowed = ROUNDING_MULTIPLE * example_error
            basis = f", {ROUNDING_MULTIPLE:g} x its error {example_error:.3g} at the example's size"
    checked = []
    for shapes in shape_sets:
        error = _error_at(path, model, session, shapes, generator, why)
        checked.append({"shape": list(next(iter(shapes.values()))), "inputs": {n: list(s) for n, s in shapes.items()},
                        "rel_err": error})
        if not error <= allowed:
            raise ShapeCheckError(
                f"{path} is wrong at input {_at(shapes)}: relative error {error:.3g} against PyTorch "
                f"(allowed {allowed:.3g}{basis}); {why}"
            )
    return checked


def _at(shapes: Mapping[str, Sequence[int]]) -> str:
    return " and ".join(str(list(s)) for s in shapes.values())


def _error_at(path, model: torch.nn.Module, session, shapes: Mapping[str, Sequence[int]], generator, why: str) -> float:
    """The largest output's relative error of ``session`` against ``model`` on random inputs of
    ``shapes``; :class:`ShapeCheckError` when ONNX Runtime fails or an output contradicts the shape
    the file declares."""
    dtypes = {i.name: np.float16 if i.type == "tensor(float16)" else np.float32 for i in session.get_inputs()}
    xs = {name: torch.randn(tuple(shape), generator=generator) for name, shape in shapes.items()}
    at = _at(shapes)
    try:
        with torch.no_grad():
            want = model(*xs.values())
    except Exception as err:  # noqa: BLE001 - any failure of the user's forward
        raise ModelRejectsSize(
            f"{type(model).__name__} itself fails in PyTorch at input {at} ({type(err).__name__}: "
            f"{str(err).strip().splitlines()[0][:300]}): the model rejects that size, so the dynamic-H/W "
            "file cannot be checked there; give size_multiple=N for a model that takes multiples of N only "
            "(e.g. 32 for five stride-2 stages joined by skips), or the sizes to check (check_sizes)"
        ) from err
    quiet = _quiet_run_options()
    try:
        got = session.run(None, {name: x.numpy().astype(dtypes[name]) for name, x in xs.items()}, quiet)
    except Exception as err:  # noqa: BLE001 - ORT raises its own pybind types
        raise ShapeCheckError(
            f"{path} declares dynamic dimensions but ONNX Runtime fails at input {at} "
            f"({type(err).__name__}: {str(err).strip().splitlines()[0][:300]}); {why}"
        ) from err
    declared = [(o.name, o.shape) for o in session.get_outputs()]
    for (name, dims), value in zip(declared, got, strict=True):
        fixed = [(d, v) for d, v in zip(dims, value.shape, strict=False) if isinstance(d, int)]
        if len(dims) != value.ndim or any(d != v for d, v in fixed):
            raise ShapeCheckError(
                f"{path} declares output {name!r} as {list(dims)}, but at input {at} it is "
                f"{list(value.shape)}: the declared shape was fixed to the example's; {why}"
            )
    wants = [want] if isinstance(want, torch.Tensor) else list(want.values() if isinstance(want, dict) else want)
    return max(_relative_error(g, wt.float().numpy()) for g, wt in zip(got, wants, strict=False))


def _quiet_run_options():
    """ONNX Runtime run options that log fatal errors only: a failed run raises, and the raised
    error is reported; ONNX Runtime's own coloured log line would only repeat it."""
    import onnxruntime

    options = onnxruntime.RunOptions()
    options.log_severity_level = 4
    return options


def _relative_error(got: np.ndarray, want: np.ndarray) -> float:
    """``max|got - want| / max|want|`` (infinite for a shape mismatch, NaN-aware)."""
    if got.shape != want.shape:
        return INF
    scale = float(np.max(np.abs(want))) or 1.0
    diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
    return INF if np.isnan(diff).any() else float(diff.max()) / scale
