"""The precision an ONNX file computes in: one rule, read by ``build`` (TensorRT) and ``compare``.

A strongly typed TensorRT network and ONNX Runtime both compute each Conv in its weights' type,
so the file's precision is the type of its Conv weights: ``"fp16"`` when all are float16,
``"fp32"`` when all are float32, ``"int8"`` when all come from ``DequantizeLinear`` of int8
constants (a Q/DQ file, as :mod:`exporter.quantize` writes), ``"mixed"`` when kinds differ. A
file without a Conv is judged the same way by its floating-point initializers (``"fp32"`` when
it has none).
"""

from __future__ import annotations

_NAMES = {1: "fp32", 10: "fp16", 3: "int8"}  # onnx.TensorProto.FLOAT, FLOAT16, INT8 (no onnx import needed)
_FLOATS = ("fp32", "fp16")


def file_precision(model) -> str:
    """``"fp32"``, ``"fp16"``, ``"int8"`` or ``"mixed"`` for an ``onnx.ModelProto`` (external data
    need not be loaded)."""
    types = {init.name: init.data_type for init in model.graph.initializer}
    dequantized = {node.output[0]: types.get(node.input[0]) for node in model.graph.node
                   if node.op_type == "DequantizeLinear"}
    conv_weights = {dequantized[node.input[1]] if node.input[1] in dequantized else types.get(node.input[1])
                    for node in model.graph.node if node.op_type == "Conv"}
    found = {_NAMES[t] for t in conv_weights if t in _NAMES}
    if not found:
        found = {_NAMES[t] for t in types.values() if t in _NAMES and _NAMES[t] in _FLOATS}
    if len(found) > 1:
        return "mixed"
    return found.pop() if found else "fp32"
