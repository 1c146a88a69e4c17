"""KServe v2 inference protocol: decode infer requests, encode infer responses.

A request body is a JSON header, optionally followed by raw tensor bytes (the *binary tensor
data* extension that Triton and ``tritonclient`` use): with the HTTP header
``Inference-Header-Content-Length: L`` the first ``L`` bytes are the JSON, and every input whose
``parameters.binary_data_size`` is set takes that many bytes of the rest, in input order, as
little-endian row-major data. Without it the whole body is JSON and each input carries ``data``,
a flat or nested list in row-major order. Responses use the same layout: outputs asked for in
binary (``parameters.binary_data`` per output, or ``parameters.binary_data_output`` for the whole
request) follow the JSON header, whose length goes into the same HTTP header.

A body may be compressed (``Content-Encoding: gzip`` or ``deflate``; anything else is 415);
:func:`decompress` inflates it with a bound on the output, so a small compressed body cannot
grow past the server's limit. JSON numbers are strict: a numeric datatype takes JSON numbers only
(``BOOL`` takes ``true``/``false`` only), never strings, ``null`` or values outside its range.

Output values that JSON cannot carry (NaN, +-Inf) are never written as bare ``NaN`` tokens: an
output asked for as JSON that holds one is sent as binary tensor data instead (its entry has
``parameters.binary_data_size``), which a strict JSON parser reads as valid JSON and
``tritonclient`` decodes to the exact values.

Everything wrong with a request raises :class:`RequestError` with an HTTP status and a message
that names the field to fix.
"""

from __future__ import annotations

import json
import math
import zlib
from dataclasses import dataclass

import numpy as np

from exporter.serving.datatypes import kserve_datatype, numpy_dtype

HEADER_LENGTH = "Inference-Header-Content-Length"
BINARY_EXTENSION = "binary_tensor_data"
ENCODINGS = ("identity", "gzip", "deflate")
MAX_RANK = 32
MAX_ELEMENTS = 2**63 // 16  # no tensor holds more, whatever its datatype (numpy counts bytes in int64)
RETRY_AFTER_S = 1


class RequestError(Exception):
    """A client error: ``status`` is the HTTP status (4xx, or 503 to retry), ``message`` says what to
    change; ``headers`` are added to the answer (``Retry-After`` on 503); ``grpc_code`` (a
    ``grpc.StatusCode`` name) overrides the gRPC status the HTTP status maps to."""

    def __init__(self, message: str, status: int = 400, headers: dict[str, str] | None = None,
                 grpc_code: str | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.headers = headers or {}
        self.grpc_code = grpc_code


def overloaded(message: str) -> RequestError:
    """The 503 a client should retry: the queue is full, the request waited too long, or shutdown."""
    return RequestError(message, 503, {"Retry-After": str(RETRY_AFTER_S)})


def too_large(what: str, limit: int, flag: str) -> RequestError:
    """The 413 for a body (or its JSON part) over ``limit`` bytes; ``flag`` names the parameter."""
    return RequestError(f"{what} is larger than this server's limit of {limit} bytes ({flag})", 413)


def content_encoding(value: str | None) -> str:
    """The body's ``Content-Encoding`` (``identity`` when absent); 415 for one this server cannot decode."""
    encoding = (value or "identity").strip().lower()
    if encoding not in ENCODINGS:
        raise RequestError(
            f"Content-Encoding {value!r} is not supported; send one of {', '.join(ENCODINGS)}", 415
        )
    return encoding


def decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """``body`` inflated per ``encoding`` (from :func:`content_encoding`), at most ``limit`` bytes.

    413 once the output would pass ``limit`` (inflation stops there: a bomb costs ``limit`` bytes),
    400 for corrupt or truncated data. ``deflate`` accepts zlib-wrapped and raw streams.
    """
    if encoding == "identity":
        return body
    wbits = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}[encoding]
    if encoding == "deflate" and body[:1] and body[0] & 0x0F != 8:
        wbits = -zlib.MAX_WBITS  # raw deflate, no zlib header
    inflater = zlib.decompressobj(wbits)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as err:
        raise RequestError(f"the {encoding} body is corrupt: {err}") from err
    if len(data) > limit:
        raise too_large(f"the {encoding} body, decompressed,", limit, "--max-body-mb")
    if not inflater.eof or inflater.unused_data:
        raise RequestError(f"the {encoding} body is truncated or has bytes after its end")
    return data


