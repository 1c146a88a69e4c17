"""RFConvRectify on ONNX Runtime (CPU): a reference implementation to validate plugin-mode graphs.

onnxruntime-extensions runs Python custom ops only in domain ``ai.onnx.contrib``, with int, float
and string attributes, a fixed number of inputs and no float16 tensors (float16 aborts the process).
A plugin-mode graph therefore keeps the node TensorRT needs (domain ``rfconv``, ints attributes,
2 or 3 inputs) and :func:`for_onnxruntime` hands ONNX Runtime a copy in which every RFConvRectify
node becomes::

    Cast(conv_out, float) ─┐
    Shape(conv_in) ────────┼─> RFConvRectifyReference[Bias] (ai.onnx.contrib) ─> CastLike(conv_out)
    [Cast(bias, float)] ───┘

computing in float32 and rounding once to the graph's type, as the CUDA kernel does. Only the
conv input's shape crosses into Python.
"""

from __future__ import annotations

import functools
import os
import threading

import numpy as np
import onnx
from onnx import helper

from .spec import PAIR_ATTRIBUTES, PLUGIN_DOMAIN, PLUGIN_NAME, RectifySpec

REFERENCE_DOMAIN = "ai.onnx.contrib"
REFERENCE_OPS = {False: "RFConvRectifyReference", True: "RFConvRectifyReferenceBias"}
MIN_OPSET = 15  # CastLike


def rectify_reference(conv_out: np.ndarray, in_hw: tuple[int, int], spec: RectifySpec,
                      bias: np.ndarray | None = None) -> np.ndarray:
    """``act(conv_out * factor[h, w] + bias[c])`` in float32.

    ``conv_out`` is the conv output ``[N, C, Ho, Wo]``, ``in_hw`` the conv input's ``(H, W)`` in
    pixels, ``bias`` holds ``C`` values or is None. The factor comes from ``spec.scale(in_hw)``.
    """
    factor = spec.scale(in_hw).numpy()
    if conv_out.ndim != 4 or tuple(conv_out.shape[-2:]) != factor.shape:
        raise ValueError(f"RFConvRectify: conv output shape {tuple(conv_out.shape)} does not match the "
                         f"{factor.shape[0]}x{factor.shape[1]} output of {spec} for a {in_hw[0]}x{in_hw[1]} input")
    out = conv_out.astype(np.float32) * factor
    if bias is not None:
        bias = np.asarray(bias, dtype=np.float32).reshape(-1)
        if bias.size != conv_out.shape[1]:
            raise ValueError(f"RFConvRectify: bias has {bias.size} values for {conv_out.shape[1]} channels")
        out = out + bias.reshape(1, -1, 1, 1)
    if spec.activation == "relu":
        out = np.where(out < 0, np.float32(0), out)  # keeps NaN, as torch.relu does
    return out.astype(np.float32)


def _encode(spec: RectifySpec) -> dict:
    """Attributes of the reference node: pairs as ``"h,w"`` strings (the custom op API has no ints)."""
    attrs = {name: ",".join(map(str, getattr(spec, name))) for name in PAIR_ATTRIBUTES}
    attrs.update(average_mode=int(spec.average_mode), count_mode=spec.count_mode, activation=spec.activation)
    return attrs


def _decode(attrs: dict) -> RectifySpec:
    pairs = {name: tuple(int(v) for v in attrs[name].split(",")) for name in PAIR_ATTRIBUTES}
    return RectifySpec(**pairs, average_mode=bool(attrs["average_mode"]), count_mode=attrs["count_mode"],
                       activation=attrs["activation"])


class _ErrorLog:
    """Errors of reference-op calls: an exception escaping a Python custom op aborts the whole process."""

    def __init__(self):
        self._lock = threading.Lock()
        self._messages: list[str] = []

    def add(self, message: str) -> None:
        with self._lock:
            self._messages.append(message)

    def take(self) -> list[str]:
        with self._lock:
            messages, self._messages = self._messages, []
        return messages


ERRORS = _ErrorLog()


def _compute(conv_out, conv_in_shape, bias=None, **attrs):
    try:
        return rectify_reference(conv_out, (int(conv_in_shape[-2]), int(conv_in_shape[-1])), _decode(attrs), bias)
    except Exception as err:  # noqa: BLE001 - must not escape into ONNX Runtime (it would abort); re-raised by run()
        ERRORS.add(f"{type(err).__name__}: {err}")
        return np.full(conv_out.shape, np.nan, dtype=np.float32)


