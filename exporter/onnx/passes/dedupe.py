"""Store identical scale constants once.

Every conv with the same geometry and input size has the same factor, for example the three
3x3 convs of a ResNet stage; after folding each has its own copy. Sharing one initializer
per distinct factor keeps the file (and a TensorRT engine's constants) small.
"""

from __future__ import annotations

import hashlib

import onnx_graphsurgeon as gs

from exporter.onnx.passes.rectified import find_rectified_convs


def _key(constant: gs.Constant) -> tuple:
    values = constant.values
    return (values.dtype.str, values.shape, hashlib.sha256(values.tobytes()).hexdigest())


def dedupe_scales(graph: gs.Graph) -> int:
    """Point every rectified conv at one shared constant per distinct factor.

    Shared constants are named ``rectify_scale_<n>_<Ho>x<Wo>`` in order of first use. Returns
    the number of distinct factors.
    """
    shared: dict[tuple, gs.Constant] = {}
    for match in find_rectified_convs(graph):
        scale = match.scale
        if not isinstance(scale, gs.Constant):
            continue
        key = _key(scale)
        if key not in shared:
            ho, wo = scale.values.shape[-2:]
            shared[key] = gs.Constant(f"rectify_scale_{len(shared)}_{ho}x{wo}", scale.values)
        match.mul.inputs[match.scale_index] = shared[key]
    graph.cleanup()
    return len(shared)
