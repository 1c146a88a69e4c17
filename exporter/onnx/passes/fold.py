"""Constant folding with onnx-graphsurgeon: the rectification factor becomes a constant.

While tracing, :class:`exporter.RFConv2d` builds its factor from ops on the input's size (a
conv over a ones map, reciprocal, products). At a static spatial size all of those are
constant, and ``fold_constants`` evaluates them (with ONNX Runtime) into one initializer per
rectified conv; ``cleanup`` drops the dead ops and ``toposort`` restores node order.
"""

from __future__ import annotations

import onnx_graphsurgeon as gs

from exporter.onnx.passes.rectified import find_rectified_convs


def fold_constants(graph: gs.Graph) -> gs.Graph:
    """Fold every constant subgraph in place (shapes of static dims included); returns ``graph``."""
    return graph.fold_constants(fold_shapes=True).cleanup().toposort()


def check_scales_folded(graph: gs.Graph) -> int:
    """Raise ``RuntimeError`` if any rectified conv's scale is still computed in the graph.

    Returns the number of rectified convs. Call after :func:`fold_constants` on a static-size
    export, where every factor must be an initializer.
    """
    matches = find_rectified_convs(graph)
    computed = [m.conv.name for m in matches if not isinstance(m.scale, gs.Constant)]
    if computed:
        raise RuntimeError(
            f"constant folding left the rectification factor of {len(computed)} conv(s) "
            f"({', '.join(computed[:4])}) computed in the graph although the input size is static; "
            "this points to an op ONNX Runtime cannot evaluate in the scale computation"
        )
    return len(matches)
