"""What an ONNX file is: export mode, precision, opset, inputs and outputs with their dynamic
dimensions, rectified convs (geometry, counting rule, distinct factors), external data, and which
backends here can run it. ``rfconv-deploy inspect FILE`` prints it (plans: :mod:`exporter.trt.inspect`).

Rectified convs are :func:`exporter.onnx.passes.rectified.find_rectified_convs` (``Conv [-> Q/DQ]
-> Mul(factor)``) and ``Conv -> RFConvRectify`` plugin nodes. The counting rule of a plugin node is
its attributes; that of a constant factor is found by recomputing the candidate factors of the
conv's geometry at its input size (sum or average mode, exact or ``rfconv`` count; the formulas of
:mod:`exporter.model.scale`, in numpy) and naming the one the constant equals; a factor computed
in the graph (a dynamic-H/W export, ``compact_scales``) is not evaluated. Without dilation the
two counting rules give the same factor; the report then says ``exact``.

Light: imports onnx, onnx-graphsurgeon and numpy, never torch or onnxruntime.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from exporter.backends import availability
from exporter.backends.openvino import refusal as ov_refusal
from exporter.onnx.precision import file_precision

PLUGIN_OP = "RFConvRectify"
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
STANDARD_DOMAINS = ("", "ai.onnx", "ai.onnx.ml", "com.microsoft")
SKELETON_MAX_ELEMENTS = 64


@dataclass(frozen=True)
class TensorInfo:
    """A graph input or output: element type (numpy name), shape with ``dim_param`` names or ``"?"``
    for dynamic dimensions, and the indices of those dimensions."""

    name: str
    dtype: str
    shape: tuple
    dynamic_dims: tuple[int, ...]


@dataclass(frozen=True)
class RectifiedConvInfo:
    """One rectified conv: its Conv node, geometry ``(height, width)`` pairs, channels, the conv's
    input and output size (None where unknown), how it is rectified (``"Mul"`` or ``"RFConvRectify"``)
    and the counting rule (``"exact"``, ``"rfconv"``, ``"exact, average"``..., or why it is unknown)."""

    conv: str
    node: str
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int, int, int]
    dilation: tuple[int, int]
    groups: int
    channels: tuple[int | None, int | None]
    input_size: tuple[int, int] | None
    output_size: tuple[int, int] | None
    via: str
    rule: str
    factor_id: int | None = None


@dataclass(frozen=True)
class FileInfo:
    """What :func:`inspect_onnx` (or :func:`exporter.trt.inspect.inspect_plan`) found.

    ``backends`` maps each backend name to ``(runs here, one-line reason)``.
    """

    path: str
    kind: str
    size_bytes: int
    mode: str = ""
    precision: str = ""
    opset: int | None = None
    producer: str = ""
    inputs: list[TensorInfo] = field(default_factory=list)
    outputs: list[TensorInfo] = field(default_factory=list)
    rectified: list[RectifiedConvInfo] = field(default_factory=list)
    distinct_factors: int | None = None
    custom_ops: list[str] = field(default_factory=list)
    external_data: dict[str, bool] = field(default_factory=dict)
    sidecar: dict | None = None
    backends: dict[str, tuple[bool, str]] = field(default_factory=dict)

    def as_dict(self) -> dict:
        """JSON-ready: dataclasses as dicts, tuples as lists."""
        return asdict(self)


def _tensor(value) -> TensorInfo:
    import onnx

    tensor = value.type.tensor_type
    try:
        dtype = str(np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type)))
    except (KeyError, TypeError, ValueError):
        dtype = onnx.TensorProto.DataType.Name(tensor.elem_type).lower()
    shape, dynamic = [], []
    for index, dim in enumerate(tensor.shape.dim):
        if dim.HasField("dim_value"):
            shape.append(int(dim.dim_value))
        else:
            shape.append(dim.dim_param or "?")
            dynamic.append(index)
    return TensorInfo(value.name, dtype, tuple(shape), tuple(dynamic))


def _inferred_shapes(model) -> dict[str, list[int | None]]:
    """Tensor name -> shape after ONNX shape inference on a weightless copy of ``model``."""
    import onnx

    graph = model.graph
    small = [t for t in graph.initializer
             if t.data_location != onnx.TensorProto.EXTERNAL and int(np.prod(t.dims)) <= SKELETON_MAX_ELEMENTS]
    kept = {t.name for t in small}
    declared = [onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                for t in graph.initializer if t.name not in kept]
    # a plugin node keeps its conv input's shape: an Identity stands in for it so inference goes on
    nodes = [onnx.helper.make_node("Identity", [node.input[0]], [node.output[0]], name=node.name)
             if node.op_type == PLUGIN_OP else node for node in graph.node]
    skeleton = onnx.helper.make_graph(nodes, graph.name, list(graph.input) + declared, list(graph.output),
                                      initializer=small)
    copy = onnx.helper.make_model(skeleton, opset_imports=list(model.opset_import), ir_version=model.ir_version)
    copy.functions.extend(model.functions)
    try:
        inferred = onnx.shape_inference.infer_shapes(copy)
    except Exception:  # noqa: BLE001 - custom ops or odd graphs: sizes stay unknown
        inferred = copy
    shapes = {}
    for value in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    return shapes


def _valid_counts(size: int, kernel: int, stride: int, pad: int, dilation: int, out: int, rule: str) -> np.ndarray:
    """Kernel taps inside the input per output position along one axis (as :mod:`exporter.model.scale`)."""
    start = np.arange(out, dtype=np.int64) * stride - pad
    if rule == "exact":
        first = np.maximum(np.floor_divide(-start + dilation - 1, dilation), 0)
        last = np.minimum(np.floor_divide(size - 1 - start, dilation), kernel - 1)
        return last - first + 1
    extent = kernel + 2 * (dilation - 1)
    clipped = np.minimum(start + extent, size) - np.maximum(start, 0)
    return np.trunc((clipped - 1) / dilation).astype(np.int64) + 1


def _taps(kernel: int, dilation: int, rule: str) -> int:
    return kernel if rule == "exact" else (kernel + 2 * (dilation - 1) - 1) // dilation + 1


def _counting_rule(factor: np.ndarray, info: RectifiedConvInfo) -> str:
    """Name the candidate factor that equals the constant ``factor`` (``[..., Ho, Wo]``)."""
    if info.input_size is None or info.output_size is None:
        return "unknown (the conv's input size is not known)"
    if info.padding[:2] != info.padding[2:]:
        return "unknown (asymmetric padding)"
    rtol = 1e-3 if np.asarray(factor).dtype == np.float16 else 1e-5
    factor = np.asarray(factor, dtype=np.float64).reshape(info.output_size)
    for rule in ("exact", "rfconv"):
        axes = []
        for axis in range(2):
            valid = _valid_counts(info.input_size[axis], info.kernel[axis], info.stride[axis], info.padding[axis],
                                  info.dilation[axis], info.output_size[axis], rule)
            axes.append((valid, _taps(info.kernel[axis], info.dilation[axis], rule)))
        if (axes[0][0] < 1).any() or (axes[1][0] < 1).any():
            continue
        valid = np.outer(axes[0][0], axes[1][0]).astype(np.float64)
        for average, numerator in ((False, axes[0][1] * axes[1][1]), (True, 1.0)):
            if np.allclose(factor, numerator / valid, rtol=rtol, atol=0):
                return rule + (", average" if average else "")
    return "unknown (the factor matches no counting rule at this size)"


def _pairs(values, default, rank=2) -> tuple:
    return tuple(values) if values else (default,) * rank


def _weight_shape(conv, graph) -> tuple[int, ...] | None:
    import onnx_graphsurgeon as gs

    weight = conv.inputs[1]
    if isinstance(weight, gs.Constant):
        return tuple(weight.shape)
    if weight.inputs and weight.inputs[0].op == "DequantizeLinear" and isinstance(weight.inputs[0].inputs[0],
                                                                                  gs.Constant):
        return tuple(weight.inputs[0].inputs[0].shape)
    return tuple(weight.shape) if weight.shape else None


def _conv_info(conv, node, via: str, shapes: dict, graph, rule: str = "") -> RectifiedConvInfo:
    attrs = conv.attrs
    weight = _weight_shape(conv, graph)
    kernel = tuple(attrs.get("kernel_shape") or (weight[2:] if weight and len(weight) == 4 else (0, 0)))
    pads = tuple(attrs.get("pads") or (0, 0, 0, 0))
    groups = int(attrs.get("group", 1))
    in_shape, out_shape = shapes.get(conv.inputs[0].name), shapes.get(conv.outputs[0].name)
    input_size = tuple(in_shape[2:]) if in_shape and len(in_shape) == 4 and None not in in_shape[2:] else None
    output_size = tuple(out_shape[2:]) if out_shape and len(out_shape) == 4 and None not in out_shape[2:] else None
    channels = (weight[1] * groups if weight else None, weight[0] if weight else None)
    return RectifiedConvInfo(
        conv=conv.name, node=node.name, kernel=kernel, stride=_pairs(attrs.get("strides"), 1),
        padding=pads, dilation=_pairs(attrs.get("dilations"), 1), groups=groups, channels=channels,
        input_size=input_size, output_size=output_size, via=via, rule=rule,
    )


def _plugin_rule(node) -> str:
    attrs = node.attrs
    count = attrs.get("count_mode", "exact")
    count = count.decode() if isinstance(count, bytes) else str(count)
    return count + (", average" if int(attrs.get("average_mode", 0)) else "")


def _factor(model, tensor, base_dir: Path) -> np.ndarray | str:
    """The constant factor's values (read from external data relative to ``base_dir``), or why not."""
    from onnx import numpy_helper

    proto = next((t for t in model.graph.initializer if t.name == tensor.name), None)
    try:
        return numpy_helper.to_array(proto, base_dir=str(base_dir)) if proto is not None else np.asarray(tensor.values)
    except Exception as err:  # noqa: BLE001 - missing or short external data
        return f"unknown (the factor's external data cannot be read: {type(err).__name__})"


