"""Per-layer comparison points in the ONNX graph: the tensor after each rectified conv.

In a static export (the graph contract of :mod:`exporter.onnx.passes.rectified`) a rectified conv is
``Conv(X, W'[, B']) -> Mul(Y, scale)`` with ``scale`` a constant ``[1, 1, Ho, Wo]`` (``[Ho, Wo]``
straight out of ``torch.onnx.export``); a dynamic-H/W export computes ``scale`` from input
shapes; a plugin-mode export has ``Conv -> RFConvRectify(Y, X[, bias])``, the plugin possibly
fusing the bias add and a ReLU. The tensor after the ``Mul``/plugin is the layer's comparison
point. A conv whose module pads other than with zeros (reflect, replicate, circular) exports as
``Pad -> Conv``; its geometry is the two together.

The PyTorch side of each layer (which module, and how its output maps onto the ONNX tensor) is
:mod:`exporter.comparison.modules`; writing the layered model is :mod:`exporter.comparison.layered_file`.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import torch
from onnx import numpy_helper

from exporter.backends.runners import PLUGIN_OP
from exporter.model.scale import rectify_scale
from exporter.onnx.graph import conv_geometry
from exporter.onnx.passes.rectified import find_rectified_convs

NAME_SCOPES_KEY = "pkg.torch.onnx.name_scopes"


class LayerMatchError(ValueError):
    """The ONNX layers and the PyTorch modules cannot be paired up."""


@dataclass(frozen=True)
class RectifiedLayer:
    """One rectified conv in an ONNX graph (``index`` counts them in graph order from 0)."""

    index: int
    tensor: str  # output of the scale Mul / plugin node: the comparison point
    node: str  # the Mul or plugin node
    conv: str  # the Conv node feeding it
    weight: str  # the Conv's weight tensor
    conv_bias: str | None
    scale: str | None  # the scale: a constant (static export) or a tensor computed from shapes
    fused_bias: str | None  # the plugin's bias input (plugin mode)
    activation: str  # "none" or "relu" (plugin mode may fuse a ReLU)
    module: str | None  # PyTorch module path recorded by the exporter, if any

    def describe(self) -> str:
        where = f" (PyTorch module {self.module!r})" if self.module else ""
        scale = f", scale {self.scale!r}" if self.scale else ""
        return f"rectified conv #{self.index}: Conv {self.conv!r} -> {self.node!r}{scale}{where}"


def _dequantized(node: onnx.NodeProto, values: dict[str, np.ndarray]) -> np.ndarray | None:
    """The float32 value of a ``DequantizeLinear`` of constants (an int8 file's weights), else None."""
    if not all(name in values for name in node.input if name):
        return None
    data, scale = values[node.input[0]].astype(np.float64), values[node.input[1]].astype(np.float64)
    zero = values[node.input[2]].astype(np.float64) if len(node.input) > 2 and node.input[2] else np.zeros_like(scale)
    if scale.ndim == 1 and scale.size > 1:
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1) % data.ndim
        shape = [1] * data.ndim
        shape[axis] = scale.size
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return ((data - zero) * scale).astype(np.float32)


def constants(model: onnx.ModelProto, names: set[str]) -> dict[str, np.ndarray]:
    """The initializers, ``Constant`` node values and dequantized constants (an int8 file's
    weights) among ``names``, by tensor name (only those are converted: a ResNet-50's weights are
    100 MB)."""
    dequantize = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.output[0] in names]
    wanted = set(names) | {name for node in dequantize for name in node.input if name}
    values = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer if init.name in wanted}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value" \
                and node.output[0] in wanted:
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        elif node.op_type == "DequantizeLinear" and node.output[0] in names:
            value = _dequantized(node, values)
            if value is not None:
                values[node.output[0]] = value
    return values


def _module_path(*nodes: onnx.NodeProto) -> str | None:
    """The PyTorch module path ``torch.onnx.export`` recorded for the first node that has one."""
    for node in nodes:
        for prop in node.metadata_props:
            if prop.key == NAME_SCOPES_KEY:
                scopes = ast.literal_eval(prop.value)
                if len(scopes) >= 2 and scopes[-2]:
                    return scopes[-2]
    return None


