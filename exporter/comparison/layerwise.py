"""Per-layer comparison points: the tensor after each rectified conv, in ONNX and in PyTorch.

In a static export (the graph contract of :mod:`exporter.onnx.passes.rectified`) a rectified conv is
``Conv(X, W'[, B']) -> Mul(Y, scale)`` with ``scale`` a constant ``[1, 1, Ho, Wo]`` (``[Ho, Wo]``
straight out of ``torch.onnx.export``); a dynamic-H/W export computes ``scale`` from input
shapes; a plugin-mode export has ``Conv -> RFConvRectify(Y, X[, bias])``, the plugin possibly
fusing the bias add and a ReLU. The tensor after the ``Mul``/plugin is the layer's comparison
point.

On the PyTorch side a forward hook on the matching ``RFConv2d`` gives ``y = s * (W x + b)``.
When the exporter folded a BatchNorm into the conv, ``W' = g * W`` and ``B' = g * b`` per output
channel, so the ONNX tensor is ``g * y`` (plus the plugin's bias and activation, when fused).
``g`` is recovered from the two sets of weights by least squares per channel (exactly 1 when
nothing was folded), which makes the two sides comparable without knowing how BN was folded.

Modules are matched to ONNX layers by the module path ``torch.onnx.export`` records in node
metadata when every layer has one, otherwise in execution order; shapes are checked either way.
"""

from __future__ import annotations

import ast
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import torch
from onnx import numpy_helper

from exporter.backends.runners import PLUGIN_OP, LayerTap
from exporter.model.layer import RFConv2d
from exporter.model.scale import rectify_scale
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


def _constants(model: onnx.ModelProto, names: set[str]) -> dict[str, np.ndarray]:
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


def _layer_constants(model: onnx.ModelProto, layers: list[RectifiedLayer]) -> dict[str, np.ndarray]:
    """The layers' conv weights, conv biases and plugin biases that are constants."""
    return _constants(model, {name for layer in layers for name in (layer.weight, layer.conv_bias, layer.fused_bias)
                              if name})


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
    their type and shape: ``onnx.shape_inference`` serializes the whole model, and on
    RF-ResNet-50 serializing its 100 MB of weights was most of the cost of the comparison's two
    inferences (benchmarks/README.md, "Compare cost").
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


def layer_outputs_suffix(model: onnx.ModelProto, layered: onnx.ModelProto) -> bytes:
    """Bytes that, appended to the serialized ``model``, make it ``layered`` (its
    :func:`with_layer_outputs` copy).

    A serialized ``ModelProto`` holding only the outputs ``layered`` adds: protobuf parses
    concatenated messages as one, merging ``graph`` and appending to its repeated ``output``.
    Writing ``file bytes + suffix`` spares serializing the weights again (0.15 s of a 1.1 s
    default compare of RF-ResNet-50, benchmarks/README.md "Cost of the default compare").
    """
    added = layered.graph.output[len(model.graph.output):]
    return onnx.ModelProto(graph=onnx.GraphProto(output=added)).SerializeToString()


BY_REFERENCE_MIN_BYTES = 1024
"""Initializers of at least this many bytes are read from the original file by
:func:`layered_by_reference`; smaller ones stay in the layered model."""

_MODEL_GRAPH, _GRAPH_INITIALIZER, _TENSOR_NAME, _TENSOR_RAW_DATA = 7, 5, 8, 9  # onnx.proto field numbers


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """The protobuf varint at ``data[pos:]``: (value, position after it)."""
    value, shift = 0, 0
    while True:
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if byte < 0x80:
            return value, pos
        shift += 7


def _length_delimited(data: bytes, start: int, end: int):
    """``(field number, start, end)`` of every length-delimited field of the message in
    ``data[start:end]``; other fields are skipped."""
    pos = start
    while pos < end:
        key, pos = _varint(data, pos)
        wire = key & 7
        if wire == 0:
            _, pos = _varint(data, pos)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            size, pos = _varint(data, pos)
            yield key >> 3, pos, pos + size
            pos += size
        else:
            raise ValueError(f"unsupported protobuf wire type {wire} at byte {pos}")