@dataclass(frozen=True)
class RequestedOutput:
    """One output the client wants back, and whether as raw bytes (``binary``) or a JSON list."""

    name: str
    binary: bool


@dataclass(frozen=True)
class InferRequest:
    """A decoded infer request.

    ``inputs`` maps input names to arrays in request order. ``outputs`` is None when the client
    listed none (then every model output is returned, in binary when ``binary_output`` is set).
    ``timeout_us`` is the request's own queue timeout in microseconds (``parameters.timeout``, as
    ``tritonclient``'s ``infer(timeout=...)`` sends it), None when it set none.
    """

    id: str | None
    inputs: dict[str, np.ndarray]
    outputs: tuple[RequestedOutput, ...] | None
    binary_output: bool
    timeout_us: int | None = None


def parse_header_length(value: str | None, body_size: int) -> int | None:
    """The JSON header length from ``Inference-Header-Content-Length`` (None when absent)."""
    if value is None:
        return None
    try:
        length = int(value)
    except ValueError as err:
        raise RequestError(f"{HEADER_LENGTH} must be an integer byte count, got {value!r}") from err
    if not 0 < length <= body_size:
        raise RequestError(f"{HEADER_LENGTH} is {length} but the body has {body_size} bytes")
    return length


def _not_json(token: str):
    raise RequestError(f"request JSON has {token}, which is not JSON; non-finite inputs need binary data")


def _load_json(data: bytes) -> dict:
    try:
        header = json.loads(data, parse_constant=_not_json)
    except RecursionError as err:
        raise RequestError("request JSON is nested too deeply") from err
    except UnicodeDecodeError as err:
        raise RequestError(
            f"request JSON is not UTF-8 text; binary tensor data needs the {HEADER_LENGTH} header"
        ) from err
    except json.JSONDecodeError as err:
        raise RequestError(f"request body is not valid JSON: {err}") from err
    if not isinstance(header, dict):
        raise RequestError("request JSON must be an object with an 'inputs' list")
    return header


def tensor_shape(shape, name: str) -> tuple[int, ...]:
    """An input's shape as sent (a list of ints): non-negative dims, at most ``MAX_RANK`` of them,
    whose product (zeros counted as one) is at most ``MAX_ELEMENTS``; 400 otherwise."""
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise RequestError(f"input '{name}': 'shape' must be a list of non-negative integers, got {shape!r}")
    if len(shape) > MAX_RANK:
        raise RequestError(f"input '{name}': 'shape' has {len(shape)} dimensions; at most {MAX_RANK} are served")
    if math.prod(max(d, 1) for d in shape) > MAX_ELEMENTS:  # zeros aside: numpy's reshape overflows past it
        raise RequestError(f"input '{name}': 'shape' {shape} has more elements than any tensor can hold "
                           f"(at most {MAX_ELEMENTS} per dimension product)")
    return tuple(shape)


def _parameters(entry: dict, where: str) -> dict:
    params = entry.get("parameters", {})
    if not isinstance(params, dict):
        raise RequestError(f"{where}: 'parameters' must be an object")
    if "shared_memory_region" in params:
        raise RequestError(f"{where}: shared-memory tensors are not supported by this server")
    return params


def _flag(params: dict, key: str, default: bool, where: str) -> bool:
    value = params.get(key, default)
    if type(value) is not bool:
        raise RequestError(f"{where}: parameter '{key}' must be true or false, got {value!r}")
    return value