def _activation(node: onnx.NodeProto) -> str:
    for attr in node.attribute:
        if attr.name == "activation":
            value = onnx.helper.get_attribute_value(attr)
            value = value.decode() if isinstance(value, bytes) else value
            if value in (0, "", "none", "NONE", "identity"):
                return "none"
            if value in (1, "relu", "RELU"):
                return "relu"
            raise LayerMatchError(f"plugin node {node.name!r} has an unknown activation {value!r}")
    return "none"


def find_rectified_layers(model: onnx.ModelProto) -> list[RectifiedLayer]:
    """Every ``Conv -> Mul(scale)`` (as :func:`exporter.onnx.passes.rectified.find_rectified_convs`
    defines it) and every ``Conv -> RFConvRectify``, in graph order.

    The scale is a constant in a static export and computed from input shapes in a dynamic-H/W
    export; Convs that themselves only see shapes (counting valid taps over a ones map) are not layers.
    """
    graph = gs.import_onnx(model)
    by_output = {node.output[0]: node for node in model.graph.node if node.output}
    found = {id(m.mul): (m.conv, m.mul, m.scale.name) for m in find_rectified_convs(graph)}
    layers = []
    for node in graph.nodes:
        if id(node) in found:
            conv, _, scale = found[id(node)]
            fused_bias, activation = None, "none"
        elif node.op == PLUGIN_OP and node.inputs[0].inputs and node.inputs[0].inputs[0].op == "Conv":
            conv, scale = node.inputs[0].inputs[0], None
            fused_bias = node.inputs[2].name if len(node.inputs) > 2 and node.inputs[2].name else None
            activation = _activation(by_output[node.outputs[0].name])
        else:
            continue
        conv_proto, node_proto = by_output[conv.outputs[0].name], by_output[node.outputs[0].name]
        layers.append(RectifiedLayer(
            index=len(layers), tensor=node.outputs[0].name, node=node.name, conv=conv.name,
            weight=conv.inputs[1].name,
            conv_bias=conv.inputs[2].name if len(conv.inputs) > 2 and conv.inputs[2].name else None,
            scale=scale, fused_bias=fused_bias, activation=activation,
            module=_module_path(node_proto, conv_proto),
        ))
    return layers


SKELETON_MAX_ELEMENTS = 64
"""Initializers up to this many elements keep their values in :func:`_shape_skeleton` (shape
paths, such as a ``Reshape``'s target, read them); larger ones are declared, not carried."""


def _shape_skeleton(model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]] | None = None) -> onnx.ModelProto:
    """A copy of ``model`` for shape inference only, with its inputs fixed to ``shapes``.

    Initializers with more than :data:`SKELETON_MAX_ELEMENTS` elements become graph inputs of
    their type and shape: ``onnx.shape_inference`` serializes the whole model, and the weights
    need not be part of that.
    """
    graph = model.graph
    small = [t for t in graph.initializer if int(np.prod(t.dims)) <= SKELETON_MAX_ELEMENTS]
    kept = {t.name for t in small}
    declared = [onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                for t in graph.initializer if t.name not in kept]
    inputs = [onnx.ValueInfoProto() for _ in graph.input]
    for copy, value in zip(inputs, graph.input, strict=True):
        copy.CopyFrom(value)
        if shapes and value.name in shapes:
            for dim, size in zip(copy.type.tensor_type.shape.dim, shapes[value.name], strict=True):
                dim.Clear()
                dim.dim_value = int(size)
    skeleton = onnx.helper.make_graph(list(graph.node), graph.name, inputs + declared, list(graph.output),
                                      initializer=small, value_info=list(graph.value_info))
    result = onnx.helper.make_model(skeleton, opset_imports=list(model.opset_import), ir_version=model.ir_version)
    result.functions.extend(model.functions)
    return onnx.shape_inference.infer_shapes(result)