def initializer_offsets(serialized: bytes) -> dict[str, tuple[int, int]]:
    """Where each initializer's ``raw_data`` lies in a serialized ``ModelProto``: name ->
    ``(offset, length)`` in bytes, read off the protobuf wire format (nothing is parsed or copied).
    Initializers that keep their values in typed fields (``float_data``...) are not listed."""
    offsets = {}
    for field, start, end in _length_delimited(serialized, 0, len(serialized)):
        if field != _MODEL_GRAPH:
            continue
        for g_field, g_start, g_end in _length_delimited(serialized, start, end):
            if g_field != _GRAPH_INITIALIZER:
                continue
            name, raw = None, None
            for t_field, t_start, t_end in _length_delimited(serialized, g_start, g_end):
                if t_field == _TENSOR_NAME:
                    name = bytes(serialized[t_start:t_end]).decode()
                elif t_field == _TENSOR_RAW_DATA:
                    raw = (t_start, t_end - t_start)
            if name is not None and raw is not None:
                offsets[name] = raw
    return offsets


def _copy_fields(source, target, skip: str) -> None:
    """Copy every set field of the protobuf message ``source`` into ``target`` except ``skip``."""
    for field, value in source.ListFields():
        if field.name == skip:
            continue
        if field.is_repeated:
            getattr(target, field.name).extend(value)
        elif field.message_type is not None:
            getattr(target, field.name).CopyFrom(value)
        else:
            setattr(target, field.name, value)


def layered_by_reference(layered: onnx.ModelProto, offsets: dict[str, tuple[int, int]],
                         weights_file: str) -> onnx.ModelProto:
    """A copy of ``layered`` (a :func:`with_layer_outputs` model) whose initializers of at least
    :data:`BY_REFERENCE_MIN_BYTES` are external data at their :func:`initializer_offsets` in
    ``weights_file`` (the original file, relative to where the copy is saved), so that the weights
    are neither copied nor written again. An initializer whose recorded length is not its
    shape's size in bytes stays in the copy."""
    result = onnx.ModelProto()
    _copy_fields(layered, result, skip="graph")
    _copy_fields(layered.graph, result.graph, skip="initializer")
    for tensor in layered.graph.initializer:
        offset, length = offsets.get(tensor.name, (0, 0))
        sized = tensor.data_type != onnx.TensorProto.STRING and length == int(np.prod(tensor.dims)) * \
            onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
        if sized and length >= BY_REFERENCE_MIN_BYTES:
            reference = result.graph.initializer.add(name=tensor.name, dims=tensor.dims, data_type=tensor.data_type,
                                                     data_location=onnx.TensorProto.EXTERNAL)
            for key, value in (("location", weights_file), ("offset", str(offset)), ("length", str(length))):
                reference.external_data.add(key=key, value=value)
        else:
            result.graph.initializer.append(tensor)
    return result