def _rectified(model, base_dir: Path) -> tuple[list[RectifiedConvInfo], int | None]:
    import onnx_graphsurgeon as gs

    from exporter.onnx.passes.rectified import find_rectified_convs

    graph = gs.import_onnx(model)
    shapes = _inferred_shapes(model)
    found, maps = [], {}
    matches = {id(m.conv): m for m in find_rectified_convs(graph)}
    for node in graph.nodes:
        if id(node) in matches:
            match = matches[id(node)]
            info = _conv_info(match.conv, match.mul, "Mul", shapes, graph)
            values = _factor(model, match.scale, base_dir) if isinstance(match.scale, gs.Constant) else None
            if isinstance(values, str):
                info = _replace(info, rule=values)
            elif values is not None:
                key = (values.shape, values.dtype.str, values.tobytes())
                factor_id = maps.setdefault(key, len(maps))
                if info.output_size is None and values.ndim >= 2:
                    info = _replace(info, output_size=tuple(int(d) for d in values.shape[-2:]))
                info = _replace(info, rule=_counting_rule(values, info), factor_id=factor_id)
            else:
                info = _replace(info, rule="computed in the graph (from the input size)")
            found.append(info)
        elif node.op == PLUGIN_OP and node.inputs and node.inputs[0].inputs and node.inputs[0].inputs[0].op == "Conv":
            found.append(_conv_info(node.inputs[0].inputs[0], node, PLUGIN_OP, shapes, graph, _plugin_rule(node)))
    constant = any(info.factor_id is not None for info in found)
    return found, (len(maps) if constant else None)