def with_layer_outputs(model: onnx.ModelProto, layers: list[RectifiedLayer]) -> onnx.ModelProto:
    """A copy of ``model`` that also outputs every layer's tensor (after the original outputs; a
    layer whose tensor is a model output already is not repeated). A layer output carries the
    type shape inference gives it, or none (a custom op's output, which runtimes then infer)."""
    inferred = {value.name: value for value in _shape_skeleton(model).graph.value_info}
    result = onnx.ModelProto()
    result.CopyFrom(model)
    outputs = {out.name for out in model.graph.output}
    for layer in layers:
        if layer.tensor not in outputs:
            outputs.add(layer.tensor)
            result.graph.output.append(inferred.get(layer.tensor) or onnx.ValueInfoProto(name=layer.tensor))
    return result


def _spatial_pads(pad: onnx.NodeProto, model: onnx.ModelProto) -> list[int] | None:
    """``[top, left, bottom, right]`` of a ``Pad`` of an ``[N, C, H, W]`` tensor, or None when its
    pads are not constants or it pads N or C."""
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in pad.attribute}
    if "pads" in attrs:  # opset < 11
        pads, axes = list(attrs["pads"]), None
    else:
        names = {name for name in pad.input[1:4] if name}
        values = constants(model, names)
        if len(pad.input) < 2 or pad.input[1] not in values:
            return None
        pads = [int(v) for v in np.asarray(values[pad.input[1]]).reshape(-1)]
        axes = None
        if len(pad.input) > 3 and pad.input[3]:
            if pad.input[3] not in values:
                return None
            axes = [int(a) % 4 for a in np.asarray(values[pad.input[3]]).reshape(-1)]
    if axes is not None:
        full = [0] * 8
        for i, axis in enumerate(axes):
            full[axis], full[axis + 4] = pads[i], pads[i + len(axes)]
        pads = full
    if len(pads) != 8 or any(pads[i] for i in (0, 1, 4, 5)):
        return None
    return [pads[2], pads[3], pads[6], pads[7]]


def border_rings(
    model: onnx.ModelProto, layers: list[RectifiedLayer], input_shapes: dict[str, tuple[int, ...]]
) -> dict[str, np.ndarray | None]:
    """Per layer tensor, the border ring: a bool mask ``[Ho, Wo]``, True where the factor is not 1.

    That is where some kernel tap lands in the padding: where :func:`rectify_scale` (sum mode,
    exact count) of the layer's geometry at its input size is not 1 (an average-mode or
    official-count layer rescales the same positions, which is where rectification bugs live).
    The geometry is the Conv's, and with a ``Pad`` node before it (a module padding by reflection,
    replication or wrapping) the Pad's input size and its pads added to the Conv's. ``None`` when
    the input size is not known after shape inference at ``input_shapes`` or the padding is
    asymmetric.
    """
    inferred = _shape_skeleton(model, input_shapes)
    shapes = {v.name: [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
              for v in [*inferred.graph.value_info, *inferred.graph.input]}
    convs = {node.name: node for node in inferred.graph.node if node.op_type == "Conv"}
    pads_by_output = {node.output[0]: node for node in inferred.graph.node if node.op_type == "Pad"}
    weight_dims = {t.name: tuple(t.dims) for t in model.graph.initializer}
    rings = {}
    for layer in layers:
        rings[layer.tensor] = None
        conv = convs.get(layer.conv)
        if conv is None:
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in conv.attribute}
        geometry = conv_geometry(attrs, weight_dims.get(layer.weight))
        if geometry is None or geometry.auto_pad != "NOTSET":
            continue
        pads = list(geometry.pads)
        source = conv.input[0]
        if source in pads_by_output:
            before = _spatial_pads(pads_by_output[source], model)
            if before is None:
                continue
            pads = [a + b for a, b in zip(pads, before, strict=True)]
            source = pads_by_output[source].input[0]
        in_shape = shapes.get(source)
        if not in_shape or len(in_shape) != 4 or None in in_shape[2:] or pads[:2] != pads[2:]:
            continue
        try:
            factor = rectify_scale(tuple(in_shape[2:]), geometry.kernel, geometry.stride, tuple(pads[:2]),
                                   geometry.dilation, dtype=torch.float64)
        except ValueError:
            continue
        rings[layer.tensor] = factor.numpy() != 1.0
    return rings
