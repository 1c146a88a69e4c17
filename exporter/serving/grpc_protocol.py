"""KServe v2 over gRPC: ``ModelInferRequest`` -> :class:`~.protocol.InferRequest`, outputs -> ``ModelInferResponse``.

The messages are Triton's own (``tritonclient.grpc.service_pb2``, the ``inference`` package of
``grpc_service.proto``). Input data comes either as ``raw_input_contents`` (one little-endian,
row-major byte string per input, in input order: what ``tritonclient.grpc`` sends) or as typed
``contents`` (``fp32_contents``, ``int64_contents``...); outputs always go back as
``raw_output_contents``, so NaN and Inf arrive exact. Everything wrong with a request raises
:class:`~.protocol.RequestError` with the message the HTTP front end gives for the same mistake.
"""

from __future__ import annotations

import math

import numpy as np

from exporter.serving.datatypes import kserve_datatype, numpy_dtype
from exporter.serving.protocol import (
    InferRequest,
    RequestedOutput,
    RequestError,
    binary_tensor,
    tensor_shape,
)
from exporter.serving.session import TensorSpec
from exporter.serving.stats import service_pb2
from exporter.serving.validate import check_declared
from exporter.wire import read_varint

CONTENTS_FIELD = {  # KServe datatype -> the InferTensorContents field that carries it (FP16 has none)
    "BOOL": "bool_contents",
    "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
}


def _refuse_shared_memory(parameters, where: str) -> None:
    if any(key.startswith("shared_memory") for key in parameters):
        raise RequestError(f"{where}: shared-memory tensors are not supported by this server")


FIXED_WIDTH = {"fp32_contents": "<f4", "fp64_contents": "<f8"}  # packed as raw little-endian bytes on the wire


def _packed_bytes(contents, field: str) -> memoryview:
    """The payload of ``contents.<field>`` (a packed fixed-width repeated field) as bytes, read from
    the serialized message: no Python number is made per value."""
    data = contents.SerializeToString()
    number = contents.DESCRIPTOR.fields_by_name[field].number
    tag, offset = read_varint(data, 0)
    if tag != (number << 3 | 2):  # only this field is set (checked above), packed
        raise RequestError(f"contents.{field} is not packed; send raw_input_contents")
    length, offset = read_varint(data, offset)
    return memoryview(data)[offset:offset + length]


def _typed_contents(tensor, dtype: np.dtype, shape: tuple[int, ...], name: str,
                    max_varint_values: int | None = None) -> np.ndarray:
    field = CONTENTS_FIELD.get(tensor.datatype)
    set_fields = [f.name for f, _ in tensor.contents.ListFields()]
    if field is None:
        raise RequestError(f"input '{name}': {tensor.datatype} has no typed contents field; send raw_input_contents")
    if set_fields not in ([], [field]):
        raise RequestError(f"input '{name}': datatype {tensor.datatype} is carried in contents.{field}, "
                           f"but the request set contents.{', contents.'.join(set_fields)}")
    values = getattr(tensor.contents, field)
    count = math.prod(shape)
    if len(values) != count:
        raise RequestError(
            f"input '{name}': contents.{field} has {len(values)} values but shape {list(shape)} needs {count}"
        )
    if field in FIXED_WIDTH:
        if not count:
            return np.zeros(shape, dtype)
        raw = _packed_bytes(tensor.contents, field)
        return np.frombuffer(raw, dtype=FIXED_WIDTH[field]).astype(dtype).reshape(shape)
    if max_varint_values is not None and count > max_varint_values:
        raise RequestError(
            f"input '{name}': contents.{field} has {count} values, more than this server converts from typed "
            f"contents ({max_varint_values}: --max-json-mb / 8 bytes); send raw_input_contents", 413
        )
    wide = np.array(values, dtype=np.bool_ if dtype.kind == "b" else np.uint64 if dtype.kind == "u" else np.int64)
    if dtype.kind in "iu" and wide.size:
        info = np.iinfo(dtype)
        if wide.min() < info.min or wide.max() > info.max:
            raise RequestError(f"input '{name}': contents.{field} holds values outside the range of "
                               f"{tensor.datatype} ([{info.min}, {info.max}])")
    return wide.astype(dtype).reshape(shape)