def _json_values(data, dtype: np.dtype, name: str) -> np.ndarray:
    """A flat or nested JSON list as ``dtype``: JSON numbers only (booleans only for BOOL), in range."""
    if not isinstance(data, list):
        raise RequestError(f"input '{name}': 'data' must be a list")
    if data and isinstance(data[0], list):
        try:
            data = np.array(data, dtype=object).ravel().tolist()  # nested: flattened (ragged stays lists)
        except ValueError as err:
            raise RequestError(f"input '{name}': 'data' is not a regular nested list ({err})") from err
    allowed = {bool} if dtype.kind == "b" else {int} if dtype.kind in "iu" else {int, float}
    wrong = set(map(type, data)) - allowed
    if wrong:
        kind = "true/false" if dtype.kind == "b" else "JSON numbers"
        found = ", ".join(sorted("null" if t is type(None) else t.__name__ for t in wrong))
        raise RequestError(
            f"input '{name}': 'data' must be a regular list of {kind} for {kserve_datatype(dtype)}, found {found}"
        )
    wide = {"f": np.float64, "u": np.uint64, "i": np.int64}.get(dtype.kind, dtype)
    info = np.finfo(dtype) if dtype.kind == "f" else np.iinfo(dtype) if dtype.kind in "iu" else None
    try:
        values = np.array(data, dtype=wide)
        inside = info is None or not values.size or info.min <= values.min() and values.max() <= info.max
    except OverflowError:  # beyond 64 bits, or an integer beyond any float
        inside = False
    if not inside:
        raise RequestError(
            f"input '{name}': 'data' holds values outside the range of {kserve_datatype(dtype)} "
            f"([{info.min:g}, {info.max:g}])"
        )
    return values.astype(dtype, copy=False)


def _json_tensor(data, dtype: np.dtype, shape: tuple[int, ...], name: str) -> np.ndarray:
    values = _json_values(data, dtype, name)
    count = math.prod(shape)
    if values.size != count:
        raise RequestError(
            f"input '{name}': 'data' has {values.size} values but shape {list(shape)} needs {count}"
        )
    return values.reshape(shape)


def binary_tensor(chunk: bytes, dtype: np.dtype, shape: tuple[int, ...], name: str,
                  source: str = "binary_data_size") -> np.ndarray:
    """Raw little-endian row-major bytes as an array; 400 naming ``source`` when the size is wrong."""
    expected = math.prod(shape) * dtype.itemsize
    if len(chunk) != expected:
        raise RequestError(
            f"input '{name}': {source} is {len(chunk)} bytes but shape {list(shape)} of "
            f"{kserve_datatype(dtype)} needs {expected}"
        )
    return np.frombuffer(chunk, dtype=dtype.newbyteorder("<")).astype(dtype, copy=False).reshape(shape)


def _decode_inputs(entries, binary: memoryview) -> dict[str, np.ndarray]:
    if not isinstance(entries, list) or not entries:
        raise RequestError("request JSON needs a non-empty 'inputs' list")
    inputs: dict[str, np.ndarray] = {}
    offset = 0
    for entry in entries:
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str):
            raise RequestError("every entry of 'inputs' must be an object with a string 'name'")
        if name in inputs:
            raise RequestError(f"input '{name}' appears more than once")
        try:
            dtype = numpy_dtype(entry.get("datatype"))
        except ValueError as err:
            raise RequestError(f"input '{name}': {err}") from err
        shape = tensor_shape(entry.get("shape"), name)
        size = _parameters(entry, f"input '{name}'").get("binary_data_size")
        if size is not None and "data" in entry:
            raise RequestError(f"input '{name}' has both 'data' and binary_data_size; send one")
        if size is None:
            if "data" not in entry:
                raise RequestError(f"input '{name}' has neither 'data' nor a binary_data_size parameter")
            inputs[name] = _json_tensor(entry["data"], dtype, shape, name)
            continue
        if type(size) is not int or size < 0:
            raise RequestError(f"input '{name}': binary_data_size must be a non-negative integer")
        if offset + size > len(binary):
            raise RequestError(
                f"input '{name}': binary_data_size {size} runs past the end of the binary data "
                f"({len(binary) - offset} bytes left)"
            )
        inputs[name] = binary_tensor(binary[offset:offset + size], dtype, shape, name)
        offset += size
    if offset != len(binary):
        raise RequestError(
            f"the body has {len(binary) - offset} bytes of binary data that no input's "
            "binary_data_size claims"
        )
    return inputs


