"""The static check of an INT8 Q/DQ file against TensorRT's rules (TensorRT cannot run here).

:func:`check_qdq` returns every :class:`Violation`; :data:`RULES` names each rule once:

* ``int8``: every ``QuantizeLinear`` output and ``DequantizeLinear`` input is int8 (TensorRT's
  Q/DQ take int8; no int32 bias, no uint8). With ``activations="uint8"`` (the ONNX Runtime CPU
  variant) activation tensors may be uint8; weights stay int8.
* ``symmetric``: every zero point is 0 (TensorRT requires it); weights always, activations for int8.
* ``per-channel-weights``: a conv's (or Gemm's) constant weight is dequantized per output
  channel: a 1-D scale with one entry per output channel and ``axis`` 0 (Gemm with
  ``transB=0``: axis 1).
* ``per-tensor-activations``: a quantized computed tensor has one scale (and zero point).
* ``shape-paths``: no tensor computed from shapes or constants only is quantized (a
  dynamic-size export's factor and tap counts; constant weights are not computed), and no dequantized value reaches an
  input that is a shape (``Reshape``'s shape, ``Expand``'s, ``Tile``'s repeats, ``Slice``'s
  starts/ends/axes/steps, ``Resize``'s scales/sizes, ``ConstantOfShape``, ``Range``, ``Pad``'s pads).
* ``pairs``: every ``QuantizeLinear`` feeds ``DequantizeLinear`` nodes only (Q -> DQ pairs).
* ``conv-fusion``: every conv with a dequantized input and weight has its output consumed only
  by ``QuantizeLinear`` (``DQ -> Conv -> Q``: the int8 conv of ONNX Runtime, which fuses nothing
  else, and of TensorRT, which also fuses a point-wise tail before the Q). A conv left in fp32
  (``--exclude``) has neither.
* ``rectification``: each rectified conv applies its factor in fp32: ``Conv -> Q -> DQ ->
  Mul(factor)`` with the factor a float constant (or computed from shapes), never quantized.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from exporter.onnx.passes.rectified import find_rectified_convs, is_data_independent, is_spatial_factor

RULES = ("int8", "symmetric", "per-channel-weights", "per-tensor-activations", "shape-paths", "pairs",
         "conv-fusion", "rectification")
"""Every rule :func:`check_qdq` holds a file to (see the module docstring)."""

SHAPE_INPUTS = {"Reshape": (1,), "Expand": (1,), "Tile": (1,), "Slice": (1, 2, 3, 4), "Resize": (1, 2, 3),
                "ConstantOfShape": (0,), "Range": (0, 1, 2), "Pad": (1,), "Upsample": (1,),
                "Unsqueeze": (1,), "Squeeze": (1,)}
"""Inputs (by position) that hold shapes, sizes or indices, not data."""
WEIGHT_AXIS = {"Conv": 0, "ConvTranspose": 1}
_QDQ = ("QuantizeLinear", "DequantizeLinear")


@dataclass(frozen=True)
class Violation:
    rule: str
    node: str
    message: str

    def __str__(self) -> str:
        return f"[{self.rule}] {self.node}: {self.message}"


def _values(tensor: gs.Tensor) -> np.ndarray | None:
    return np.asarray(tensor.values) if isinstance(tensor, gs.Constant) else None


def _dtype_name(tensor: gs.Tensor) -> str:
    try:
        return np.dtype(tensor.dtype).name if tensor.dtype is not None else "unknown"
    except TypeError:
        return str(tensor.dtype)


def _quantized_dtype(node: gs.Node) -> str:
    """The integer type a Q produces or a DQ reads (zero point type, ``output_dtype``, or the tensor's)."""
    tensor = node.outputs[0] if node.op == "QuantizeLinear" else node.inputs[0]
    if len(node.inputs) > 2 and node.inputs[2].name:
        return _dtype_name(node.inputs[2])
    if node.op == "QuantizeLinear" and node.attrs.get("output_dtype"):
        return onnx.helper.tensor_dtype_to_np_dtype(node.attrs["output_dtype"]).name
    if node.op == "QuantizeLinear" and tensor.dtype is None:
        return "uint8"  # the ONNX default without a zero point
    return _dtype_name(tensor)


def _is_weight_dq(node: gs.Node) -> bool:
    """A DQ of a constant: int8 stored (``DQ(int8 constant)``) or quantized in the graph (``Q(constant) -> DQ``)."""
    if node.op != "DequantizeLinear":
        return False
    source = node.inputs[0]
    if isinstance(source, gs.Constant):
        return True
    return bool(source.inputs) and source.inputs[0].op == "QuantizeLinear" \
        and isinstance(source.inputs[0].inputs[0], gs.Constant)


def _is_constant_q(node: gs.Node) -> bool:
    return node.op == "QuantizeLinear" and isinstance(node.inputs[0], gs.Constant)


def _weight_use(dq: gs.Node) -> tuple[gs.Node, int] | None:
    """(conv or gemm, expected axis) when ``dq``'s output is that node's weight input."""
    for consumer in dq.outputs[0].outputs:
        if consumer.op in WEIGHT_AXIS and len(consumer.inputs) > 1 and consumer.inputs[1] is dq.outputs[0]:
            return consumer, WEIGHT_AXIS[consumer.op]
        if consumer.op == "Gemm" and len(consumer.inputs) > 1 and consumer.inputs[1] is dq.outputs[0]:
            return consumer, 0 if consumer.attrs.get("transB", 0) else 1
    return None


def _check_types(nodes, activations: str) -> list[Violation]:
    found = []
    for node in nodes:
        dtype = _quantized_dtype(node)
        weight = _is_weight_dq(node) or _is_constant_q(node)
        allowed = {"int8"} if weight or activations == "int8" else {"int8", "uint8"}
        if dtype not in allowed:
            what = "constant" if weight else "activation"
            wanted = " or ".join(sorted(allowed))
            found.append(Violation("int8", node.name, f"{what} quantized as {dtype}, not {wanted}"))
        zero = _values(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2].name else None
        symmetric_required = weight or activations == "int8"
        if symmetric_required and zero is not None and np.any(zero != 0):
            found.append(Violation("symmetric", node.name, f"zero point {zero.ravel()[:4].tolist()} is not 0"))
        if len(node.inputs) > 2 and node.inputs[2].name and zero is None:
            found.append(Violation("symmetric", node.name, "zero point is computed, not a constant"))
    return found


def _check_scales(graph: gs.Graph, nodes) -> list[Violation]:
    found = []
    for node in nodes:
        scale = _values(node.inputs[1])
        if scale is None:
            found.append(Violation("per-tensor-activations", node.name, "scale is computed, not a constant"))
            continue
        if _is_constant_q(node):
            continue  # checked at its DequantizeLinear, which names the weight's consumer
        if _is_weight_dq(node):
            use = _weight_use(node)
            if use is None:
                continue
            consumer, axis = use
            source = node.inputs[0] if isinstance(node.inputs[0], gs.Constant) else node.inputs[0].inputs[0].inputs[0]
            shape = list(source.shape or [])
            channels = shape[axis] if len(shape) > axis else None
            got_axis = node.attrs.get("axis", 1)
            if scale.ndim != 1 or scale.size != channels or got_axis != axis:
                found.append(Violation("per-channel-weights", node.name,
                                       f"weight of {consumer.op} {consumer.name!r} has scale shape {list(scale.shape)} "
                                       f"on axis {got_axis}; want [{channels}] on axis {axis}"))
        elif scale.size != 1:
            found.append(Violation("per-tensor-activations", node.name,
                                   f"activation scale has shape {list(scale.shape)}, not one value"))
    return found


def _reaches_shape_input(graph: gs.Graph) -> list[Violation]:
    """A DQ output that flows (through any ops) into a shape input."""
    found = []
    for node in graph.nodes:
        for slot in SHAPE_INPUTS.get(node.op, ()):
            if slot >= len(node.inputs) or not node.inputs[slot].name:
                continue
            stack, seen = [node.inputs[slot]], set()
            while stack:
                tensor = stack.pop()
                if id(tensor) in seen or not tensor.inputs:
                    continue
                seen.add(id(tensor))
                producer = tensor.inputs[0]
                if producer.op in _QDQ:
                    found.append(Violation("shape-paths", node.name,
                                           f"input {slot} of {node.op} (a shape) is computed from {producer.op} "
                                           f"{producer.name!r}"))
                    break
                if producer.op not in ("Shape", "Size"):
                    stack.extend(t for t in producer.inputs if t.name)
    return found


def check_qdq(model: onnx.ModelProto, activations: str = "int8") -> list[Violation]:
    """Every violation of :data:`RULES` in ``model`` (an empty list: the file follows them).

    ``activations`` is ``"int8"`` (TensorRT's rules) or ``"uint8"`` (the ONNX Runtime CPU variant:
    uint8 activations with any zero point; the weight rules are the same).
    """
    if activations not in ("int8", "uint8"):
        raise ValueError(f"activations={activations!r} is not 'int8' or 'uint8'")
    graph = gs.import_onnx(model)
    qdq = [n for n in graph.nodes if n.op in _QDQ]
    found = _check_types(qdq, activations) + _check_scales(graph, qdq)
    seen: dict = {}
    for q in (n for n in qdq if n.op == "QuantizeLinear"):
        if isinstance(q.inputs[0], gs.Variable) and is_data_independent(q.inputs[0], seen):
            found.append(Violation("shape-paths", q.name,
                                   f"quantizes {q.inputs[0].name!r}, which depends on shapes or constants only"))
        others = [c for c in q.outputs[0].outputs if c.op != "DequantizeLinear"]
        if others:
            found.append(Violation("pairs", q.name, f"feeds {others[0].op} {others[0].name!r}, not a DequantizeLinear"))
    found += _reaches_shape_input(graph)
    for conv in (n for n in graph.nodes if n.op in WEIGHT_AXIS):
        producers = [t.inputs[0].op if t.inputs else None for t in conv.inputs[:2]]
        if producers == ["DequantizeLinear", "DequantizeLinear"]:
            consumers = conv.outputs[0].outputs
            if not consumers or any(c.op != "QuantizeLinear" for c in consumers):
                ops = ", ".join(sorted({c.op for c in consumers})) or "the graph output"
                found.append(Violation("conv-fusion", conv.name, f"int8 conv output goes to {ops}, not QuantizeLinear"))
        elif "DequantizeLinear" in producers:
            found.append(Violation("conv-fusion", conv.name, "only one of input and weight is dequantized"))
    for match in find_rectified_convs(graph):
        if isinstance(match.scale, gs.Variable) and match.scale.inputs and match.scale.inputs[0].op in _QDQ:
            found.append(Violation("rectification", match.mul.name, "the factor is quantized"))
        elif isinstance(match.scale, gs.Constant) and match.scale.values.dtype.kind != "f":
            found.append(Violation("rectification", match.mul.name, f"the factor is {match.scale.values.dtype}"))
        quantized_conv = match.conv.inputs[1].inputs and match.conv.inputs[1].inputs[0].op == "DequantizeLinear"
        if quantized_conv and match.qdq is None:
            found.append(Violation("rectification", match.mul.name,
                                   "the factor Mul reads the int8 conv's output directly (Conv -> Mul): "
                                   "quantize the conv output first (Conv -> Q -> DQ -> Mul)"))
    for mul in (n for n in graph.nodes if n.op == "Mul"):
        # a factor that went through Q/DQ is no longer recognised as rectification above
        factors = [t for t in mul.inputs if t.inputs and t.inputs[0].op == "DequantizeLinear"
                   and isinstance(t.inputs[0].inputs[0], gs.Constant) and t.shape is not None
                   and is_spatial_factor(t)]
        if factors:
            found.append(Violation("rectification", mul.name, f"the factor {factors[0].name!r} is quantized"))
    return found


def format_violations(violations: list[Violation], limit: int = 10) -> str:
    lines = [str(v) for v in violations[:limit]]
    if len(violations) > limit:
        lines.append(f"... and {len(violations) - limit} more")
    return "\n".join(lines)
