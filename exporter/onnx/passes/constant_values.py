"""``Constant`` nodes with list or scalar attributes become ``Constant(value=tensor)``.

The dynamo exporter writes, for example, ``Resize``'s scales of ``nn.Upsample(scale_factor=2)`` as
``Constant(value_floats=[1, 1, 2, 2])``. onnx-graphsurgeon folds such a node to a *float64* array
(numpy's default for Python floats), and ``Resize`` then fails shape inference ("ParseData type
mismatch ... Expected float Actual double"). Spelled as a typed tensor (``value_float(s)`` float32,
``value_int(s)`` int64, as the ONNX spec defines them) the constant folds to its own type.
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

# Constant attribute -> (numpy dtype the ONNX spec gives it, whether it is a list)
TYPED_ATTRIBUTES = {
    "value_float": (np.float32, False),
    "value_floats": (np.float32, True),
    "value_int": (np.int64, False),
    "value_ints": (np.int64, True),
}


def type_constant_values(graph: gs.Graph) -> int:
    """Rewrite every ``Constant`` with a typed list/scalar attribute as a ``value`` tensor; returns how many."""
    count = 0
    for node in graph.nodes:
        if node.op != "Constant" or len(node.attrs) != 1:
            continue
        (name, value), = node.attrs.items()
        if name not in TYPED_ATTRIBUTES:
            continue
        dtype, is_list = TYPED_ATTRIBUTES[name]
        array = np.array(list(value) if is_list else value, dtype=dtype)
        node.attrs = {"value": gs.Constant(f"{node.outputs[0].name}_value", array)}
        count += 1
    return count