def _replace(info: RectifiedConvInfo, **changes) -> RectifiedConvInfo:
    from dataclasses import replace

    return replace(info, **changes)


def _mode(model, rectified: list[RectifiedConvInfo]) -> str:
    ops = {node.op_type for node in model.graph.node}
    if PLUGIN_OP in ops:
        return "plugin (Conv -> RFConvRectify, TensorRT plugin nodes)"
    computed = any(info.rule.startswith("computed") for info in rectified)
    base = "Conv -> Mul" + (", factors computed from the input size" if computed else "")
    if ops & set(QDQ_OPS):
        return f"int8 Q/DQ ({base})"
    if not rectified:
        return "no rectified conv (a plain model)"
    return f"static ({base})" if not computed else f"dynamic H/W ({base})"


def _external(model, folder: Path) -> dict[str, bool]:
    import onnx

    locations = {}
    for tensor in model.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            location = next((e.value for e in tensor.external_data if e.key == "location"), "")
            locations[location] = (folder / location).is_file()
    return locations


def _custom_ops(model) -> list[str]:
    return sorted({f"{n.domain}.{n.op_type}" for n in model.graph.node if n.domain not in STANDARD_DOMAINS})


def onnx_backends(model, custom: list[str]) -> dict[str, tuple[bool, str]]:
    """Each backend of this toolkit: whether it can run ``model`` here, with the reason."""
    plugin = any(op.endswith(f".{PLUGIN_OP}") for op in custom)
    found = {}
    for name, provider in availability.ORT_PROVIDERS.items():
        here = availability.ort_provider(provider, name)
        if not here.available:
            found[name] = (False, here.detail)
        elif plugin and name == "ort-cpu":
            extensions = availability.package_version("onnxruntime_extensions")
            found[name] = (extensions is not None, "RFConvRectify by the plugin's Python reference (slow)"
                           if extensions else "RFConvRectify needs onnxruntime-extensions (pip install it)")
        elif custom:
            found[name] = (False, f"custom ops {', '.join(custom)}; compare a static-mode export here")
        else:
            found[name] = (True, provider)
    tensorrt = availability.tensorrt()
    found["trt"] = (tensorrt.available, tensorrt.detail + (" (plugin library needed)" if plugin else ""))
    ov = availability.ov_cpu()
    why = ov_refusal(model)
    found["ov-cpu"] = (ov.available and why is None, why or ov.detail)
    found["onnx-ref"] = (not custom or plugin and custom == [f"rfconv.{PLUGIN_OP}"],
                         "onnx.reference (numpy, slow)" if not custom or plugin else f"custom ops {', '.join(custom)}")
    return found