def border_rings(
    model: onnx.ModelProto, layers: list[RectifiedLayer], input_shapes: dict[str, tuple[int, ...]]
) -> dict[str, np.ndarray | None]:
    """Per layer tensor, the border ring: a bool mask ``[Ho, Wo]``, True where the factor is not 1.

    That is where some kernel tap lands in the zero padding: where :func:`rectify_scale` (sum
    mode, exact count) of the layer's Conv geometry at its input size is not 1 (an average-mode
    or official-count layer rescales the same positions, which is where rectification bugs live).
    ``None`` when the Conv's input size is not known after shape inference at ``input_shapes``
    or its padding is asymmetric.
    """
    inferred = _shape_skeleton(model, input_shapes)
    shapes = {v.name: [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
              for v in [*inferred.graph.value_info, *inferred.graph.input]}
    convs = {node.name: node for node in inferred.graph.node if node.op_type == "Conv"}
    weight_dims = {t.name: tuple(t.dims) for t in model.graph.initializer}
    rings = {}
    for layer in layers:
        conv = convs.get(layer.conv)
        in_shape = shapes.get(conv.input[0]) if conv is not None else None
        rings[layer.tensor] = None
        if not in_shape or len(in_shape) != 4 or None in in_shape[2:]:
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in conv.attribute}
        kernel = attrs.get("kernel_shape") or weight_dims.get(layer.weight, (None, None, None))[2:]
        if None in kernel:
            continue
        pads = attrs.get("pads", [0, 0, 0, 0])
        if list(pads[:2]) != list(pads[2:]) or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            continue
        try:
            factor = rectify_scale(tuple(in_shape[2:]), tuple(kernel), tuple(attrs.get("strides", [1, 1])),
                                   tuple(pads[:2]), tuple(attrs.get("dilations", [1, 1])), dtype=torch.float64)
        except ValueError:
            continue
        rings[layer.tensor] = factor.numpy() != 1.0
    return rings


def rectifying_modules(model: torch.nn.Module) -> OrderedDict[str, RFConv2d]:
    """``RFConv2d`` modules that rectify (others export as a plain Conv), by qualified name."""
    return OrderedDict(
        (name, m) for name, m in model.named_modules() if isinstance(m, RFConv2d) and m.rectify
    )


def _execution_order(model: torch.nn.Module, names: list[str], inputs: list[torch.Tensor]):
    """(module name, output shape) in the order the modules first run on ``inputs``."""
    order = OrderedDict()
    modules = dict(model.named_modules())

    def hook(name):
        def record(_m, _i, out):
            order.setdefault(name, tuple(out.shape))
        return record

    handles = [modules[name].register_forward_hook(hook(name)) for name in names]
    try:
        with torch.inference_mode():
            model(*inputs)
    finally:
        for handle in handles:
            handle.remove()
    return list(order.items())


FILTER_COSINE = 0.999
"""Two conv weights hold the same filters when most output channels agree to this cosine (a
folded BatchNorm scales each channel, which leaves its direction alone)."""


FILTER_COLUMNS = 256
"""Filters are matched on their first this many weights: a folded BatchNorm scales a filter,
which leaves the direction of any part of it alone, and two different filters agreeing to
:data:`FILTER_COSINE` on 256 weights by chance is as unlikely as on all of them."""


def _unit_filters(weight: np.ndarray) -> np.ndarray:
    """``[O, min(I*kh*kw, FILTER_COLUMNS)]`` float64 rows of unit length (zero rows stay zero)."""
    rows = weight.reshape(weight.shape[0], -1)[:, :FILTER_COLUMNS].astype(np.float64)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.where(norms > 0, norms, 1.0)


def _same_filters(onnx_rows: np.ndarray, rows: np.ndarray) -> bool:
    """Most output channels of two :func:`_unit_filters` agree to :data:`FILTER_COSINE`."""
    if onnx_rows.shape != rows.shape:
        return False
    return float(np.mean(np.sum(onnx_rows * rows, axis=1) > FILTER_COSINE)) >= 0.5


def _match_by_weights(layers, constants, candidates) -> list[str] | None:
    """Each layer's module found by its filters (``constants``: the file's, by name); ``None``
    unless every layer matches exactly one module, and a different one. Only same-shaped filters
    are compared, each normalized once."""
    weights = {name: module.weight.detach().cpu().numpy() for name, module in candidates.items()}
    units: dict[tuple[str, str], np.ndarray] = {}

    def unit(side, name, weight):
        if (side, name) not in units:
            units[side, name] = _unit_filters(weight)
        return units[side, name]

    names = []
    for layer in layers:
        onnx_weight = constants.get(layer.weight)
        found = [] if onnx_weight is None else [
            name for name, weight in weights.items()
            if weight.shape == onnx_weight.shape
            and _same_filters(unit("onnx", layer.weight, onnx_weight), unit("torch", name, weight))
        ]
        if len(found) != 1 or found[0] in names:
            return None
        names.append(found[0])
    return names


