"""The layered model on disk: the file with every rectified layer's tensor as an extra output.

A comparison runs the file with each rectified conv's output as an extra output
(:func:`~exporter.comparison.layerwise.with_layer_outputs`). Writing that model must not cost
another copy of the weights: :func:`write_layered` hard-links the original file and writes a
small model whose weights are external data at their offsets in it (read off the protobuf wire
format by :func:`initializer_offsets`, nothing parsed or copied), or else appends the outputs to
the file's bytes (:func:`layer_outputs_suffix`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx

from exporter.backends import availability
from exporter.backends.runners import custom_ops
from exporter.wire import read_varint


def uses_external_data(model: onnx.ModelProto) -> bool:
    """Whether an initializer or a main-graph constant keeps its data in another file."""
    tensors = [*model.graph.initializer, *(a.t for n in model.graph.node for a in n.attribute if a.HasField("t"))]
    return any(t.data_location == onnx.TensorProto.EXTERNAL for t in tensors)


def layer_outputs_suffix(model: onnx.ModelProto, layered: onnx.ModelProto) -> bytes:
    """Bytes that, appended to the serialized ``model``, make it ``layered`` (its
    :func:`~exporter.comparison.layerwise.with_layer_outputs` copy).

    A serialized ``ModelProto`` holding only the outputs ``layered`` adds: protobuf parses
    concatenated messages as one, merging ``graph`` and appending to its repeated ``output``.
    Writing ``file bytes + suffix`` spares serializing the weights again.
    """
    added = layered.graph.output[len(model.graph.output):]
    return onnx.ModelProto(graph=onnx.GraphProto(output=added)).SerializeToString()



BY_REFERENCE_MIN_BYTES = 1024
"""Initializers of at least this many bytes are read from the original file by
:func:`layered_by_reference`; smaller ones stay in the layered model."""

_MODEL_GRAPH, _GRAPH_INITIALIZER, _TENSOR_NAME, _TENSOR_RAW_DATA = 7, 5, 8, 9  # onnx.proto field numbers


def _length_delimited(data: bytes, start: int, end: int):
    """``(field number, start, end)`` of every length-delimited field of the message in
    ``data[start:end]``; other fields are skipped."""
    pos = start
    while pos < end:
        key, pos = read_varint(data, pos)
        wire = key & 7
        if wire == 0:
            _, pos = read_varint(data, pos)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            size, pos = read_varint(data, pos)
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
    """A copy of ``layered`` (a :func:`~exporter.comparison.layerwise.with_layer_outputs` model)
    whose initializers of at least :data:`BY_REFERENCE_MIN_BYTES` are external data at their
    :func:`initializer_offsets` in
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



LOADERS_REFUSING_LINKS = ("onnx-ref", "trt", "ort-trt")
"""Backends whose ONNX loader reads the layered model's weights other than ONNX Runtime's own:
``onnx``'s (onnx-ref, and the plugin's reference session for plugin nodes) refuses external data
in a hard-linked file, and TensorRT's parser (trt, and ONNX Runtime's TensorRT EP) is not
verified here, so they get the layered file whole."""


def links_readable(backends: Sequence[str], run_model: onnx.ModelProto) -> bool:
    """Whether every backend that can run here reads a layered model whose weights are external
    data in a hard link to the original file (see :data:`LOADERS_REFUSING_LINKS`)."""
    if custom_ops(run_model):
        return False
    return not any(_can_run(name) for name in backends if name in LOADERS_REFUSING_LINKS)


def _can_run(backend: str) -> bool:
    """Whether ``backend`` of :data:`LOADERS_REFUSING_LINKS` is installed here (onnx-ref always is)."""
    if backend == "trt":
        return availability.tensorrt().available
    if backend == "ort-trt":
        return availability.ort_provider(availability.ORT_PROVIDERS[backend], backend).available
    return True


def write_layered(onnx_path: Path, serialized: bytes, onnx_model, run_model, workdir: Path, backends,
                   external: bool) -> Path:
    """Write ``run_model`` (``onnx_model`` with every layer's tensor as an output) into ``workdir``.

    Cheapest first: when the backends read it (:func:`links_readable`) and the file can be
    hard-linked into ``workdir``, a small model whose weights are external data at their offsets
    in the link (:func:`layered_by_reference`), so the weights are not written again; otherwise
    the file's bytes and a suffix declaring the outputs (:func:`layer_outputs_suffix`); a file
    with external data (its weights read already) is saved whole. Returns the path written.
    """
    path = workdir / "layers.onnx"
    if external:
        onnx.save(run_model, str(path))
        return path
    if links_readable(backends, run_model):
        weights = workdir / "weights.onnx"
        try:
            os.link(onnx_path, weights)
        except OSError:  # another file system, or links not allowed: the copy below
            pass
        else:
            by_reference = layered_by_reference(run_model, initializer_offsets(serialized), weights.name)
            path.write_bytes(by_reference.SerializeToString())
            return path
    with open(path, "wb") as layered:  # two writes: no 100 MB concatenation
        layered.write(serialized)
        layered.write(layer_outputs_suffix(onnx_model, run_model))
    return path


