"""Alternative placements of the rectification multiply, for the export latency study.

Each function rewrites a copy of the default static export (``Conv -> Mul(s) -> Add(c) -> Relu``
per rectified conv, as :func:`exporter.onnx.export.export_onnx` writes it) and returns the new graph.
``CORRECT`` variants compute the same function (the benchmark checks that against the default
file); ``PROBES`` deliberately do not, and only measure what a layout costs:

* ``shift_as_depthwise``: the per-channel ``Add(c)`` becomes a depthwise 1x1 ``Conv`` (weight 1,
  bias c), which ONNX Runtime's NCHWc layout can run and fuse with the ``Relu``.
* ``scale_after_relu``: ``relu(s * z + c) = s * relu(z + c / s)`` for ``s > 0``:
  ``Conv -> Add(c / s) -> Relu -> Mul(s)``, the shift ``c / s`` ([1, C, Ho, Wo]) computed in the
  graph from the two small constants, so the file does not grow.
* ``border_slices``: only the border rows and columns, where the factor is not 1, are
  multiplied: ``Slice`` the conv output into border strips and interior, ``Mul`` the strips,
  ``Concat`` the pieces back (sum mode, where the interior factor is exactly 1).
* probe ``mul_only``: the shift goes into the conv bias and the ``Relu`` is fused, so only the
  ``Mul`` stays outside the conv (wrong at the border: it is the floor of any graph that keeps a
  separate multiply).
* probe ``no_mul``: the ``Mul`` is dropped (no rectification at all; the plain model's cost).
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from exporter.onnx.passes.rectified import find_rectified_convs


def _chain(graph: gs.Graph):
    """(match, add, relu) for every ``Conv -> Mul -> Add -> Relu`` rectified conv."""
    for match in find_rectified_convs(graph):
        add = match.mul.outputs[0].outputs[0]
        relu = add.outputs[0].outputs[0] if add.outputs[0].outputs else None
        if add.op == "Add" and relu is not None and relu.op == "Relu":
            yield match, add, relu


def _shift(add: gs.Node) -> gs.Constant:
    return next(t for t in add.inputs if isinstance(t, gs.Constant))


def shift_as_depthwise(graph: gs.Graph) -> gs.Graph:
    for _, add, _ in _chain(graph):
        shift = _shift(add).values.reshape(-1).astype(np.float32)
        channels = shift.size
        source = next(t for t in add.inputs if not isinstance(t, gs.Constant))
        add.op, add.attrs = "Conv", {"group": channels, "kernel_shape": [1, 1]}
        add.inputs.clear()
        add.inputs.extend([source, gs.Constant(f"{add.name}.dw_w", np.ones((channels, 1, 1, 1), np.float32)),
                           gs.Constant(f"{add.name}.dw_b", shift)])
    return graph.cleanup().toposort()


def scale_after_relu(graph: gs.Graph) -> gs.Graph:
    for match, add, relu in list(_chain(graph)):
        name = match.conv.name
        inverse = gs.Constant(f"{name}.inv_scale", (1.0 / match.scale.values).astype(np.float32))
        shift_map, shifted, activated = (gs.Variable(f"{name}.{n}", np.float32) for n in ("c_over_s", "z", "r"))
        out = relu.outputs[0]
        for node in (match.mul, add, relu):
            node.outputs.clear()
        graph.nodes += [
            gs.Node("Mul", inputs=[_shift(add), inverse], outputs=[shift_map]),
            gs.Node("Add", inputs=[match.conv.outputs[0], shift_map], outputs=[shifted]),
            gs.Node("Relu", inputs=[shifted], outputs=[activated]),
            gs.Node("Mul", inputs=[activated, match.scale], outputs=[out]),
        ]
    return graph.cleanup().toposort()


def _runs(factor: np.ndarray) -> tuple[int, int]:
    """How many leading and trailing entries of a 1-D factor differ from 1."""
    inner = np.flatnonzero(factor == 1.0)
    if inner.size == 0:
        raise ValueError("border_slices needs a factor that is 1 in the interior (sum mode)")
    return int(inner[0]), int(factor.size - 1 - inner[-1])


def _slice(graph: gs.Graph, tensor: gs.Tensor, start: int, end: int, axis: int, tag: str) -> gs.Variable:
    out = gs.Variable(f"{tensor.name}.{tag}", np.float32)
    ints = [gs.Constant(f"{out.name}.{k}", np.array([v], np.int64)) for k, v in (("s", start), ("e", end), ("a", axis))]
    graph.nodes.append(gs.Node("Slice", inputs=[tensor, *ints], outputs=[out]))
    return out


def _scaled(graph: gs.Graph, tensor: gs.Tensor, factor: np.ndarray, tag: str) -> gs.Variable:
    out = gs.Variable(f"{tensor.name}.{tag}", np.float32)
    graph.nodes.append(gs.Node("Mul", inputs=[tensor, gs.Constant(f"{out.name}.f", factor.astype(np.float32))],
                               outputs=[out]))
    return out


def border_slices(graph: gs.Graph) -> gs.Graph:
    for match in find_rectified_convs(graph):
        table = match.scale.values[0, 0]
        ho, wo = table.shape
        top, bottom = _runs(table[:, table.shape[1] // 2])
        left, right = _runs(table[table.shape[0] // 2, :])
        y, out = match.conv.outputs[0], match.mul.outputs[0]
        match.mul.outputs.clear()
        rows, middle = [], _slice(graph, y, top, ho - bottom, 2, "mid")
        if top:
            rows.append(_scaled(graph, _slice(graph, y, 0, top, 2, "top"), table[None, None, :top], "top_s"))
        columns = []
        if left:
            piece = _slice(graph, middle, 0, left, 3, "left")
            columns.append(_scaled(graph, piece, table[None, None, top:ho - bottom, :left], "left_s"))
        columns.append(_slice(graph, middle, left, wo - right, 3, "centre"))
        if right:
            piece = _slice(graph, middle, wo - right, wo, 3, "right")
            columns.append(_scaled(graph, piece, table[None, None, top:ho - bottom, wo - right:], "right_s"))
        joined = gs.Variable(f"{y.name}.cols", np.float32)
        graph.nodes.append(gs.Node("Concat", attrs={"axis": 3}, inputs=columns, outputs=[joined]))
        rows.append(joined)
        if bottom:
            piece = _slice(graph, y, ho - bottom, ho, 2, "bottom")
            rows.append(_scaled(graph, piece, table[None, None, ho - bottom:], "bottom_s"))
        graph.nodes.append(gs.Node("Concat", attrs={"axis": 2}, inputs=rows, outputs=[out]))
    return graph.cleanup().toposort()


def mul_only(graph: gs.Graph) -> gs.Graph:
    for match, add, relu in list(_chain(graph)):
        conv, shift = match.conv, _shift(add).values.reshape(-1)
        bias = conv.inputs[2].values if len(conv.inputs) > 2 else np.zeros_like(shift)
        folded = gs.Constant(f"{conv.name}.bias_and_shift", (bias + shift).astype(np.float32))
        if len(conv.inputs) > 2:
            conv.inputs[2] = folded
        else:
            conv.inputs.append(folded)
        out, activated = relu.outputs[0], gs.Variable(f"{conv.name}.r", np.float32)
        for node in (match.mul, add, relu):
            node.outputs.clear()
        graph.nodes += [gs.Node("Relu", inputs=[conv.outputs[0]], outputs=[activated]),
                        gs.Node("Mul", inputs=[activated, match.scale], outputs=[out])]
    return graph.cleanup().toposort()


def no_mul(graph: gs.Graph) -> gs.Graph:
    for match in find_rectified_convs(graph):
        out = match.mul.outputs[0]
        for consumer in list(out.outputs):
            consumer.inputs[consumer.inputs.index(out)] = match.conv.outputs[0]
        match.mul.outputs.clear()
    return graph.cleanup().toposort()


CORRECT = {"shift_as_depthwise": shift_as_depthwise, "scale_after_relu": scale_after_relu,
           "border_slices": border_slices}
PROBES = {"mul_only": mul_only, "no_mul": no_mul}