def match_modules(
    layers: list[RectifiedLayer], model: torch.nn.Module, inputs: list[torch.Tensor],
    constants: dict[str, np.ndarray] | None = None,
) -> list[str]:
    """The ``RFConv2d`` module name for each ONNX layer: by recorded name, else by filters (the
    file's weights in ``constants``, by name, see :func:`_layer_constants`; no forward pass; the
    file may have fewer rectified convs than the model, and modules left over are
    :func:`unmatched_modules`), else by execution order when the counts agree."""
    candidates = rectifying_modules(model)
    recorded = [layer.module for layer in layers]
    if all(name in candidates for name in recorded) and len(set(recorded)) == len(recorded):
        return recorded
    by_weights = _match_by_weights(layers, constants, candidates) \
        if constants is not None and len(layers) <= len(candidates) else None
    if by_weights is not None:
        return by_weights
    if len(candidates) != len(layers):
        raise LayerMatchError(
            f"the ONNX model has {len(layers)} rectified conv(s) but the PyTorch model has "
            f"{len(candidates)} rectifying RFConv2d module(s); check that the PyTorch model (its checkpoint, "
            "rectification and average mode) is the one the file was exported from"
        )
    order = _execution_order(model.eval(), list(candidates), inputs)
    if len(order) != len(layers):
        raise LayerMatchError(
            f"only {len(order)} of {len(candidates)} rectifying modules ran in a forward pass"
        )
    return [name for name, _ in order]


def unmatched_modules(references: list, model: torch.nn.Module) -> list[str]:
    """Rectifying ``RFConv2d`` modules that no rectified conv of the file was matched to (its
    scale ``Mul`` went missing), in module order; ``references`` as :func:`layer_taps` returns."""
    matched = {ref.tap.module for ref in references}
    return [name for name in rectifying_modules(model) if name not in matched]


def _channel_gain(onnx_weights: list[np.ndarray], torch_weights: list[np.ndarray]) -> np.ndarray:
    """Per-output-channel ``g`` minimising ``|W' - g W|`` over all given weight tensors, float64."""
    num = sum(
        (a.astype(np.float64) * b.astype(np.float64)).reshape(a.shape[0], -1).sum(1)
        for a, b in zip(onnx_weights, torch_weights, strict=True)
    )
    den = sum((b.astype(np.float64) ** 2).reshape(b.shape[0], -1).sum(1) for b in torch_weights)
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), 1.0)


@dataclass(frozen=True)
class LayerReference:
    """How the PyTorch side of one layer is computed: the tap, and where a fused shift comes from."""

    tap: LayerTap
    shift_source: str | None  # "PyTorch BatchNorm '<name>'", "the ONNX file" or None (no shift)


GAIN_MATCH_RTOL = 2e-3  # fp16 weights carry the gain to about 1e-3
"""A channel's gain in the file matches a BatchNorm's when within this relative difference."""


