"""Inputs, outputs and precision of an ONNX file, read from the graph without creating a session.

Used where they are needed before (or instead of) ONNX Runtime: the Triton config, and the
TensorRT execution provider's optimization profile and int8 switch, which must be set when the
session is made.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from exporter.onnx.precision import file_precision
from exporter.serving.datatypes import kserve_from_onnx
from exporter.serving.session import TensorSpec, existing_file

STANDARD_DOMAINS = ("", "ai.onnx", "ai.onnx.ml", "com.microsoft")


def _spec(value_info) -> TensorSpec:
    tensor = value_info.type.tensor_type
    if not tensor.HasField("shape"):
        raise ValueError(f"ONNX tensor '{value_info.name}' has no shape; its rank must be known to serve it")
    dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim)
    return TensorSpec(value_info.name, kserve_from_onnx(tensor.elem_type), dims)


@dataclass(frozen=True)
class GraphSummary:
    """What serving needs of an ONNX graph: tensors in graph order (``-1`` for symbolic dims) and
    the file's precision (:func:`exporter.onnx.precision.file_precision`); ``custom_ops`` the
    ``domain.op`` of nodes outside ONNX Runtime's standard domains (a plugin-mode export's plugin)."""

    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    precision: str
    custom_ops: tuple[str, ...] = ()


def graph_summary(path: str | Path) -> GraphSummary:
    """Graph inputs (initializers excluded), outputs and precision; weights are not read."""
    import onnx

    path = existing_file(path, "ONNX model")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # noqa: BLE001 - protobuf decode errors have no common base
        raise ValueError(f"{path} is not a readable ONNX model: {err}") from err
    weights = {t.name for t in model.graph.initializer}
    inputs = [_spec(v) for v in model.graph.input if v.name not in weights]
    custom = sorted({f"{n.domain}.{n.op_type}" for n in model.graph.node if n.domain not in STANDARD_DOMAINS})
    return GraphSummary(inputs, [_spec(v) for v in model.graph.output], file_precision(model), tuple(custom))


def onnx_io(path: str | Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Graph inputs (initializers excluded) and outputs, ``-1`` for symbolic dims; weights are not read."""
    summary = graph_summary(path)
    return summary.inputs, summary.outputs