def _decode_outputs(entries, default_binary: bool) -> tuple[RequestedOutput, ...] | None:
    if entries is None:
        return None
    if not isinstance(entries, list):
        raise RequestError("'outputs' must be a list of {\"name\": ...} objects")
    outputs = []
    for entry in entries:
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str):
            raise RequestError("every entry of 'outputs' must be an object with a string 'name'")
        params = _parameters(entry, f"output '{name}'")
        if params.get("classification"):
            raise RequestError(f"output '{name}': the classification extension is not supported")
        outputs.append(RequestedOutput(name, _flag(params, "binary_data", default_binary, f"output '{name}'")))
    if len({o.name for o in outputs}) != len(outputs):
        raise RequestError("'outputs' names an output more than once")
    return tuple(outputs)


def decode_request(body: bytes, header_length: int | None) -> InferRequest:
    """Decode an infer request body; ``header_length`` from :func:`parse_header_length`."""
    view = memoryview(body)
    split = len(body) if header_length is None else header_length
    header = _load_json(view[:split].tobytes())
    request_id = header.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise RequestError("'id' must be a string")
    params = _parameters(header, "request")
    binary_output = _flag(params, "binary_data_output", False, "request")
    timeout_us = params.get("timeout")
    if timeout_us is not None and (type(timeout_us) is not int or timeout_us < 0):
        raise RequestError(f"request: parameter 'timeout' must be a non-negative integer of microseconds, "
                           f"got {timeout_us!r}")
    return InferRequest(
        id=request_id,
        inputs=_decode_inputs(header.get("inputs"), view[split:]),
        outputs=_decode_outputs(header.get("outputs"), binary_output),
        binary_output=binary_output,
        timeout_us=timeout_us,
    )


def encode_response(
    model_name: str,
    model_version: str,
    request_id: str | None,
    outputs: dict[str, np.ndarray],
    requested: tuple[RequestedOutput, ...],
) -> tuple[bytes, int | None]:
    """Response body and JSON header length (None when every output is in the JSON).

    ``requested`` lists the outputs to send, in order; each must be a key of ``outputs``.
    """
    header: dict = {"model_name": model_name, "model_version": model_version}
    if request_id is not None:
        header["id"] = request_id
    tensors, chunks = [], []
    for want in requested:
        array = outputs[want.name]
        tensor = {"name": want.name, "datatype": kserve_datatype(array.dtype), "shape": list(array.shape)}
        if want.binary or (array.dtype.kind == "f" and not np.isfinite(array).all()):
            raw = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
            tensor["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            tensor["data"] = array.ravel().tolist()
        tensors.append(tensor)
    header["outputs"] = tensors
    encoded = json.dumps(header, separators=(",", ":")).encode()
    if not chunks:
        return encoded, None
    return b"".join([encoded, *chunks]), len(encoded)


def message_json(message) -> dict:
    """A protobuf message (Triton's ``ModelConfig``, ``ModelStatistics``...) as Triton's HTTP API
    writes it: proto field names, every scalar, list and map field (defaults too, as Triton's
    ``always_print_primitive_fields``), sub-messages when set, integers as JSON numbers (protobuf's
    own JSON mapping writes 64-bit ones as strings), enums by name."""
    from google.protobuf.descriptor import FieldDescriptor

    def value(field, item):
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            return message_json(item)
        if field.type == FieldDescriptor.TYPE_ENUM:
            return field.enum_type.values_by_number[item].name
        return item

    result = {}
    for field in message.DESCRIPTOR.fields:
        item = getattr(message, field.name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            result[field.name] = {key: value(value_field, v) for key, v in item.items()}
        elif field.is_repeated:
            result[field.name] = [value(field, v) for v in item]
        elif field.type != FieldDescriptor.TYPE_MESSAGE or message.HasField(field.name):
            result[field.name] = value(field, item)
    return result


def error_body(message: str) -> bytes:
    """The KServe v2 error response body: ``{"error": message}``."""
    return json.dumps({"error": message}).encode()
