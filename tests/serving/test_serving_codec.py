"""KServe v2 codec and request checks, against tritonclient's own request encoder and response parser."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import tritonclient.http as triton_http

from exporter.serving.datatypes import KSERVE_TO_NUMPY, kserve_datatype, kserve_from_onnx, numpy_dtype
from exporter.serving.protocol import (
    RequestedOutput,
    RequestError,
    decode_request,
    encode_response,
    parse_header_length,
)
from exporter.serving.session import TensorSpec
from exporter.serving.validate import check_inputs, resolve_outputs

RNG = np.random.default_rng(0)


def _triton_request(arrays: dict[str, np.ndarray], binary: bool, outputs=None, request_id=""):
    """Body and header length as tritonclient itself encodes an infer request."""
    inputs = []
    for name, array in arrays.items():
        tensor = triton_http.InferInput(name, list(array.shape), kserve_datatype(array.dtype))
        tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)
    body, json_size = triton_http.InferenceServerClient.generate_request_body(
        inputs, outputs=outputs, request_id=request_id
    )
    return body, json_size


def test_datatype_tables_round_trip():
    for name, dtype in KSERVE_TO_NUMPY.items():
        assert numpy_dtype(name) == dtype
        assert kserve_datatype(dtype) == name
    assert kserve_from_onnx(onnx.TensorProto.FLOAT) == "FP32"
    assert kserve_from_onnx(onnx.TensorProto.FLOAT16) == "FP16"
    with pytest.raises(ValueError, match="BYTES"):
        numpy_dtype("BYTES")
    with pytest.raises(ValueError, match="STRING"):
        kserve_from_onnx(onnx.TensorProto.STRING)


@pytest.mark.parametrize("binary", [True, False])
def test_decodes_what_tritonclient_encodes(binary):
    arrays = {
        "image": RNG.standard_normal((2, 3, 4, 5)).astype(np.float32),
        "ids": RNG.integers(-(2**40), 2**40, size=(2, 7), dtype=np.int64),
        "half": RNG.standard_normal((2, 3)).astype(np.float16),
        "mask": RNG.integers(0, 2, size=(2, 4)).astype(np.bool_),
        "pixels": RNG.integers(0, 256, size=(2, 6), dtype=np.uint8),
    }
    want = [triton_http.InferRequestedOutput("logits", binary_data=True)]
    body, json_size = _triton_request(arrays, binary, outputs=want, request_id="r-7")
    header = None if json_size is None else str(json_size)
    request = decode_request(body, parse_header_length(header, len(body)))
    assert request.id == "r-7"
    assert list(request.inputs) == list(arrays)
    for name, array in arrays.items():
        assert request.inputs[name].dtype == array.dtype
        np.testing.assert_array_equal(request.inputs[name], array)
    assert request.outputs == (RequestedOutput("logits", True),)


def test_no_outputs_listed_means_all_in_binary_for_tritonclient():
    body, json_size = _triton_request({"x": np.ones((1, 2), np.float32)}, binary=True)
    request = decode_request(body, json_size)
    assert request.outputs is None and request.binary_output
    specs = [TensorSpec("a", "FP32", (-1, 2)), TensorSpec("b", "FP32", (-1,))]
    assert resolve_outputs(None, specs, True) == (RequestedOutput("a", True), RequestedOutput("b", True))


def test_nested_json_data_is_row_major():
    body = json.dumps({"inputs": [
        {"name": "x", "shape": [2, 3], "datatype": "INT32", "data": [[1, 2, 3], [4, 5, 6]]},
    ]}).encode()
    np.testing.assert_array_equal(decode_request(body, None).inputs["x"], np.arange(1, 7).reshape(2, 3))


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_parses_what_we_encode(binary):
    outputs = {
        "logits": RNG.standard_normal((3, 10)).astype(np.float32),
        "index": RNG.integers(0, 10, size=(3,), dtype=np.int64),
    }
    requested = (RequestedOutput("index", binary), RequestedOutput("logits", binary))
    body, header_length = encode_response("tiny", "1", "abc", outputs, requested)
    assert (header_length is None) == (not binary)
    result = triton_http.InferenceServerClient.parse_response_body(body, header_length=header_length)
    response = result.get_response()
    assert response["model_name"] == "tiny" and response["id"] == "abc"
    assert [o["name"] for o in response["outputs"]] == ["index", "logits"]
    for name, array in outputs.items():
        np.testing.assert_array_equal(result.as_numpy(name), array)


def _json(payload) -> bytes:
    return json.dumps(payload).encode()


FP32_2 = {"name": "x", "shape": [2], "datatype": "FP32"}


def _inputs(*entries, **extra) -> bytes:
    return _json({"inputs": list(entries), **extra})


BAD_BODIES = {  # id: (JSON-only body, what the message must say)
    "malformed-json": (b'{"inputs": [', "not valid JSON"),
    "json-array": (b"[1, 2]", "must be an object"),
    "no-inputs": (_json({"outputs": []}), "'inputs' list"),
    "input-without-name": (_inputs({"shape": [1]}), "string 'name'"),
    "unknown-datatype": (_inputs({**FP32_2, "datatype": "FP8", "data": [1, 2]}), "FP8"),
    "bad-shape": (_inputs({**FP32_2, "shape": [-2], "data": [1]}), "non-negative integers"),
    "data-count": (_inputs({**FP32_2, "data": [1, 2, 3]}), "has 3 values but shape [2] needs 2"),
    "ragged-data": (_inputs({**FP32_2, "shape": [2, 2], "data": [[1, 2], [3]]}), "regular list"),
    "no-data": (_inputs(FP32_2), "neither 'data' nor"),
    "duplicate-input": (_inputs(*[{**FP32_2, "data": [1, 2]}] * 2), "more than once"),
    "shared-memory": (_inputs({**FP32_2, "parameters": {"shared_memory_region": "r"}}), "shared-memory"),
    "classification": (
        _inputs({**FP32_2, "data": [1, 2]}, outputs=[{"name": "y", "parameters": {"classification": 3}}]),
        "classification",
    ),
    "binary-without-header": (
        _inputs({**FP32_2, "parameters": {"binary_data_size": 8}}) + b"\xff" * 8, "not UTF-8"
    ),
}


@pytest.mark.parametrize("body, message", BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_bad_bodies_name_the_problem(body, message):
    with pytest.raises(RequestError) as caught:
        decode_request(body, None)
    assert caught.value.status == 400
    assert message in caught.value.message


def _binary_body(declared: int, payload: bytes) -> tuple[bytes, int]:
    header = _json({"inputs": [{**FP32_2, "parameters": {"binary_data_size": declared}}]})
    return header + payload, len(header)


@pytest.mark.parametrize("declared, payload, message", [
    (8, b"\0" * 4, "runs past the end"),
    (4, b"\0" * 4, "needs 8"),
    (8, b"\0" * 12, "4 bytes of binary data"),
])
def test_binary_sections_must_add_up(declared, payload, message):
    body, header_length = _binary_body(declared, payload)
    with pytest.raises(RequestError, match=message):
        decode_request(body, header_length)


@pytest.mark.parametrize("value, message", [("abc", "integer"), ("0", "body has"), ("999", "body has")])
def test_header_length_is_checked(value, message):
    with pytest.raises(RequestError, match=message):
        parse_header_length(value, 10)


SPECS = [TensorSpec("image", "FP32", (-1, 3, 4, 4)), TensorSpec("scale", "FP32", (-1, 1))]


def _feeds(rows=2, **override):
    feeds = {"image": np.zeros((rows, 3, 4, 4), np.float32), "scale": np.ones((rows, 1), np.float32)}
    feeds.update(override)
    return {k: v for k, v in feeds.items() if v is not None}


@pytest.mark.parametrize("feeds, message", [
    (_feeds(scale=None), "missing input 'scale'"),
    (_feeds(extra=np.zeros(1, np.float32)), "unknown input 'extra'"),
    (_feeds(image=np.zeros((2, 3, 4, 4), np.float64)), "datatype FP64 but the model takes FP32"),
    (_feeds(image=np.zeros((2, 3, 4, 5), np.float32)), "shape [2,3,4,5] but the model takes [-1,3,4,4]"),
    (_feeds(image=np.zeros((3, 4, 4), np.float32)), "shape [3,4,4]"),
    (_feeds(image=np.zeros((0, 3, 4, 4), np.float32), scale=np.ones((0, 1), np.float32)), "is empty"),
    (_feeds(scale=np.ones((3, 1), np.float32)), "disagree on the batch size"),
    (_feeds(rows=9), "batch of 9 exceeds this server's max batch of 8"),
    (_feeds(scale=np.array([[np.nan], [np.inf]], np.float32)), "2 non-finite values"),
], ids=["missing", "unknown", "dtype", "shape", "rank", "empty", "batch-mismatch", "batch-too-big",
        "non-finite"])
def test_check_inputs_rejects(feeds, message):
    with pytest.raises(RequestError) as caught:
        check_inputs(feeds, SPECS, max_batch=8, max_batch_pixels=1 << 22, batchable=True, reject_non_finite=True)
    assert caught.value.status == 400
    assert message in caught.value.message


def test_check_inputs_orders_feeds_and_accepts_nan_unless_asked():
    feeds = _feeds(scale=np.array([[np.nan], [1.0]], np.float32))
    ordered = check_inputs(dict(reversed(feeds.items())), SPECS, max_batch=8, max_batch_pixels=1 << 22, batchable=True,
                           reject_non_finite=False)
    assert list(ordered) == ["image", "scale"]
    with pytest.raises(RequestError, match="unknown output 'nope'"):
        resolve_outputs((RequestedOutput("nope", False),), SPECS, False)
