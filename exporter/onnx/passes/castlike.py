"""Resolve ``CastLike`` to ``Cast`` where the target type is known.

The dynamo exporter writes ``CastLike(value, like)`` for type promotion, for example to build a
zero bias for a bias-free conv. The constant folder skips any node with a non-constant input,
and ``like`` is usually an activation, so these nodes would survive folding; as a ``Cast`` with
the type spelled out they fold away.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs


def resolve_castlike(graph: gs.Graph) -> int:
    """Rewrite ``CastLike`` nodes whose second input has a known dtype; returns how many."""
    count = 0
    for node in graph.nodes:
        if node.op != "CastLike" or node.inputs[1].dtype is None:
            continue
        target = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(node.inputs[1].dtype))
        node.inputs.pop(1)
        node.op = "Cast"
        node.attrs = {"to": target}
        count += 1
    return count
