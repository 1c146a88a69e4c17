"""Give every scale constant the contract shape ``[1, 1, Ho, Wo]``.

The traced factor is ``[Ho, Wo]`` and broadcasts the same way, but the export contract (used by
the TensorRT plugin pass and the comparison tools) fixes the rank: batch and channel axes of
size 1, then the conv's output height and width.
"""

from __future__ import annotations

import onnx_graphsurgeon as gs

from exporter.onnx.passes.rectified import find_rectified_convs


def canonical_scale_shapes(graph: gs.Graph) -> int:
    """Reshape constant scales to ``[1, 1, Ho, Wo]`` in place; returns how many changed."""
    changed = 0
    for match in find_rectified_convs(graph):
        scale = match.scale
        if not isinstance(scale, gs.Constant) or scale.values.ndim == 4:
            continue
        values = scale.values.reshape((1, 1) + scale.values.shape[-2:])
        match.mul.inputs[match.scale_index] = gs.Constant(f"{scale.name}_nchw", values)
        changed += 1
    return changed