def _batchnorm_affines(model: torch.nn.Module) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Every affine BatchNorm2d with running statistics as ``(name, a, c)``: its per-channel
    ``a = gamma / sqrt(var + eps)`` and shift ``c = beta - mean * a``, float64."""
    affines = []
    for name, bn in model.named_modules():
        if isinstance(bn, torch.nn.BatchNorm2d) and bn.affine and bn.track_running_stats:
            a = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().double().cpu().numpy()
            shift = bn.bias.detach().double().cpu().numpy() - bn.running_mean.double().cpu().numpy() * a
            affines.append((name, a, shift))
    return affines


def _folded_batchnorm(affines: list[tuple[str, np.ndarray, np.ndarray]],
                      gain: np.ndarray) -> tuple[str, np.ndarray, np.ndarray] | None:
    """The BatchNorm folded into a conv whose file gain per channel is ``gain``: one of
    :func:`_batchnorm_affines`, the one whose ``a`` matches ``gain`` on most channels, so a fold
    that is wrong on a few channels is still found, and the reference takes ``a`` and ``c`` from
    PyTorch: it stays independent of the file being checked. ``None`` when no BatchNorm matches.
    """
    best, best_share = None, 0.5
    for name, a, shift in affines:
        if a.size == gain.size:
            share = float(np.mean(np.abs(a - gain) <= GAIN_MATCH_RTOL * np.abs(a) + 1e-6))
            if share > best_share:
                best, best_share = (name, a, shift), share
    return best


def layer_taps(
    layers: list[RectifiedLayer],
    onnx_model: onnx.ModelProto,
    torch_model: torch.nn.Module,
    inputs: list[torch.Tensor],
) -> list[LayerReference]:
    """Per layer, a :class:`LayerTap` that turns the module's output into the ONNX tensor's meaning.

    The per-channel gain ``g`` is that of the PyTorch BatchNorm that was folded, when one matches
    the file on most channels (:func:`_folded_batchnorm`), so a fold wrong on one channel fails
    at its own layer; otherwise (nothing folded, or no BatchNorm matches) it is recovered from
    the weights by least squares. A plugin's fused shift comes from that BatchNorm too when one
    matches, otherwise (with ``shift_source`` saying so) from the ONNX file itself.
    """
    constants = _layer_constants(onnx_model, layers)
    names = match_modules(layers, torch_model, inputs, constants)
    modules = rectifying_modules(torch_model)
    affines = _batchnorm_affines(torch_model)
    references = []
    for layer, name in zip(layers, names, strict=True):
        module = modules[name]
        weight = module.weight.detach().cpu().numpy()
        onnx_weight = constants.get(layer.weight)
        if onnx_weight is None:
            raise LayerMatchError(f"{layer.describe()}: its weight {layer.weight!r} is not a constant")
        if onnx_weight.shape != weight.shape:
            raise LayerMatchError(
                f"{layer.describe()} has weights {onnx_weight.shape} but module {name!r} has "
                f"{tuple(weight.shape)}: the layers do not correspond"
            )
        pairs = [(onnx_weight, weight)]
        if module.bias is not None and layer.conv_bias in constants:
            pairs.append((constants[layer.conv_bias], module.bias.detach().cpu().numpy()))
        gain = _channel_gain(*zip(*pairs, strict=True))
        folded = None if np.allclose(gain, 1.0, rtol=GAIN_MATCH_RTOL) else _folded_batchnorm(affines, gain)
        if folded is not None:
            gain = folded[1]
        shift, source = None, None
        if layer.fused_bias is not None:
            if folded is not None:
                source, shift = f"PyTorch BatchNorm {folded[0]!r}", folded[2]
            elif layer.fused_bias in constants:
                source, shift = "the ONNX file", constants[layer.fused_bias]
            else:
                raise LayerMatchError(f"{layer.describe()}: its bias {layer.fused_bias!r} is not a constant")
        tap = LayerTap(name, layer.tensor, _transform(gain, shift, layer.activation))
        references.append(LayerReference(tap, source))
    return references


def _transform(gain: np.ndarray, shift: np.ndarray | None, activation: str):
    """``y -> act(g * y [+ c])`` in ``y``'s precision, or float32 for narrower types (a float64
    reference stays float64; the fp16 floor model's taps are widened to float32 only after it)."""
    gain_t = torch.from_numpy(np.asarray(gain, np.float64).reshape(1, -1, 1, 1))
    shift_t = None if shift is None else torch.from_numpy(np.asarray(shift, np.float64).reshape(1, -1, 1, 1))

    def to_onnx_meaning(y: torch.Tensor) -> torch.Tensor:
        dtype = torch.float64 if y.dtype == torch.float64 else torch.float32
        out = y.to(dtype) * gain_t.to(y.device, dtype)
        if shift_t is not None:
            out = out + shift_t.to(y.device, dtype)
        return torch.relu(out) if activation == "relu" else out

    return to_onnx_meaning
