"""Convert a float32 graph to float16 weights and activations.

TensorRT 11 has no FP16 builder flag: precision comes from the ONNX tensor types, so an fp16
engine needs an fp16 model. Every float32 initializer, intermediate tensor and float-typed
attribute (``Cast`` targets, ``ConstantOfShape`` values) becomes float16. With
``keep_io_types`` the graph inputs and outputs stay float32 behind ``Cast`` nodes, so callers
feed and read the same arrays as for the fp32 model.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs

FP16_MAX = float(np.finfo(np.float16).max)
# Inputs that the ONNX spec types as float32 whatever the data type (op -> input indices).
FLOAT32_ONLY_INPUTS = {"Resize": (1, 2), "Upsample": (1,)}


def _float32_only(tensor: gs.Tensor) -> bool:
    return any(
        i in FLOAT32_ONLY_INPUTS.get(node.op, ())
        for node in tensor.outputs
        for i, t in enumerate(node.inputs)
        if t is tensor
    )


def _convert_constant(constant: gs.Constant) -> None:
    values = constant.values
    peak = float(np.abs(values).max()) if values.size else 0.0
    if peak > FP16_MAX:
        raise ValueError(
            f"cannot export in fp16: initializer {constant.name!r} holds {peak:.3g}, beyond the "
            f"float16 range (+-{FP16_MAX:.0f}); export with precision='fp32'"
        )
    constant.values = values.astype(np.float16)


def _convert_attributes(node: gs.Node) -> None:
    if node.op == "Cast" and node.attrs.get("to") == onnx.TensorProto.FLOAT:
        node.attrs["to"] = onnx.TensorProto.FLOAT16
    for name, value in node.attrs.items():
        if isinstance(value, gs.Constant) and value.values.dtype == np.float32:
            node.attrs[name] = gs.Constant(value.name, value.values.astype(np.float16))


def _cast(name: str, source: gs.Tensor, target: gs.Tensor, to: int) -> gs.Node:
    return gs.Node("Cast", name, attrs={"to": to}, inputs=[source], outputs=[target])


def convert_to_fp16(graph: gs.Graph, keep_io_types: bool = True) -> gs.Graph:
    """Convert ``graph`` in place and return it."""
    io = {id(t) for t in graph.inputs + graph.outputs} if keep_io_types else set()
    for tensor in graph.tensors().values():
        if tensor.dtype != np.float32 or id(tensor) in io:
            continue
        if isinstance(tensor, gs.Constant):
            if not _float32_only(tensor):
                _convert_constant(tensor)
        else:
            tensor.dtype = np.float16
    for node in graph.nodes:
        _convert_attributes(node)
    if keep_io_types:
        for graph_input in [t for t in graph.inputs if t.dtype == np.float32]:
            half = gs.Variable(f"{graph_input.name}_fp16", np.float16, graph_input.shape)
            for consumer in list(graph_input.outputs):
                for i, t in enumerate(consumer.inputs):
                    if t is graph_input:
                        consumer.inputs[i] = half
            graph.nodes.append(_cast(f"{graph_input.name}_to_fp16", graph_input, half, onnx.TensorProto.FLOAT16))
        for graph_output in [t for t in graph.outputs if t.dtype == np.float32]:
            half = gs.Variable(f"{graph_output.name}_fp16", np.float16, graph_output.shape)
            producer = graph_output.inputs[0]
            producer.outputs[producer.outputs.index(graph_output)] = half
            for consumer in list(graph_output.outputs):
                for i, t in enumerate(consumer.inputs):
                    if t is graph_output:
                        consumer.inputs[i] = half
            graph.nodes.append(_cast(f"{graph_output.name}_to_fp32", half, graph_output, onnx.TensorProto.FLOAT))
    return graph.cleanup().toposort()
