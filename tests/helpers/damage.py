"""Damage a real export the way rectification bugs do, by editing its ONNX graph (issue #12).

Each function edits an ``onnx.ModelProto`` in place and touches one rectified conv (``index`` in
graph order, as :func:`exporter.comparison.layerwise.find_rectified_layers` counts them). A
damaged scale gets an initializer of its own, so a factor shared by several layers stays intact
for the others.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from exporter.comparison.layerwise import RectifiedLayer, find_rectified_layers


def layer(model: onnx.ModelProto, index: int) -> RectifiedLayer:
    return find_rectified_layers(model)[index]


def _initializer(model: onnx.ModelProto, name: str) -> np.ndarray:
    (init,) = [i for i in model.graph.initializer if i.name == name]
    return numpy_helper.to_array(init).copy()


def _replace_initializer(model: onnx.ModelProto, name: str, value: np.ndarray) -> None:
    (init,) = [i for i in model.graph.initializer if i.name == name]
    init.CopyFrom(numpy_helper.from_array(value.astype(numpy_helper.to_array(init).dtype), name))


def _node(model: onnx.ModelProto, name: str) -> onnx.NodeProto:
    (node,) = [n for n in model.graph.node if n.name == name]
    return node


def set_scale(model: onnx.ModelProto, index: int, edit) -> str:
    """Give rectified conv ``index`` the factor ``edit(factor)`` (a ``[1, 1, Ho, Wo]`` array);
    returns the new initializer's name."""
    target = layer(model, index)
    value = edit(_initializer(model, target.scale).copy())
    name = f"{target.scale}_damaged_{index}"
    model.graph.initializer.append(numpy_helper.from_array(value.astype(np.float32), name))
    mul = _node(model, target.node)
    mul.input[list(mul.input).index(target.scale)] = name
    return name


def remove_scale_mul(model: onnx.ModelProto, index: int) -> None:
    """Drop rectified conv ``index``'s scale ``Mul``: its consumers read the Conv output."""
    target = layer(model, index)
    mul = _node(model, target.node)
    conv_out = _node(model, target.conv).output[0]
    for node in model.graph.node:
        node.input[:] = [conv_out if name == mul.output[0] else name for name in node.input]
    model.graph.node.remove(mul)


def misfold_channel(model: onnx.ModelProto, index: int, gain: np.ndarray, channel: int = 0) -> None:
    """Fold output channel ``channel`` of rectified conv ``index`` with the BatchNorm gain of the
    next channel (``gain`` is the folded BN's ``gamma / sqrt(var + eps)``): an off-by-one fold."""
    target = layer(model, index)
    ratio = gain[channel + 1] / gain[channel]
    weight = _initializer(model, target.weight)
    weight[channel] *= ratio
    _replace_initializer(model, target.weight, weight)
    if target.conv_bias is not None:
        bias = _initializer(model, target.conv_bias)
        bias[channel] *= ratio
        _replace_initializer(model, target.conv_bias, bias)


def freeze_dynamic_scale(model: onnx.ModelProto, index: int, factor_at_export: np.ndarray) -> None:
    """In a dynamic-H/W file, make rectified conv ``index``'s factor right at the export size only.

    The factor becomes ``Slice`` of a constant: the export size's factor ``[Ho, Wo]`` padded with
    ones to four times that size, cut to the runtime ``Ho x Wo`` (taken from the shape of the
    factor the graph computes). Still computed in the graph and data independent, it is exact at
    the export size; at other sizes the bottom/right border gets interior values or plain ones.
    """
    target = layer(model, index)
    ho, wo = factor_at_export.shape
    big = np.ones((1, 1, 4 * ho, 4 * wo), np.float32)
    big[0, 0, :ho, :wo] = factor_at_export
    tag = f"frozen{index}"
    model.graph.initializer.extend([
        numpy_helper.from_array(big, f"{tag}_table"),
        numpy_helper.from_array(np.array([0, 0], np.int64), f"{tag}_starts"),
        numpy_helper.from_array(np.array([-2, -1], np.int64), f"{tag}_axes"),
        numpy_helper.from_array(np.array([-2], np.int64), f"{tag}_from"),
        numpy_helper.from_array(np.array([2**62], np.int64), f"{tag}_to"),
    ])
    mul = _node(model, target.node)
    nodes = [
        helper.make_node("Shape", [target.scale], [f"{tag}_shape"], name=f"{tag}_Shape"),
        helper.make_node("Slice", [f"{tag}_shape", f"{tag}_from", f"{tag}_to"], [f"{tag}_hw"], name=f"{tag}_HW"),
        helper.make_node("Slice", [f"{tag}_table", f"{tag}_starts", f"{tag}_hw", f"{tag}_axes"], [f"{tag}_scale"],
                         name=f"{tag}_Slice"),
    ]
    position = list(model.graph.node).index(mul)
    for offset, node in enumerate(nodes):
        model.graph.node.insert(position + offset, node)
    mul.input[list(mul.input).index(target.scale)] = f"{tag}_scale"