@functools.cache
def register_reference_ops() -> str:
    """Register the reference ops with onnxruntime-extensions (once); returns its custom-op library path."""
    from onnxruntime_extensions import PyCustomOpDef, get_library_path, onnx_op

    attrs = {name: PyCustomOpDef.dt_string for name in PAIR_ATTRIBUTES}
    attrs.update(average_mode=PyCustomOpDef.dt_int64, count_mode=PyCustomOpDef.dt_string,
                 activation=PyCustomOpDef.dt_string)
    for has_bias, op_type in REFERENCE_OPS.items():
        inputs = [PyCustomOpDef.dt_float, PyCustomOpDef.dt_int64] + ([PyCustomOpDef.dt_float] if has_bias else [])
        onnx_op(op_type=op_type, inputs=inputs, outputs=[PyCustomOpDef.dt_float], attrs=attrs)(_compute)
    return get_library_path()


def _reference_nodes(node: onnx.NodeProto, tag: str) -> list[onnx.NodeProto]:
    """The ONNX Runtime nodes that replace one RFConvRectify node."""
    if len(node.input) not in (2, 3) or not all(node.input) or len(node.output) != 1:
        raise ValueError(f"RFConvRectify node {node.name!r} must have inputs (conv_out, conv_in[, bias]) and "
                         f"one output, has {list(node.input)} -> {list(node.output)}")
    spec = RectifySpec.from_node_attributes({a.name: helper.get_attribute_value(a) for a in node.attribute})
    conv_out, conv_in = node.input[0], node.input[1]
    nodes = [helper.make_node("Cast", [conv_out], [f"{tag}/conv_out_f32"], to=onnx.TensorProto.FLOAT),
             helper.make_node("Shape", [conv_in], [f"{tag}/conv_in_shape"])]
    inputs = [f"{tag}/conv_out_f32", f"{tag}/conv_in_shape"]
    has_bias = len(node.input) == 3
    if has_bias:
        nodes.append(helper.make_node("Cast", [node.input[2]], [f"{tag}/bias_f32"], to=onnx.TensorProto.FLOAT))
        inputs.append(f"{tag}/bias_f32")
    nodes.append(helper.make_node(REFERENCE_OPS[has_bias], inputs, [f"{tag}/out_f32"], name=f"{tag}/reference",
                                  domain=REFERENCE_DOMAIN, **_encode(spec)))
    nodes.append(helper.make_node("CastLike", [f"{tag}/out_f32", conv_out], [node.output[0]]))
    return nodes


def for_onnxruntime(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` that ONNX Runtime can run: RFConvRectify nodes become the reference op.

    Raises ValueError when the model's default-domain opset is below 15 (CastLike is needed).
    """
    opsets = {o.domain: o.version for o in model.opset_import}
    if opsets.get("", opsets.get("ai.onnx", 0)) < MIN_OPSET:
        raise ValueError(f"running RFConvRectify on ONNX Runtime needs ONNX opset >= {MIN_OPSET}; the model has "
                         f"{opsets.get('', opsets.get('ai.onnx'))}: export with a newer opset")
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    nodes = []
    for index, node in enumerate(copy.graph.node):
        if node.op_type == PLUGIN_NAME and node.domain == PLUGIN_DOMAIN:
            nodes.extend(_reference_nodes(node, f"{node.name or 'rfconv_rectify'}#{index}"))
        else:
            nodes.append(node)
    copy.graph.ClearField("node")
    copy.graph.node.extend(nodes)
    imports = [o for o in copy.opset_import if o.domain not in (PLUGIN_DOMAIN, REFERENCE_DOMAIN)]
    imports.append(helper.make_opsetid(REFERENCE_DOMAIN, 1))
    copy.ClearField("opset_import")
    copy.opset_import.extend(imports)
    return copy


def session_options(options=None):
    """``options`` (or new ``onnxruntime.SessionOptions``) with the reference ops' library registered."""
    import onnxruntime as ort

    options = options or ort.SessionOptions()
    options.register_custom_ops_library(register_reference_ops())
    return options


class ReferenceSession:
    """An ``onnxruntime.InferenceSession`` whose ``run`` raises the reference op's errors.

    The op cannot raise through ONNX Runtime; it records the error and outputs NaN, and ``run``
    turns the record into a RuntimeError. Everything else is the wrapped session's.
    """

    def __init__(self, session):
        self.session = session

    def run(self, output_names, input_feed, run_options=None):
        ERRORS.take()
        outputs = self.session.run(output_names, input_feed, run_options)
        errors = ERRORS.take()
        if errors:
            raise RuntimeError("RFConvRectify reference op failed: " + "; ".join(dict.fromkeys(errors)))
        return outputs

    def __getattr__(self, name):
        return getattr(self.session, name)


def inference_session(model: onnx.ModelProto | str | os.PathLike, providers=("CPUExecutionProvider",)):
    """A :class:`ReferenceSession` for a plugin-mode model (a ModelProto or a path)."""
    import onnxruntime as ort

    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(os.fspath(model))
    return ReferenceSession(ort.InferenceSession(for_onnxruntime(model).SerializeToString(), session_options(),
                                                 providers=list(providers)))
