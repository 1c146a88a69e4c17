"""Fold inference-mode ``BatchNormalization`` into the conv before it.

BatchNorm is a per-channel affine map ``bn(y) = a * y + c`` with ``a = gamma / sqrt(var + eps)``
and ``c = beta - a * mean``. It commutes with the per-position rectification factor ``s``:

    bn(s * (W x + b)) = s * (a W x + a b) + c

so ``Conv -> Mul(s) -> BatchNormalization`` becomes ``Conv(W' = a W, b' = a b) -> Mul(s) ->
Add(c)`` with ``c`` of shape ``[1, C, 1, 1]`` (the bias stays inside the Mul, as the official
layer scales it). A plain ``Conv -> BatchNormalization`` becomes ``Conv(a W, a b + c)``.
Arithmetic is done in float64 and stored in the weights' dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_graphsurgeon as gs

from exporter.onnx.graph import sole_consumer
from exporter.onnx.passes.rectified import find_rectified_convs


@dataclass(frozen=True)
class FoldCounts:
    """How many BatchNorms were folded through a scale Mul, into a plain conv, and left over."""

    through_scale: int
    into_conv: int
    left: int


def _affine(bn: gs.Node) -> tuple[np.ndarray, np.ndarray] | None:
    """``(a, c)`` in float64 for an inference-mode BN with constant parameters, else None."""
    params = bn.inputs[1:5]
    if len(params) != 4 or not all(isinstance(t, gs.Constant) for t in params):
        return None
    if bn.attrs.get("training_mode", 0) or len(bn.outputs) != 1:
        return None
    gamma, beta, mean, var = (t.values.astype(np.float64) for t in params)
    a = gamma / np.sqrt(var + float(bn.attrs.get("epsilon", 1e-5)))
    return a, beta - a * mean


def _conv_params(conv: gs.Node) -> tuple[np.ndarray, np.ndarray | None] | None:
    """Constant weight and optional bias of ``conv``, or None when either is computed."""
    weight = conv.inputs[1]
    bias = conv.inputs[2] if len(conv.inputs) > 2 and conv.inputs[2].name else None
    if not isinstance(weight, gs.Constant) or (bias is not None and not isinstance(bias, gs.Constant)):
        return None
    return weight.values, None if bias is None else bias.values


def _set_conv(conv: gs.Node, weight: np.ndarray, bias: np.ndarray | None) -> None:
    """Give ``conv`` new (unshared) weight and bias constants."""
    dtype = conv.inputs[1].values.dtype
    conv.inputs[1] = gs.Constant(f"{conv.name}.weight_folded", weight.astype(dtype))
    if bias is None:
        while len(conv.inputs) > 2:
            conv.inputs.pop()
        return
    folded = gs.Constant(f"{conv.name}.bias_folded", bias.astype(dtype))
    if len(conv.inputs) > 2:
        conv.inputs[2] = folded
    else:
        conv.inputs.append(folded)


def _scaled_weight(weight: np.ndarray, a: np.ndarray) -> np.ndarray:
    return weight.astype(np.float64) * a.reshape((-1,) + (1,) * (weight.ndim - 1))


def fold_batchnorm(graph: gs.Graph) -> FoldCounts:
    """Fold every foldable BatchNormalization in place; returns the counts."""
    rectified = {id(m.mul): m for m in find_rectified_convs(graph)}
    through_scale = into_conv = 0
    for bn in [n for n in graph.nodes if n.op == "BatchNormalization"]:
        affine = _affine(bn)
        source = bn.inputs[0]
        if affine is None or not source.inputs or sole_consumer(source, graph) is None:
            continue
        a, c = affine
        producer = source.inputs[0]
        match = rectified.get(id(producer))
        conv = match.conv if match is not None else producer
        if conv.op != "Conv" or sole_consumer(conv.outputs[0], graph) is None:
            continue
        params = _conv_params(conv)
        if params is None or params[0].shape[0] != a.size:
            continue
        weight, bias = params
        out = bn.outputs[0]
        bn.outputs.clear()
        if match is not None:
            _set_conv(conv, _scaled_weight(weight, a), None if bias is None else a * bias)
            shift = gs.Constant(f"{bn.name}.shift", c.reshape(1, -1, 1, 1).astype(weight.dtype))
            graph.nodes.append(gs.Node("Add", f"{bn.name}.add", inputs=[source, shift], outputs=[out]))
            through_scale += 1
        else:
            folded_bias = c if bias is None else a * bias + c
            _set_conv(conv, _scaled_weight(weight, a), folded_bias)
            conv.outputs[0] = out
            into_conv += 1
    graph.cleanup().toposort()
    left = sum(n.op == "BatchNormalization" for n in graph.nodes)
    return FoldCounts(through_scale, into_conv, left)