def decode_infer_request(message, specs: list[TensorSpec] | None = None,
                         max_typed_bytes: int | None = None) -> InferRequest:
    """A ``ModelInferRequest`` as the service's :class:`~.protocol.InferRequest`.

    ``parameters.timeout`` (``int64_param``, microseconds: ``tritonclient.grpc``'s
    ``infer(timeout=...)``) caps the request's queue wait as over HTTP. With the model's input
    ``specs``, typed ``contents`` are checked against them (name, datatype, shape) before any value
    is converted; FP32/FP64 contents are read from the packed wire bytes, other typed contents
    (converted value by value) are refused with 413 above ``max_typed_bytes / 8`` values.
    """
    _refuse_shared_memory(message.parameters, "request")
    timeout_us = None
    if "timeout" in message.parameters:
        timeout = message.parameters["timeout"]
        if timeout.WhichOneof("parameter_choice") not in ("int64_param", "uint64_param") or (
                getattr(timeout, timeout.WhichOneof("parameter_choice")) < 0):
            raise RequestError("request: parameter 'timeout' must be a non-negative integer of microseconds")
        timeout_us = getattr(timeout, timeout.WhichOneof("parameter_choice"))
    if not message.inputs:
        raise RequestError("the request needs at least one input")
    raw = message.raw_input_contents
    if raw and len(raw) != len(message.inputs):
        raise RequestError(f"the request has {len(message.inputs)} inputs but {len(raw)} raw_input_contents; "
                           "send one per input, in order, or none")
    inputs: dict[str, np.ndarray] = {}
    for index, tensor in enumerate(message.inputs):
        name = tensor.name
        if name in inputs:
            raise RequestError(f"input '{name}' appears more than once")
        _refuse_shared_memory(tensor.parameters, f"input '{name}'")
        try:
            dtype = numpy_dtype(tensor.datatype)
        except ValueError as err:
            raise RequestError(f"input '{name}': {err}") from err
        shape = tensor_shape(list(tensor.shape), name)
        if raw:
            if tensor.HasField("contents"):
                raise RequestError(f"input '{name}' has both contents and raw_input_contents; send one")
            inputs[name] = binary_tensor(raw[index], dtype, shape, name, "raw_input_contents")
        else:
            if specs is not None:
                check_declared(name, tensor.datatype, shape, specs)
            limit = None if max_typed_bytes is None else max_typed_bytes // 8
            inputs[name] = _typed_contents(tensor, dtype, shape, name, limit)
    outputs = []
    for entry in message.outputs:
        _refuse_shared_memory(entry.parameters, f"output '{entry.name}'")
        if "classification" in entry.parameters:
            raise RequestError(f"output '{entry.name}': the classification extension is not supported")
        outputs.append(RequestedOutput(entry.name, True))
    if len({o.name for o in outputs}) != len(outputs):
        raise RequestError("'outputs' names an output more than once")
    return InferRequest(message.id or None, inputs, tuple(outputs) or None, True, timeout_us)


def encode_infer_response(model_name: str, model_version: str, request_id: str | None, outputs: dict,
                          requested: tuple[RequestedOutput, ...]):
    """The ``ModelInferResponse`` carrying ``requested`` outputs, in order, as raw little-endian bytes."""
    response = service_pb2().ModelInferResponse(model_name=model_name, model_version=model_version,
                                                id=request_id or "")
    for want in requested:
        array = outputs[want.name]
        response.outputs.add(name=want.name, datatype=kserve_datatype(array.dtype), shape=array.shape)
        response.raw_output_contents.append(
            np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
        )
    return response
