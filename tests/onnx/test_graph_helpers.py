"""exporter.onnx.graph: the one "sole consumer" and the one Conv geometry parser."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from exporter.onnx.graph import ConvGeometry, conv_geometry, sole_consumer


def test_sole_consumer():
    x, y, z = gs.Variable("x", np.float32), gs.Variable("y", np.float32), gs.Variable("z", np.float32)
    relu = gs.Node("Relu", inputs=[x], outputs=[y])
    graph = gs.Graph(nodes=[relu], inputs=[x], outputs=[y])
    assert sole_consumer(x) is relu and sole_consumer(x, graph) is relu
    assert sole_consumer(y) is None  # no reader
    sigmoid = gs.Node("Sigmoid", inputs=[y], outputs=[z])
    graph.nodes.append(sigmoid)
    assert sole_consumer(y) is sigmoid and sole_consumer(y, graph) is None  # also a graph output
    graph.nodes.append(gs.Node("Neg", inputs=[x], outputs=[gs.Variable("w", np.float32)]))
    assert sole_consumer(x) is None  # two readers


def test_conv_geometry_reads_graphsurgeon_and_proto_attributes():
    attrs = {"kernel_shape": [3, 5], "strides": [2, 1], "pads": [1, 2, 1, 2], "dilations": [1, 2]}
    want = ConvGeometry((3, 5), (2, 1), (1, 2, 1, 2), (1, 2), "NOTSET")
    assert conv_geometry(attrs) == want and want.symmetric_padding == (1, 2)
    node = onnx.helper.make_node("Conv", ["x", "w"], ["y"], **attrs)
    assert conv_geometry({a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}) == want
    assert conv_geometry({}, (8, 3, 3, 3)).kernel == (3, 3)  # kernel from the weight's shape
    assert conv_geometry({"pads": [1, 1, 0, 0]}, (8, 3, 3, 3)).symmetric_padding is None
    assert conv_geometry({"auto_pad": b"SAME_UPPER"}, (8, 3, 3, 3)).symmetric_padding is None
    assert conv_geometry({"kernel_shape": [3]}) is None  # 1-D