def inspect_onnx(path) -> FileInfo:
    """Describe the ONNX file at ``path`` (external data is listed, not read).

    Raises FileNotFoundError for a missing file and ValueError for one that is not ONNX.
    """
    import onnx

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist" if not path.is_dir() else f"{path} is a directory, not a file")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # noqa: BLE001 - protobuf raises DecodeError and others
        raise ValueError(f"{path} is not an ONNX model ({type(err).__name__}: {err})") from err
    if not model.graph.node:
        raise ValueError(f"{path} is not an ONNX model (no graph nodes)")
    rectified, distinct = _rectified(model, path.parent)
    custom = _custom_ops(model)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    initializers = {t.name for t in model.graph.initializer}
    return FileInfo(
        path=str(path), kind="onnx", size_bytes=path.stat().st_size,
        mode=_mode(model, rectified), precision=file_precision(model), opset=opset,
        producer=f"{model.producer_name} {model.producer_version}".strip(),
        inputs=[_tensor(v) for v in model.graph.input if v.name not in initializers],
        outputs=[_tensor(v) for v in model.graph.output],
        rectified=rectified, distinct_factors=distinct, custom_ops=custom,
        external_data=_external(model, path.parent), backends=onnx_backends(model, custom),
    )


def _shape_text(info: TensorInfo) -> str:
    return "[" + ", ".join(str(d) for d in info.shape) + "]"


def describe(info: FileInfo) -> str:
    """The human-readable report ``rfconv-deploy inspect`` prints."""
    lines = [f"{info.path}: {info.kind}, {info.size_bytes / 1e6:.2f} MB"]
    if info.kind == "onnx":
        lines += [f"  mode        {info.mode}", f"  precision   {info.precision}", f"  opset       {info.opset}"]
        if info.producer:
            lines.append(f"  producer    {info.producer}")
        for label, tensors in (("input", info.inputs), ("output", info.outputs)):
            for tensor in tensors:
                dyn = f"  dynamic dims {list(tensor.dynamic_dims)}" if tensor.dynamic_dims else "  static"
                lines.append(f"  {label:<11} {tensor.name} {tensor.dtype} {_shape_text(tensor)}{dyn}")
        distinct = "" if info.distinct_factors is None else f", {info.distinct_factors} distinct factor maps"
        lines.append(f"  rectified   {len(info.rectified)} convs{distinct}")
        for index, conv in enumerate(info.rectified):
            size = "x".join(map(str, conv.input_size)) if conv.input_size else "?"
            out = "x".join(map(str, conv.output_size)) if conv.output_size else "?"
            lines.append(
                f"    #{index:<3} {conv.conv}: k{conv.kernel[0]}x{conv.kernel[1]} s{conv.stride[0]}x{conv.stride[1]} "
                f"p{','.join(map(str, conv.padding))} d{conv.dilation[0]}x{conv.dilation[1]} g{conv.groups} "
                f"{conv.channels[0]}->{conv.channels[1]} ch, {size} -> {out}, {conv.via}, rule {conv.rule}")
        if info.custom_ops:
            lines.append(f"  custom ops  {', '.join(info.custom_ops)}")
        for location, present in info.external_data.items():
            lines.append(f"  external    {location} ({'present' if present else 'MISSING'})")
    if info.kind == "plan":
        if info.sidecar is None:
            lines.append("  sidecar     none (a plan not built by rfconv-deploy build)")
        else:
            for key, value in info.sidecar.items():
                lines.append(f"  {key:<11} {value}")
    lines.append("  backends here")
    for name, (runs, why) in info.backends.items():
        lines.append(f"    {name:<10} {'yes' if runs else 'no ':<4} {why}")
    return "\n".join(lines)
