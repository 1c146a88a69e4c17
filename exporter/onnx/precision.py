"""The precision an ONNX file computes in: one rule, read by ``build``, ``compare``, ``serve`` and ``triton``
(the TensorRT EP's precision switches follow it: :func:`exporter.backends.ort.tensorrt_ep_options`).

A strongly typed TensorRT network and ONNX Runtime both compute each Conv in its weights' type,
so the file's precision is the type of its Conv weights: ``"fp16"`` when all are float16,
``"fp32"`` when all are float32, ``"mixed"`` when both. A file with Q/DQ nodes is ``"int8"``
whatever its convs (as :mod:`exporter.quantize` writes it; the convs that ``--exclude`` left in
fp32 compute between int8 tensors). A file without a Conv is judged the same way by its
floating-point initializers (``"fp32"`` when it has none).
"""

from __future__ import annotations

_NAMES = {1: "fp32", 10: "fp16"}  # onnx.TensorProto.FLOAT, FLOAT16 (no onnx import needed)
_QDQ = ("QuantizeLinear", "DequantizeLinear")


def file_precision(model) -> str:
    """``"fp32"``, ``"fp16"``, ``"int8"`` or ``"mixed"`` for an ``onnx.ModelProto`` (external data
    need not be loaded)."""
    if any(node.op_type in _QDQ for node in model.graph.node):
        return "int8"
    types = {init.name: init.data_type for init in model.graph.initializer}
    conv_weights = {types.get(node.input[1]) for node in model.graph.node if node.op_type == "Conv"}
    found = {_NAMES[t] for t in conv_weights if t in _NAMES}
    if not found:
        found = {_NAMES[t] for t in types.values() if t in _NAMES}
    if len(found) > 1:
        return "mixed"
    return found.pop() if found else "fp32"

