"""The one definition of a rectified convolution in an ONNX graph: ``Conv -> Mul(scale)``.

A rectified conv is a ``Conv`` on data (not one that only counts taps over a ones map, as a
dynamic-size export does to compute the factor) whose only consumer is a ``Mul`` by a *spatial*
factor, directly or through one ``QuantizeLinear -> DequantizeLinear`` pair (an int8 file of
:mod:`exporter.quantize`: the conv's int8 output is dequantized and the factor applied in fp32):
a tensor that does not depend on the data (a constant, or ops on the input's shape only, as in a
dynamic-size export) and broadcasts over batch and channels (``[Ho, Wo]``, ``[1, Ho, Wo]`` or
``[1, 1, Ho, Wo]``, :func:`is_spatial_factor`; a ``1 x 1`` map's factor included). Per-channel
constants ``[1, C, 1, 1]``, vectors and scalars are not rectification. A computed factor
whose shape the graph does not record counts when it is data-independent.

The graph passes, the per-layer comparison (:mod:`exporter.comparison.layerwise`) and the
benchmarks' graph variants all match on :func:`find_rectified_convs`.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx_graphsurgeon as gs

from exporter.onnx.graph import sole_consumer

# Ops whose output depends on their input's shape only, never on its values.
SHAPE_ONLY_OPS = frozenset({"Shape", "Size"})


@dataclass
class RectifiedConv:
    """One ``Conv -> Mul(scale)`` match: the nodes and the scale tensor (input of ``mul``);
    ``qdq`` holds the ``QuantizeLinear``/``DequantizeLinear`` pair between them in an int8 file."""

    conv: gs.Node
    mul: gs.Node
    scale: gs.Tensor
    qdq: tuple[gs.Node, gs.Node] | None = None

    @property
    def scale_index(self) -> int:
        """Which input of ``mul`` holds the scale (0 or 1)."""
        return 0 if self.mul.inputs[0] is self.scale else 1


def is_data_independent(tensor: gs.Tensor, _seen: dict | None = None) -> bool:
    """True when ``tensor`` is a constant or computed only from constants and input shapes."""
    seen = {} if _seen is None else _seen
    key = id(tensor)
    if key in seen:
        return seen[key]
    seen[key] = False  # a cycle cannot occur in a valid graph; be conservative if it does
    if isinstance(tensor, gs.Constant):
        result = True
    elif not tensor.inputs:  # graph input (or a dangling tensor)
        result = False
    else:
        producer = tensor.inputs[0]
        result = producer.op in SHAPE_ONLY_OPS or all(
            is_data_independent(t, seen) for t in producer.inputs if t.name or isinstance(t, gs.Constant)
        )
    seen[key] = result
    return result


def is_spatial_factor(tensor: gs.Tensor) -> bool:
    """True when ``tensor`` has the shape of a rectification factor: ``[Ho, Wo]``, ``[1, Ho, Wo]``
    or ``[1, 1, Ho, Wo]`` for any output size, ``1 x 1`` included (the factor of a conv whose
    output map is one pixel), symbolic ``Ho``/``Wo`` allowed. Scalars, vectors and per-channel
    ``[1, C, 1, 1]`` (``C > 1``) are not. A computed tensor of unrecorded shape passes (its data
    independence is checked apart). The one shape rule of a factor: the graph passes, BatchNorm
    folding, the summary's count, the comparison and the quantizer's checks all read it."""
    if tensor.shape is None:
        return not isinstance(tensor, gs.Constant)
    shape = list(tensor.shape)
    return len(shape) in (2, 3, 4) and all(d == 1 for d in shape[:-2])


def _through_qdq(conv: gs.Node) -> tuple[gs.Tensor, tuple[gs.Node, gs.Node] | None]:
    """The tensor the conv's value reaches the next op in, and the Q/DQ pair it passed (or None)."""
    q = sole_consumer(conv.outputs[0])
    if q is None or q.op != "QuantizeLinear":
        return conv.outputs[0], None
    dq = sole_consumer(q.outputs[0])
    if dq is None or dq.op != "DequantizeLinear":
        return conv.outputs[0], None
    return dq.outputs[0], (q, dq)


def find_rectified_convs(graph: gs.Graph) -> list[RectifiedConv]:
    """Every ``Conv [-> QuantizeLinear -> DequantizeLinear] -> Mul(spatial factor)`` in ``graph``,
    in node order."""
    found = []
    seen: dict = {}
    for conv in graph.nodes:
        if conv.op != "Conv" or sole_consumer(conv.outputs[0]) is None:
            continue
        value, qdq = _through_qdq(conv)
        mul = sole_consumer(value)
        if mul is None or mul.op != "Mul" or len(mul.inputs) != 2:
            continue
        other = mul.inputs[1] if mul.inputs[0] is value else mul.inputs[0]
        if other is value or not is_data_independent(other, seen):
            continue
        if not is_spatial_factor(other) or is_data_independent(conv.outputs[0], seen):
            continue
        found.append(RectifiedConv(conv, mul, other, qdq))
    return found
