"""``mode="plugin"``: rectified convs become ``Conv -> RFConvRectify`` TensorRT plugin nodes.

Each ``Conv -> Mul(scale [1, 1, Ho, Wo] constant)``, with a following per-channel ``Add(c)`` and a
``Relu`` fused in where present, becomes ``Conv -> RFConvRectify(conv_out, conv_in[, c])`` in domain
``rfconv`` (see :mod:`plugins.spec`). The graph does not say how the factor was counted: the
node's ``average_mode`` and ``count_mode`` are those its ``RFConv2d`` layer declares, when the
export passes them (:func:`declared_modes`, read from the module paths the exporter records), and
the scale must then be that rule's factor. Without a declaration they are inferred by matching the
scale against :func:`exporter.model.scale.rectify_scale` for the conv's geometry and input size;
in a file that takes other sizes, rules that match at the example size but differ elsewhere (the
official counting on small maps of a dilated kernel) are refused, not guessed. A constant that
matches no rule is no rectification factor (a learned spatial mask, say): that ``Conv -> Mul`` is
kept as it is, and a warning names it. A conv behind a separate ``Pad`` (``padding_mode`` reflect,
replicate or circular) is rectified with the Pad's amounts on the Pad's input. The plugin computes
the factor from the conv input's runtime shape, so the rewritten graph no longer holds any scale
constant.

A dynamic-H/W export computes each factor in the graph. Given the export's example input shape, the
factors are then evaluated at that size (:func:`static_twin_factors`, one ONNX Runtime run of a copy
of the graph) and identify each conv's mode as above. The rewrite drops the in-graph computation;
the plugin works at any size.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import onnx_graphsurgeon as gs
import torch

from exporter.onnx.graph import conv_geometry, sole_consumer
from exporter.onnx.passes.rectified import find_rectified_convs
from plugins.spec import PLUGIN_DOMAIN, PLUGIN_NAME, RectifySpec

# Candidate (average_mode, count_mode) in order of preference: where two give the same factor at
# the exported input size, the first wins (exact counting, sum mode: the layer's defaults).
CANDIDATE_MODES = ((False, "exact"), (False, "rfconv"), (True, "exact"), (True, "rfconv"))
# Factors of different modes differ by at least 1/kernel_size relative; rounding by far less.
MATCH_RTOL = 1e-3
NAME_SCOPES_KEY = "pkg.torch.onnx.name_scopes"
"""Node metadata in which ``torch.onnx.export`` records the module path (``[..., "layer1.0.conv1", op]``)."""


class UnmatchedFactor(ValueError):
    """A ``Conv -> Mul(spatial constant)`` whose constant is no rectification factor of its conv."""


def _conv_geometry(conv: gs.Node) -> dict:
    """Kernel, stride, symmetric padding and dilation (height, width pairs) of a 2-D ``Conv``."""
    weight = conv.inputs[1]
    geometry = conv_geometry(conv.attrs, weight.shape)
    if geometry is None:
        kernel = conv.attrs.get("kernel_shape") or (weight.shape[2:] if weight.shape else ())
        raise ValueError(f"plugin mode: Conv {conv.name!r} is not a 2-D convolution (kernel {list(kernel)})")
    if geometry.auto_pad != "NOTSET":
        raise ValueError(f"plugin mode: Conv {conv.name!r} uses auto_pad={conv.attrs['auto_pad']!r}; "
                         "export with explicit pads")
    if geometry.symmetric_padding is None:
        raise ValueError(f"plugin mode: Conv {conv.name!r} has asymmetric pads {list(geometry.pads)}; "
                         "RFConvRectify supports symmetric padding only")
    return {"kernel": geometry.kernel, "stride": geometry.stride, "padding": geometry.symmetric_padding,
            "dilation": geometry.dilation}


def _input_hw(conv: gs.Node) -> tuple[int, int]:
    shape = conv.inputs[0].shape
    if shape is None or len(shape) != 4 or not all(isinstance(d, int) for d in shape[2:]):
        raise ValueError(f"plugin mode: the input of Conv {conv.name!r} has shape {shape}; the rectification "
                         "mode is inferred from the scale constant at a static height and width, so export "
                         "with static H/W (the plugin itself then works at any size)")
    return int(shape[2]), int(shape[3])


def _separate_pad(conv: gs.Node) -> tuple[gs.Node, tuple[int, int]] | None:
    """``(Pad node, (pad_h, pad_w))`` when ``conv`` (itself unpadded) reads a ``Pad`` of H and W only
    by constant symmetric amounts, as ``padding_mode`` reflect / replicate / circular exports."""
    source = conv.inputs[0]
    pad = source.inputs[0] if source.inputs else None
    if pad is None or pad.op != "Pad" or any(conv.attrs.get("pads", (0, 0, 0, 0))) or sole_consumer(source) is None:
        return None
    amounts = pad.inputs[1] if len(pad.inputs) > 1 else None
    if not isinstance(amounts, gs.Constant) or amounts.values.shape != (8,):
        return None
    n0, c0, top, left, n1, c1, bottom, right = (int(v) for v in amounts.values)
    if (n0, c0, n1, c1) != (0, 0, 0, 0) or (top, left) != (bottom, right) or min(top, left) < 0:
        return None
    return pad, (top, left)


def _agree_everywhere(geometry: dict, first: tuple[bool, str], second: tuple[bool, str]) -> bool:
    """True when two (average_mode, count_mode) give one factor at every input size of this
    geometry (checked per square size up to a few receptive fields; the axes are independent).
    A size one rule rectifies and the other refuses counts as a difference."""
    extent = max(d * (k - 1) + 1 for k, d in zip(geometry["kernel"], geometry["dilation"], strict=True))
    specs = [RectifySpec(**geometry, average_mode=a, count_mode=c) for a, c in (first, second)]
    for size in range(1, 4 * extent + 2 * max(geometry["stride"]) + 2):
        tables = []
        for spec in specs:
            try:
                tables.append(spec.scale((size, size), dtype=torch.float64).numpy())
            except ValueError:
                tables.append(None)
        if (tables[0] is None) != (tables[1] is None):
            return False
        if tables[0] is not None and (tables[0].shape != tables[1].shape
                                      or not np.allclose(tables[0], tables[1], rtol=MATCH_RTOL, atol=0)):
            return False
    return True


def infer_spec(conv: gs.Node, scale: np.ndarray, in_hw: tuple[int, int] | None = None,
               padding: tuple[int, int] | None = None, declared: tuple[bool, str] | None = None,
               dynamic: bool = False) -> RectifySpec:
    """The :class:`RectifySpec` (activation ``"none"``) whose factor equals ``scale`` for this conv.

    ``scale`` holds ``Ho * Wo`` values broadcasting as ``[1, 1, Ho, Wo]``, for a conv input of
    ``in_hw`` pixels (default: the conv input's static shape); ``padding`` replaces the conv's own
    (a separate ``Pad``'s). ``declared`` is the ``(average_mode, count_mode)`` the model's layer
    declares (see :func:`declared_modes`): then it is the node's rule, and ``scale`` must be its
    factor. Without it the rule is the first of :data:`CANDIDATE_MODES` that reproduces ``scale``;
    with ``dynamic`` (the file takes other sizes) every rule reproducing ``scale`` must also agree
    with it at every other size, since the graph cannot tell them apart.

    Raises :class:`UnmatchedFactor` when no rule reproduces ``scale``, and ValueError when the
    declared rule does not, or when (``dynamic``) matching rules differ at other sizes.
    """
    geometry, in_hw = _conv_geometry(conv), in_hw or _input_hw(conv)
    if padding is not None:
        geometry["padding"] = padding
    values = np.asarray(scale, dtype=np.float64)
    tried, matched = [], []
    for average_mode, count_mode in ([declared] if declared is not None else CANDIDATE_MODES):
        spec = RectifySpec(**geometry, average_mode=average_mode, count_mode=count_mode)
        try:
            table = spec.scale(in_hw, dtype=torch.float64).numpy()
        except ValueError:
            continue
        tried.append(f"average_mode={average_mode}/count_mode={count_mode}")
        if values.size == table.size and np.allclose(values.reshape(table.shape), table, rtol=MATCH_RTOL, atol=0):
            matched.append(spec)
    where = (f"Conv {conv.name!r} (kernel {geometry['kernel']}, stride {geometry['stride']}, padding "
             f"{geometry['padding']}, dilation {geometry['dilation']}, input {in_hw[0]}x{in_hw[1]})")
    if declared is not None and not matched:
        raise ValueError(
            f"plugin mode: the scale after {where} is not the factor its layer declares (average_mode="
            f"{declared[0]}, count_mode={declared[1]!r}); the traced graph and the model disagree"
        )
    if not matched:
        raise UnmatchedFactor(
            f"plugin mode: the scale after {where} matches no rectification factor (tried "
            f"{', '.join(tried) or 'nothing: the geometry cannot be rectified'}); it is kept as a Conv -> Mul"
        )
    first = matched[0]
    if dynamic and declared is None:
        for other in matched[1:]:
            if not _agree_everywhere(geometry, (first.average_mode, first.count_mode),
                                     (other.average_mode, other.count_mode)):
                raise ValueError(
                    f"plugin mode: the scale after {where} is the factor of both average_mode="
                    f"{first.average_mode}/count_mode={first.count_mode!r} and average_mode={other.average_mode}/"
                    f"count_mode={other.count_mode!r}, which differ at other input sizes, and no RFConv2d layer "
                    "of the model declares which: export the model whose RFConv2d layers made this graph "
                    "(export_onnx reads their count_mode), or export with static H/W"
                )
    return first


def declared_modes(model: torch.nn.Module, proto) -> dict[str, tuple[bool, str]]:
    """Conv node name -> ``(average_mode, count_mode)`` of the rectifying ``RFConv2d`` layer of
    ``model`` it was traced from, read from the module path ``torch.onnx.export`` records on each
    node (``pkg.torch.onnx.name_scopes``) of ``proto`` (the exporter's ``ModelProto``, before any
    pass). Conv nodes without a recorded path, or of other modules, are left out."""
    import ast

    from exporter.model.layer import RFConv2d

    modules = {name: m for name, m in model.named_modules() if isinstance(m, RFConv2d) and m.rectify}
    found = {}
    for node in proto.graph.node:
        if node.op_type != "Conv":
            continue
        for prop in node.metadata_props:
            if prop.key != NAME_SCOPES_KEY:
                continue
            try:
                scopes = ast.literal_eval(prop.value)
            except (ValueError, SyntaxError):
                continue
            module = modules.get(scopes[-2]) if len(scopes) >= 2 else None
            if module is not None:
                found[node.name] = (bool(module.average_mode), str(module.count_mode))
    return found


def _other_input(node: gs.Node, tensor: gs.Tensor) -> gs.Tensor | None:
    if len(node.inputs) != 2:
        return None
    return node.inputs[1] if node.inputs[0] is tensor else node.inputs[0]


def _is_channel_bias(tensor: gs.Tensor, channels: int) -> bool:
    """A constant shaped ``[1, C, 1, 1]`` or ``[C, 1, 1]``: one value per conv output channel."""
    if not isinstance(tensor, gs.Constant) or tensor.values.ndim not in (3, 4):
        return False
    shape = (1,) * (4 - tensor.values.ndim) + tuple(tensor.values.shape)
    return shape == (1, channels, 1, 1)


def static_twin_factors(graph: gs.Graph, input_shapes) -> dict[str, tuple[np.ndarray, tuple[int, int]]]:
    """For each rectified conv of ``graph`` whose factor is computed in the graph (by Conv name): the
    factor ``[.., Ho, Wo]`` and the conv input's ``(H, W)`` in pixels when the graph inputs have
    ``input_shapes`` (one shape per graph input, in order; e.g. ``[(N, C, H, W)]``).

    A copy of the graph outputs those tensors and runs once on ONNX Runtime (CPU) on zeros: the
    factor depends on the input's shape only. (onnx-graphsurgeon's shape folding cannot be used
    here: it ignores ``Shape``'s ``start``/``end``, which the exporter's size reads carry.)
    """
    import onnxruntime

    twin = graph.copy()
    matches = [m for m in find_rectified_convs(twin) if not isinstance(m.scale, gs.Constant)]
    outputs = []
    for match in matches:
        in_shape = gs.Variable(f"{match.conv.name}/input_shape", np.int64)
        twin.nodes.append(gs.Node("Shape", inputs=[match.conv.inputs[0]], outputs=[in_shape]))
        match.scale.dtype = match.scale.dtype or np.float32
        outputs += [match.scale, in_shape]
    twin.outputs = outputs
    model = gs.export_onnx(twin.cleanup())
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    if len(input_shapes) != len(twin.inputs):
        raise ValueError(f"plugin mode: {len(input_shapes)} example shape(s) for a graph of {len(twin.inputs)} inputs")
    values = session.run(None, {source.name: np.zeros(shape, dtype=source.dtype or np.float32)
                                for source, shape in zip(twin.inputs, input_shapes, strict=True)})
    return {m.conv.name: (values[2 * i], (int(values[2 * i + 1][2]), int(values[2 * i + 1][3])))
            for i, m in enumerate(matches)}


def _rewrite(graph: gs.Graph, conv: gs.Node, mul: gs.Node, scale: np.ndarray,
             in_hw: tuple[int, int] | None = None, declared: tuple[bool, str] | None = None,
             dynamic: bool = False) -> gs.Node:
    """Replace ``conv -> mul(scale) [-> Add(bias)] [-> Relu]`` by ``conv -> RFConvRectify``.

    ``in_hw`` is the conv input's size (default: its static shape). A conv behind a separate ``Pad``
    (non-zero ``padding_mode``) is rectified as the layer does, on the unpadded input with the
    Pad's amounts: the plugin then reads the Pad's input.
    """
    conv_in = conv.inputs[0]
    padded = _separate_pad(conv)
    padding = None
    if padded is not None:
        pad, padding = padded
        conv_in = pad.inputs[0]
        in_hw = in_hw or _input_hw(conv)
        in_hw = (in_hw[0] - 2 * padding[0], in_hw[1] - 2 * padding[1])
    spec = infer_spec(conv, scale, in_hw, padding, declared, dynamic)
    channels = conv.inputs[1].shape[0]
    fused, out, bias, activation = [mul], mul.outputs[0], None, "none"
    add = sole_consumer(out, graph)
    if add is not None and add.op == "Add" and _is_channel_bias(_other_input(add, out), channels):
        bias = _other_input(add, out)
        fused.append(add)
        out = add.outputs[0]
    relu = sole_consumer(out, graph)
    if relu is not None and relu.op == "Relu":
        activation = "relu"
        fused.append(relu)
        out = relu.outputs[0]
    spec = dataclasses.replace(spec, activation=activation)
    conv_out = conv.outputs[0]
    if out.dtype is None or out.shape is None:
        out.dtype, out.shape = conv_out.dtype, conv_out.shape
    for node in fused:
        node.outputs.clear()
    plugin = gs.Node(op=PLUGIN_NAME, name=f"{conv.name or conv_out.name}/rectify", domain=PLUGIN_DOMAIN,
                     attrs=spec.node_attributes(), inputs=[conv_out, conv_in] + ([bias] if bias else []),
                     outputs=[out])
    graph.nodes.append(plugin)
    return plugin


def apply(graph: gs.Graph, example_shapes=None, declared: dict[str, tuple[bool, str]] | None = None) -> gs.Graph:
    """Rewrite every rectified conv of ``graph`` (in place) into a plugin node; returns ``graph``.

    Factors computed in the graph (a dynamic-H/W export) are read at ``example_shapes`` (the
    export's example inputs' shapes, one per graph input) from :func:`static_twin_factors`. Raises
    ValueError when such a factor is met without ``example_shapes``, or when a factor matches no
    rectification. ``declared`` (Conv node name -> ``(average_mode, count_mode)``, see
    :func:`declared_modes`) gives each conv its layer's counting rule; see :func:`infer_spec` for
    the convs it does not name.
    """
    declared = declared or {}
    matches = find_rectified_convs(graph)
    twin, kept = None, []
    for match in matches:
        if isinstance(match.scale, gs.Constant):
            try:
                _rewrite(graph, match.conv, match.mul, match.scale.values,
                         declared=declared.get(match.conv.name))
            except UnmatchedFactor:
                kept.append(match.conv.name)
            continue
        if example_shapes is None:
            raise ValueError(
                f"plugin mode: the factor after Conv {match.conv.name!r} is computed in the graph (a dynamic "
                "H/W export); give the example input shapes (example_shapes) to read it, or export with static H/W"
            )
        twin = static_twin_factors(graph, example_shapes) if twin is None else twin
        if match.conv.name not in twin:
            raise ValueError(f"plugin mode: the factor after Conv {match.conv.name!r} does not fold to a constant "
                             f"at the example input shapes {[list(shape) for shape in example_shapes]}")
        _rewrite(graph, match.conv, match.mul, *twin[match.conv.name], declared=declared.get(match.conv.name),
                 dynamic=True)
    if kept:
        warnings.warn(
            f"plugin mode kept {len(kept)} Conv -> Mul(spatial constant) as they are ({', '.join(kept[:4])}): "
            "their constant matches no rectification factor (a learned spatial mask, or a factor of another "
            "rule), so they are not rectified convs; TensorRT runs them as a Mul",
            UserWarning, stacklevel=2,
        )
    return graph.cleanup().toposort()
