"""The gRPC front end on loopback: tritonclient.grpc (sync, asyncio, streaming) against in-process ONNX
Runtime; metadata, config and statistics equal to HTTP's; every bad-request class of the HTTP tests
gets its gRPC status; overload, deadlines and model failures.

Expected outputs come from a separate ONNX Runtime session on the same file; crafted requests are
built with Triton's own protobuf messages and sent through its generated stub.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.grpc.aio as triton_grpc_aio
import tritonclient.http as triton_http
from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2, service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from exporter.serving.server import BackgroundServer, load_service
from exporter.serving.service import InferenceService, ServeConfig
from exporter.serving.triton_repo import write_repository
from tests.helpers.serving_models import IMAGE_SHAPE, tiny_models
from tests.serving.test_serving_abuse import GatedModel
from tests.serving.test_serving_server import MAX_BODY_MB, images

TIMEOUT = 30.0
PIXELS = int(np.prod(IMAGE_SHAPE))


@pytest.fixture(scope="module")
def server():
    config = ServeConfig(name="tiny", max_batch=8, max_delay_ms=5.0, reject_non_finite=True, max_body_mb=MAX_BODY_MB)
    with BackgroundServer(load_service(tiny_models().dynamic, config), grpc_port=0) as running:
        yield running


def _input(x: np.ndarray, datatype: str = "FP32", name: str = "input"):
    tensor = triton_grpc.InferInput(name, list(x.shape), datatype)
    tensor.set_data_from_numpy(x)
    return tensor


@pytest.mark.parametrize("rows", [1, 4])
def test_sync_client_matches_in_process_onnxruntime(server, reference, rows):
    client = triton_grpc.InferenceServerClient(server.grpc_url)
    x = images(rows, seed=rows)
    result = client.infer("tiny", [_input(x)], outputs=[triton_grpc.InferRequestedOutput("logits")],
                          request_id=f"sync-{rows}", model_version="1")
    assert result.get_response().id == f"sync-{rows}"
    np.testing.assert_allclose(result.as_numpy("logits"), reference(x), rtol=1e-5, atol=1e-6)
    gzipped = client.infer("tiny", [_input(x)], compression_algorithm="gzip")
    np.testing.assert_allclose(gzipped.as_numpy("logits"), reference(x), rtol=1e-5, atol=1e-6)
    client.close()


def test_asyncio_client_concurrent_batch_1_and_4_are_batched_and_correct(server, reference):
    inputs = [images(1 if i % 2 else 4, seed=50 + i) for i in range(16)]
    before = server.service.batcher.stats()

    async def main():
        client = triton_grpc_aio.InferenceServerClient(server.grpc_url)
        try:
            assert await client.is_server_ready() and await client.is_model_ready("tiny")
            results = await asyncio.gather(*(client.infer("tiny", [_input(x)], request_id=str(i))
                                              for i, x in enumerate(inputs)))
        finally:
            await client.close()
        return results

    results = asyncio.run(main())
    for i, (x, result) in enumerate(zip(inputs, results, strict=True)):
        assert result.get_response().id == str(i)
        np.testing.assert_allclose(result.as_numpy("logits"), reference(x), rtol=1e-5, atol=1e-6)
    after = server.service.batcher.stats()
    assert after.requests - before.requests == 16
    assert after.runs - before.runs < 16, "the server never batched two gRPC requests together"


def test_streaming_infer_answers_every_request_and_reports_errors_on_the_stream(server, reference):
    client = triton_grpc.InferenceServerClient(server.grpc_url)
    answers: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    inputs = {f"s{i}": images(1 if i % 3 else 4, seed=80 + i) for i in range(12)}
    try:
        for request_id, x in inputs.items():
            client.async_stream_infer("tiny", [_input(x)], request_id=request_id)
        bad = images(1, seed=0).astype(np.float64)
        client.async_stream_infer("tiny", [_input(bad, "FP64")], request_id="bad")
        got = [answers.get(timeout=TIMEOUT) for _ in range(len(inputs) + 1)]
    finally:
        client.stop_stream()
        client.close()
    errors = [error for _, error in got if error is not None]
    assert len(errors) == 1 and "datatype FP64 but the model takes FP32" in errors[0].message()
    by_id = {result.get_response().id: result for result, error in got if error is None}
    assert sorted(by_id) == sorted(inputs)
    for request_id, x in inputs.items():
        np.testing.assert_allclose(by_id[request_id].as_numpy("logits"), reference(x), rtol=1e-5, atol=1e-6)


def test_metadata_config_and_statistics_equal_over_http_and_grpc(server):
    grpc_client = triton_grpc.InferenceServerClient(server.grpc_url)
    http_client = triton_http.InferenceServerClient(server.url)
    try:
        grpc_client.infer("tiny", [_input(images(2, seed=5))])  # something to count
        http_meta = json_format.ParseDict(http_client.get_model_metadata("tiny"), service_pb2.ModelMetadataResponse())
        assert grpc_client.get_model_metadata("tiny") == http_meta
        assert list(http_meta.inputs[0].shape) == [-1, *IMAGE_SHAPE]
        server_meta = grpc_client.get_server_metadata()
        assert list(server_meta.extensions) == http_client.get_server_metadata()["extensions"]
        http_config = json_format.ParseDict(http_client.get_model_config("tiny"), model_config_pb2.ModelConfig())
        assert grpc_client.get_model_config("tiny").config == http_config
        http_stats = json_format.ParseDict(http_client.get_inference_statistics("tiny"),
                                           service_pb2.ModelStatisticsResponse())
        grpc_stats = grpc_client.get_inference_statistics("tiny")
        assert grpc_stats == http_stats
        assert grpc_client.get_inference_statistics("") == grpc_stats  # "" = every model
        assert grpc_stats.model_stats[0].inference_stats.success.count >= 1
    finally:
        grpc_client.close()
        http_client.close()


def test_served_config_is_the_triton_repository_description(server, tmp_path):
    """One description: the tensors and batching /config answers are those ``triton`` writes to config.pbtxt."""
    served = server.service.model_config()
    written = write_repository(tiny_models().dynamic, tmp_path, name="tiny", max_batch=8, max_delay_us=5000).config
    for field in ("name", "platform", "backend", "max_batch_size", "input", "output"):
        assert getattr(served, field) == getattr(written, field), field
    assert served.dynamic_batching.max_queue_delay_microseconds == 5000
    policy = served.dynamic_batching.default_queue_policy
    assert (policy.max_queue_size, policy.default_timeout_microseconds) == (64, 10_000_000)
    assert served.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU


# --- every bad-request class of the HTTP tests, over gRPC -------------------------------------------

def _request(shape=(1, *IMAGE_SHAPE), datatype="FP32", name="input", raw: bytes | None = None, model_name="tiny",
             **fields):
    request = service_pb2.ModelInferRequest(model_name=model_name, **fields)
    request.inputs.add(name=name, datatype=datatype, shape=list(shape))
    if raw is None:
        raw = np.full(shape, 0.5, np.float32).tobytes()
    request.raw_input_contents.append(raw)
    return request


def _typed(values, field="fp32_contents", datatype="FP32", shape=(1, *IMAGE_SHAPE)):
    request = service_pb2.ModelInferRequest(model_name="tiny")
    tensor = request.inputs.add(name="input", datatype=datatype, shape=list(shape))
    getattr(tensor.contents, field).extend(values)
    return request


def _with_output(request, name="logits", **parameters):
    output = request.outputs.add(name=name)
    for key, value in parameters.items():
        output.parameters[key].bool_param = value
    return request


def _with_timeout(request, text):
    request.parameters["timeout"].string_param = text
    return request


def _two_inputs():
    request = _request()
    request.inputs.add(name="input", datatype="FP32", shape=[1, *IMAGE_SHAPE])
    request.raw_input_contents.append(np.zeros(PIXELS, np.float32).tobytes())
    return request


def _shared_memory():
    request = _request()
    request.inputs[0].parameters["shared_memory_region"].string_param = "region"
    return request


def _both_raw_and_contents():
    request = _request()
    request.inputs[0].contents.fp32_contents.extend([0.5] * PIXELS)
    return request


def _no_raw_for_second():
    request = _request()
    request.inputs.add(name="other", datatype="FP32", shape=[1])
    return request


# The HTTP classes without a gRPC counterpart: JSON syntax and types (nan-token, malformed JSON,
# deep JSON, strings/null/true for numbers, ragged lists, binary_data flags), the header-length
# header, Content-Encoding (gRPC's compression is grpcio's; its bomb case is tested below), 405 and
# slow bodies (HTTP/2 framing is grpcio's). Their gRPC analogues are the raw/contents cases here.
OVER_LIMIT = (int(MAX_BODY_MB * 1024 * 1024) // (PIXELS * 4)) + 1
BAD_GRPC = {  # id: (request, gRPC status, message fragment); ids of the HTTP tests where they have one
    "wrong-shape": (_request((1, 3, 16, 15)), "INVALID_ARGUMENT", "shape [1,3,16,15] but the model takes [-1,3,16,16]"),
    "wrong-dtype": (_request(datatype="FP64", raw=np.zeros((1, *IMAGE_SHAPE)).tobytes()), "INVALID_ARGUMENT",
                    "datatype FP64 but the model takes FP32"),
    "missing-input": (_request(name="image"), "INVALID_ARGUMENT",
                      "unknown input 'image'; the model's inputs are: input"),
    "unknown-output": (_with_output(_request(), "probs"), "INVALID_ARGUMENT", "unknown output 'probs'"),
    "batch-too-big": (_request((9, *IMAGE_SHAPE)), "INVALID_ARGUMENT", "max batch of 8"),
    "non-finite": (_request(raw=np.full((1, *IMAGE_SHAPE), np.nan, np.float32).tobytes()), "INVALID_ARGUMENT",
                   f"{PIXELS} non-finite values"),
    "oversize-body": (_request((OVER_LIMIT, *IMAGE_SHAPE)), "RESOURCE_EXHAUSTED", "larger than max"),
    "unknown-model": (_request(model_name="resnet"), "NOT_FOUND", "unknown model 'resnet'"),
    "unknown-version": (_request(model_version="3"), "NOT_FOUND", "version '3'"),
    "65-dims": (_request((1,) * 65, raw=b"\0\0\0\0"), "INVALID_ARGUMENT", "at most 32"),
    "unknown-datatype": (_request(datatype="BF16"), "INVALID_ARGUMENT", "datatype 'BF16' is not supported"),
    "raw-size": (_request(raw=b"\0" * 12), "INVALID_ARGUMENT", "raw_input_contents is 12 bytes but shape"),
    "raw-count": (_no_raw_for_second(), "INVALID_ARGUMENT", "2 inputs but 1 raw_input_contents"),
    "raw-and-contents": (_both_raw_and_contents(), "INVALID_ARGUMENT", "both contents and raw_input_contents"),
    "contents-count": (_typed([0.5] * 7), "INVALID_ARGUMENT", "contents.fp32_contents has 7 values but shape"),
    "contents-field": (_typed([1] * PIXELS, "int64_contents"), "INVALID_ARGUMENT",
                       "FP32 is carried in contents.fp32_contents"),
    "contents-dtype": (_typed([300] * PIXELS, "uint_contents", "UINT8"), "INVALID_ARGUMENT",
                       "datatype UINT8 but the model takes FP32"),  # checked before any value is converted
    "duplicate-input": (_two_inputs(), "INVALID_ARGUMENT", "input 'input' appears more than once"),
    "duplicate-output": (_with_output(_with_output(_request())), "INVALID_ARGUMENT", "names an output more than once"),
    "shared-memory": (_shared_memory(), "INVALID_ARGUMENT", "shared-memory tensors are not supported"),
    "classification": (_with_output(_request(), classification=True), "INVALID_ARGUMENT",
                       "classification extension is not supported"),
    "timeout-not-integer": (_with_timeout(_request(), "1s"), "INVALID_ARGUMENT", "'timeout' must be a non-negative"),
    "no-inputs": (service_pb2.ModelInferRequest(model_name="tiny"), "INVALID_ARGUMENT", "at least one input"),
}


@pytest.mark.parametrize("request_message, code, message", BAD_GRPC.values(), ids=BAD_GRPC.keys())
def test_bad_request_gets_the_grpc_status_naming_the_problem_and_server_survives(
    server, reference, request_message, code, message
):
    with grpc.insecure_channel(server.grpc_url) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.ModelInfer(request_message, timeout=TIMEOUT)
    assert caught.value.code() == getattr(grpc.StatusCode, code)
    assert message in caught.value.details()
    client = triton_grpc.InferenceServerClient(server.grpc_url)
    x = images(1, seed=7)
    np.testing.assert_allclose(client.infer("tiny", [_input(x)]).as_numpy("logits"), reference(x), rtol=1e-5,
                               atol=1e-6)
    client.close()


def test_typed_contents_are_accepted(server, reference):
    x = images(2, seed=9)
    with grpc.insecure_channel(server.grpc_url) as channel:
        response = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(
            _typed(x.ravel().tolist(), shape=x.shape), timeout=TIMEOUT)
    (output,) = response.outputs
    assert list(output.shape) == [2, 10] and output.datatype == "FP32"
    logits = np.frombuffer(response.raw_output_contents[0], "<f4").reshape(2, 10)
    np.testing.assert_allclose(logits, reference(x), rtol=1e-5, atol=1e-6)


def test_protocol_level_mistakes(server):
    """Bytes that are not a protobuf, an unimplemented method, a gzip bomb, unknown models on every RPC."""
    with grpc.insecure_channel(server.grpc_url) as channel:
        raw = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer",
                                  request_serializer=lambda b: b, response_deserializer=lambda b: b)
        with pytest.raises(grpc.RpcError) as caught:
            raw(b"\xff\xff\xff\xff not protobuf", timeout=TIMEOUT)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "not a valid protobuf message" in caught.value.details()
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.RepositoryIndex(service_pb2.RepositoryIndexRequest(), timeout=TIMEOUT)
        assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
        bomb = _request(raw=b"\0" * (64 << 20))  # 64 MiB of zeros, a few hundred KiB gzipped
        with pytest.raises(grpc.RpcError) as caught:
            stub.ModelInfer(bomb, timeout=TIMEOUT, compression=grpc.Compression.Gzip)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    client = triton_grpc.InferenceServerClient(server.grpc_url)
    for call in (client.get_model_metadata, client.get_model_config, client.get_inference_statistics,
                 client.is_model_ready):
        with pytest.raises(InferenceServerException, match="unknown model 'other'") as caught:
            call("other")
        assert caught.value.status() == "StatusCode.NOT_FOUND"
    client.close()


# --- overload, deadlines, model failures: the same admission control as HTTP ------------------------

def _gated(**options) -> tuple[BackgroundServer, GatedModel]:
    model = GatedModel()
    service = InferenceService(model, ServeConfig(name="tiny", **options))
    return BackgroundServer(service, grpc_port=0).start(), model


def test_full_queue_and_queue_timeout_are_unavailable_and_a_passed_deadline_leaves_the_queue():
    running, model = _gated(max_batch=2, max_queue=2, max_delay_ms=0.0)
    pool = ThreadPoolExecutor(4)
    client = triton_grpc.InferenceServerClient(running.grpc_url)
    try:
        held = pool.submit(client.infer, "tiny", [_input(images(1, seed=1))])
        assert model.entered.wait(TIMEOUT)  # the worker holds this run; the next ones queue
        with pytest.raises(InferenceServerException, match="parameters.timeout, in ms, 200") as caught:
            client.infer("tiny", [_input(images(1, seed=2))], timeout=200_000)
        assert caught.value.status() == "StatusCode.UNAVAILABLE"
        start = time.perf_counter()
        with pytest.raises(InferenceServerException) as caught:
            client.infer("tiny", [_input(images(2, seed=3))], client_timeout=0.3)
        assert caught.value.status() == "StatusCode.DEADLINE_EXCEEDED" and time.perf_counter() - start < 5
        deadline = time.monotonic() + TIMEOUT
        while running.service.batcher.queued_rows and time.monotonic() < deadline:
            time.sleep(0.01)
        assert running.service.batcher.queued_rows == 0, "the request whose deadline passed is still queued"
        queued = pool.submit(client.infer, "tiny", [_input(images(2, seed=4))])
        while running.service.batcher.queued_rows < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        with pytest.raises(InferenceServerException, match="queue is full") as caught:
            client.infer("tiny", [_input(images(1, seed=5))])
        assert caught.value.status() == "StatusCode.UNAVAILABLE"
        assert client.is_server_ready() and client.is_model_ready("tiny")  # overload never flips readiness
        model.gate.set()
        held.result(TIMEOUT), queued.result(TIMEOUT)
        assert model.rows_run == 1 + 2, "a refused or abandoned request was computed"
        failures = running.service.stats.snapshot().failures
        assert failures["REJECTED"] == 2 and failures["CANCELED"] == 1
    finally:
        model.gate.set()
        client.close()
        pool.shutdown()
        running.stop()


class FailingModel(GatedModel):
    """The tiny model, failing every run whose first value is negative."""

    def run(self, feeds):
        if next(iter(feeds.values())).flat[0] < 0:
            raise RuntimeError("simulated model failure")
        return self.model.run(feeds)


def test_a_model_failure_is_internal_and_counted_as_backend(reference):
    service = InferenceService(FailingModel(), ServeConfig(name="tiny", max_delay_ms=0.0))
    with BackgroundServer(service, grpc_port=0) as running:
        client = triton_grpc.InferenceServerClient(running.grpc_url)
        with pytest.raises(InferenceServerException, match="inference failed: RuntimeError: simulated") as caught:
            client.infer("tiny", [_input(-np.ones((1, *IMAGE_SHAPE), np.float32))])
        assert caught.value.status() == "StatusCode.INTERNAL"
        x = np.abs(images(1, seed=1))
        np.testing.assert_allclose(client.infer("tiny", [_input(x)]).as_numpy("logits"), reference(x), rtol=1e-5,
                                   atol=1e-6)
        client.close()
        assert running.service.stats.snapshot().failures["BACKEND"] == 1


def _wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_shutdown_answers_in_flight_grpc_requests():
    """The four requests are held in flight by a gated model until the shutdown has begun, so the
    test waits on the server's own counts, not on the batcher's delay (the old version waited for
    four requests in flight at once behind a 1 s batching delay, which a loaded machine missed: the
    fourth arrived after the first three had run, then after the shutdown had begun; the next one
    waited for four requests in flight, and beside a CPU hog one was still being decoded when the
    shutdown began: 1 of 6 failed)."""
    running, model = _gated(max_batch=1, max_delay_ms=0.0)  # one row a run: the first holds, three queue
    client = triton_grpc.InferenceServerClient(running.grpc_url)
    inputs = [images(1, seed=300 + i) for i in range(4)]
    stopper = threading.Thread(target=running.stop)
    try:
        with ThreadPoolExecutor(4) as pool:
            pending = [pool.submit(client.infer, "tiny", [_input(x)]) for x in inputs]
            assert model.entered.wait(TIMEOUT)  # the first run holds the worker; nothing can finish
            # queued, not only in flight: a request still being decoded when the shutdown begins is
            # answered 503 (what the docs promise is that *queued* requests run)
            _wait_for(lambda: running.service.batcher.queued_rows == len(inputs) - 1, "three requests queued")
            stopper.start()
            _wait_for(lambda: not running.service.accepting, "the shutdown to begin")
            model.gate.set()
            results = [future.result(TIMEOUT) for future in pending]
        stopper.join(TIMEOUT)
        assert not stopper.is_alive()
        assert all(r.as_numpy("logits").shape == (1, 10) for r in results)
        assert model.rows_run == len(inputs)
        with pytest.raises(InferenceServerException):
            client.is_server_live()
    finally:
        model.gate.set()
        client.close()
        if not stopper.is_alive() and stopper.ident is None:
            running.stop()


def test_concurrent_grpc_calls_are_bounded_by_max_connections():
    running, model = _gated(max_batch=2, max_queue=4, max_delay_ms=0.0, max_connections=1)
    client = triton_grpc.InferenceServerClient(running.grpc_url)
    pool = ThreadPoolExecutor(1)
    try:
        held = pool.submit(client.infer, "tiny", [_input(images(1, seed=1))])
        assert model.entered.wait(TIMEOUT)
        with pytest.raises(InferenceServerException) as caught:
            client.infer("tiny", [_input(images(1, seed=2))])
        assert caught.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
        model.gate.set()
        assert held.result(TIMEOUT).as_numpy("logits").shape == (1, 10)
    finally:
        model.gate.set()
        client.close()
        pool.shutdown()
        running.stop()


def test_asyncio_stream_infer(server, reference):
    inputs = [images(1 if i % 2 else 4, seed=400 + i) for i in range(6)]

    async def requests():
        for i, x in enumerate(inputs):
            yield {"model_name": "tiny", "inputs": [_input(x)], "request_id": str(i)}

    async def main():
        client = triton_grpc_aio.InferenceServerClient(server.grpc_url)
        try:
            return [(result, error) async for result, error in client.stream_infer(requests())]
        finally:
            await client.close()

    answers = asyncio.run(main())
    assert [error for _, error in answers] == [None] * len(inputs)
    for result, _ in answers:
        x = inputs[int(result.get_response().id)]
        np.testing.assert_allclose(result.as_numpy("logits"), reference(x), rtol=1e-5, atol=1e-6)


def test_pixel_bound_is_resource_exhausted_for_dynamic_hw_models(reference):
    """HTTP answers 413 for a request over --max-batch-pixels; gRPC answers RESOURCE_EXHAUSTED."""
    config = ServeConfig(name="tiny", max_batch=8, max_batch_pixels=4 * 64 * 64)
    with BackgroundServer(load_service(tiny_models().dynamic_hw, config), grpc_port=0) as running:
        client = triton_grpc.InferenceServerClient(running.grpc_url)
        with pytest.raises(InferenceServerException, match="--max-batch-pixels") as caught:
            client.infer("tiny", [_input(np.zeros((1, 3, 256, 256), np.float32))])
        assert caught.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
        x = np.random.default_rng(0).standard_normal((2, 3, 64, 80)).astype(np.float32)
        expected = load_service(tiny_models().dynamic_hw, config).model.run({"input": x})["logits"]
        np.testing.assert_allclose(client.infer("tiny", [_input(x)]).as_numpy("logits"), expected, rtol=1e-5,
                                   atol=1e-6)
        client.close()
