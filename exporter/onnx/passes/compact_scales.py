"""Store each scale constant as its row and column factors (opt-in, smaller files).

The factor is separable, ``s[h, w] = s_h[h] * s_w[w]`` (see :mod:`exporter.model.scale`), so a
``[1, 1, Ho, Wo]`` constant can be written as ``Mul(row [1, 1, Ho, 1], col [1, 1, 1, Wo])``:
``Ho + Wo`` numbers instead of ``Ho * Wo``. The ``Mul`` has only constant inputs, so ONNX Runtime
folds it when it loads the model and TensorRT when it builds the engine; the running graph is
the same. Tools that read the scale as an initializer (plugin mode, per-layer comparison) need
the default layout, which is why this is not the default.
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from exporter.onnx.passes.rectified import find_rectified_convs


def _factors(values: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``(row, col)`` with ``outer(row, col) == values`` to float rounding, or None."""
    table = values.reshape(values.shape[-2:]).astype(np.float64)
    row, col = table[:, 0], table[0, :] / table[0, 0]
    if not np.allclose(np.outer(row, col), table, rtol=1e-6, atol=0):
        return None
    return row.astype(values.dtype), col.astype(values.dtype)


def compact_scales(graph: gs.Graph) -> int:
    """Rewrite every separable scale constant as a row-by-column ``Mul``; returns how many."""
    products: dict[int, gs.Variable] = {}
    for match in find_rectified_convs(graph):
        scale = match.scale
        if not isinstance(scale, gs.Constant) or scale.values.ndim != 4:
            continue
        if id(scale) not in products:
            factors = _factors(scale.values)
            if factors is None:
                continue
            name, (ho, wo) = scale.name, scale.values.shape[-2:]
            scale.name = f"{name}_table"  # dropped by cleanup; the product takes over the name
            row = gs.Constant(f"{name}_rows", factors[0].reshape(1, 1, ho, 1))
            col = gs.Constant(f"{name}_cols", factors[1].reshape(1, 1, 1, wo))
            product = gs.Variable(name, scale.values.dtype, list(scale.values.shape))
            graph.nodes.append(gs.Node("Mul", f"{name}_outer", inputs=[row, col], outputs=[product]))
            products[id(scale)] = product
        match.mul.inputs[match.scale_index] = products[id(scale)]
    graph.cleanup().toposort()
    return len(products)
