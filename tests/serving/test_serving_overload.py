"""The server under overload and hostile clients, round two: one regression test per finding, loopback only.

Client mistakes that overflowed a shape, log floods, typed gRPC contents, streams whose answers
are never read, the memory budget, readiness under overload and ports. Every test starts its own
server on 127.0.0.1 and waits on the server's own counts and events, never on the clock.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
from tritonclient.grpc import service_pb2, service_pb2_grpc

from exporter.serving.protocol import RequestError
from exporter.serving.server import BackgroundServer, load_service
from exporter.serving.service import InferenceService, ServeConfig
from tests.helpers.serving_models import IMAGE_SHAPE, tiny_models
from tests.serving.test_serving_abuse import INFER, MIB, TIMEOUT, GatedModel, _one, _raw, post, wait_for
from tests.serving.test_serving_server import binary_request, images, json_request

OVERFLOWING = ([0, 3, 2**62, 4], [0, 2**64], [0, 2**63 - 1, 2**63 - 1])


@pytest.fixture(scope="module")
def server():
    config = ServeConfig(name="tiny", max_batch=8, max_delay_ms=1.0)
    with BackgroundServer(load_service(tiny_models().dynamic, config), grpc_port=0) as running:
        yield running


def _stub(running):
    channel = grpc.insecure_channel(running.grpc_url)
    return channel, service_pb2_grpc.GRPCInferenceServiceStub(channel)


# --- client errors are 4xx, never 500 ---------------------------------------------------------------

@pytest.mark.parametrize("shape", OVERFLOWING, ids=str)
def test_shape_product_overflow_is_a_client_error(server, shape, caplog):
    """Regression: shapes whose element count overflows answered 500 / INTERNAL with a traceback each."""
    before = server.service.stats.snapshot().failures
    with caplog.at_level(logging.WARNING):
        status, _, body = post(server, _one({"data": [], "shape": shape}))
        assert status == 400 and "elements" in json.loads(body)["error"], body
        header = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": shape,
                                         "parameters": {"binary_data_size": 0}}]}).encode()
        status, _, body = post(server, header, {"Inference-Header-Content-Length": str(len(header))})
        assert status == 400 and "elements" in json.loads(body)["error"], body
        if max(shape) < 2**63:  # gRPC shapes are int64
            channel, stub = _stub(server)
            request = service_pb2.ModelInferRequest(model_name="tiny")
            request.inputs.add(name="input", datatype="FP32", shape=shape)
            request.raw_input_contents.append(b"")
            with pytest.raises(grpc.RpcError) as caught:
                stub.ModelInfer(request, timeout=TIMEOUT)
            channel.close()
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "elements" in caught.value.details()
    after = server.service.stats.snapshot().failures
    assert after["BACKEND"] == before["BACKEND"], "a client mistake was counted as a backend failure"
    assert not [r for r in caplog.records if r.exc_info], "a client mistake logged a traceback"


class BrokenModel(GatedModel):
    """The tiny model, every run failing."""

    def run(self, feeds):
        raise RuntimeError("simulated model failure")


def test_server_errors_log_one_traceback_per_kind_with_a_count(caplog):
    """Regression: every failed request logged its own traceback, unthrottled."""
    service = InferenceService(BrokenModel(), ServeConfig(name="tiny", max_delay_ms=0.0))
    with caplog.at_level(logging.WARNING, logger="exporter.serving"), \
            BackgroundServer(service, grpc_port=0) as running:
        for i in range(12):
            status, _, body = post(running, *binary_request(images(1, seed=i), "x"))
            assert status == 500 and "simulated model failure" in json.loads(body)["error"]
        channel, stub = _stub(running)
        request = service_pb2.ModelInferRequest(model_name="tiny")
        request.inputs.add(name="input", datatype="FP32", shape=[1, *IMAGE_SHAPE])
        request.raw_input_contents.append(images(1, seed=0).tobytes())
        for _ in range(5):
            with pytest.raises(grpc.RpcError) as caught:
                stub.ModelInfer(request, timeout=TIMEOUT)
            assert caught.value.code() == grpc.StatusCode.INTERNAL
        channel.close()
        assert service.stats.snapshot().failures["BACKEND"] == 17
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1, [r.getMessage() for r in tracebacks]
    assert "RuntimeError" in tracebacks[0].getMessage()


MALFORMED = (
    b"GET /v2 HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
    b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\n\r\n",
    b"POST /v2 HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
)


def test_malformed_header_blocks_get_400_and_one_log_line_without_traceback(caplog):
    """Regression: each malformed header block logged aiohttp's traceback."""
    running = BackgroundServer(load_service(tiny_models().dynamic, ServeConfig(name="tiny"))).start()
    try:
        with caplog.at_level(logging.DEBUG):
            for _ in range(3):
                for data in MALFORMED:
                    assert _raw(running, data).startswith(b"HTTP/1.0 400"), data[:40]
            wait_for(lambda: running.connections.closed >= 3 * len(MALFORMED), "the malformed requests to close")
            assert post(running, b"", path="/v2/health/live", method="GET")[0] == 200
    finally:
        running.stop()
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage()[:200] for r in caplog.records if r.exc_info]
    lines = [r for r in caplog.records if "malformed HTTP request" in r.getMessage()]
    assert len(lines) == 1 and "\n" not in lines[0].getMessage(), [r.getMessage() for r in lines]


# --- typed gRPC contents: checked before conversion, never value by value for floats ---------------

class _NoListConversion:
    """numpy, except that ``array()`` of more than a few values from a Python sequence fails the test."""

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def array(values, *args, **kwargs):
        if not isinstance(values, np.ndarray) and len(values) > 64:
            raise AssertionError(f"np.array over a sequence of {len(values)} values")
        return np.array(values, *args, **kwargs)


def _typed_request(values, shape, field="fp32_contents", datatype="FP32"):
    request = service_pb2.ModelInferRequest(model_name="tiny")
    tensor = request.inputs.add(name="input", datatype=datatype, shape=list(shape))
    getattr(tensor.contents, field).extend(values)
    return request


def test_typed_contents_are_checked_against_the_model_before_conversion(monkeypatch):
    """Regression: 15 M fp32 zeros (valid for no input of the model) were converted value by value,
    holding the GIL for seconds, before the shape check refused them."""
    from exporter.serving import grpc_protocol
    from exporter.serving.grpc_protocol import decode_infer_request

    specs = OrtModelSpecs.inputs()
    monkeypatch.setattr(grpc_protocol, "np", _NoListConversion())
    flood = _typed_request(np.zeros(2_000_000, np.float32), [2_000_000])
    with pytest.raises(RequestError, match=r"has shape \[2000000\] but the model takes"):
        decode_infer_request(flood, specs)
    with pytest.raises(RequestError, match="datatype INT64 but the model takes FP32"):
        decode_infer_request(_typed_request([0] * 768, [1, *IMAGE_SHAPE], "int64_contents", "INT64"), specs)
    x = images(2, seed=5)
    decoded = decode_infer_request(_typed_request(x.ravel(), x.shape), specs)
    np.testing.assert_array_equal(decoded.inputs["input"], x)  # bit-exact, from the packed bytes
    x64 = images(1, seed=6).astype(np.float64)
    wide = _typed_request(x64.ravel(), x64.shape, "fp64_contents", "FP64")
    np.testing.assert_array_equal(decode_infer_request(wide).inputs["input"], x64)
    monkeypatch.undo()
    with pytest.raises(RequestError, match="outside the range of UINT8"):
        decode_infer_request(_typed_request([300] * 768, [1, *IMAGE_SHAPE], "uint_contents", "UINT8"))
    many = _typed_request(np.zeros(768, np.int64), [1, 768], "int64_contents", "INT64")
    with pytest.raises(RequestError, match="--max-json-mb") as caught:
        decode_infer_request(many, None, max_typed_bytes=8 * 100)
    assert caught.value.status == 413


class OrtModelSpecs:
    @staticmethod
    def inputs():
        from exporter.serving.session import OrtModel

        return OrtModel(tiny_models().dynamic, ["CPUExecutionProvider"]).inputs


# --- a gRPC stream whose answers are never read ------------------------------------------------------

def test_stream_window_is_freed_when_an_answer_is_written_not_computed():
    """Regression: the stream's window slot was freed when an answer was computed, so a client that
    never read its answers had every request read, computed and held (RSS grew without bound).

    Driven through the servicer itself: the answers are never taken past the first, so once the
    window's requests are computed and nothing is left in the service, no further request may
    have been read."""
    import asyncio

    from exporter.serving.grpc_server import make_servicer

    service = load_service(tiny_models().dynamic, ServeConfig(name="tiny", max_batch=4, max_queue=4,
                                                              max_delay_ms=0.0))
    servicer = make_servicer(service, [], "test")
    x = images(1, seed=3)
    pulled = []

    async def requests():
        for i in range(40):
            request = service_pb2.ModelInferRequest(model_name="tiny", id=str(i))
            request.inputs.add(name="input", datatype="FP32", shape=list(x.shape))
            request.raw_input_contents.append(x.tobytes())
            pulled.append(i)
            yield request

    async def main():
        stream = servicer.ModelStreamInfer(requests(), None)
        first = await stream.__anext__()  # written; its slot is freed when the next one is asked for
        assert first.infer_response.id == "0"
        deadline = asyncio.get_running_loop().time() + TIMEOUT
        while not (service.stats.snapshot().success >= 4 and service.in_flight == 0):
            assert asyncio.get_running_loop().time() < deadline, "the window's requests were not answered"
            await asyncio.sleep(0.01)
        computed, read = service.stats.snapshot().success, len(pulled)
        second = await stream.__anext__()  # one more written: exactly one more request is read
        while len(pulled) < min(read + 1, 40) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        await stream.aclose()
        return computed, read, second

    try:
        computed, read, second = asyncio.run(main())
    finally:
        service.close()
    assert computed == 4 and read == 5, f"{computed} answers computed and {read} requests read with none written"
    assert second.infer_response.id == "1"


# --- ports: one line naming the flag to change --------------------------------------------------------

@pytest.mark.parametrize("which", ["http", "grpc", "same"])
def test_port_problems_are_one_line_naming_the_flag(which, capfd):
    """Regression: a taken HTTP port gave "Address already in use" without a hint, a taken gRPC port
    printed grpc's own log line first, and the same port for both was not caught before binding."""
    from exporter.cli import main
    from exporter.serving.server import bind

    busy = bind("127.0.0.1", 0)
    port = busy.getsockname()[1]
    ports = {"http": ["--port", str(port), "--grpc-port", "0"], "grpc": ["--port", "0", "--grpc-port", str(port)],
             "same": ["--port", "0", "--grpc-port", "0"]}[which]
    if which == "same":
        busy.close()
        ports = ["--port", str(port), "--grpc-port", str(port)]
    try:
        assert main(["serve", str(tiny_models().dynamic), *ports]) == 2
    finally:
        busy.close()
    err = [line for line in capfd.readouterr().err.splitlines() if line.strip()]
    flag = {"http": "--port", "grpc": "--grpc-port", "same": "--grpc-port"}[which]
    assert len(err) == 1 and str(port) in err[0] and flag in err[0], err


# --- one memory budget ---------------------------------------------------------------------------------

def _partial_upload(running, declared: int, sent: int) -> socket.socket:
    """A POST declaring ``declared`` body bytes that sends ``sent`` of them and stops (the socket stays open)."""
    sock = socket.create_connection((running.host, running.port), timeout=TIMEOUT)
    sock.sendall(f"POST {INFER} HTTP/1.1\r\nHost: x\r\nContent-Length: {declared}\r\n\r\n".encode() + b" " * sent)
    return sock


def _metric(running, name: str) -> float:
    text = post(running, b"", path="/metrics", method="GET")[2].decode()
    line = next(line for line in text.splitlines() if line.startswith(name + "{"))
    return float(line.rsplit(" ", 1)[1])


def test_bodies_being_read_are_held_within_the_memory_budget():
    """Regression: 32 connections each sending 60 MiB of a declared 64 MiB body were outside
    admission control (2 GB held, /ready 200, nothing refused). Now each body is reserved from its
    Content-Length before it is read: past the budget the answer is 503 + Retry-After at once, the
    server stays ready, and the budget is whole again once the clients leave."""
    running = BackgroundServer(load_service(tiny_models().dynamic, ServeConfig(
        name="tiny", max_body_mb=8.0, max_inflight_mb=20.0, body_timeout_s=60.0))).start()
    held = []
    try:
        for _ in range(2):  # 2 x 8 MiB of the 20 MiB budget
            held.append(_partial_upload(running, 8 * MIB, MIB))
        wait_for(lambda: running.service.budget.used >= 16 * MIB, "the two bodies to be reserved")
        head = f"POST {INFER} HTTP/1.1\r\nHost: x\r\nContent-Length: {8 * MIB}\r\n\r\n".encode()
        answer = _raw(running, head)
        assert answer.startswith(b"HTTP/1.1 503") and b"Retry-After: 1" in answer and b"--max-inflight-mb" in answer
        assert post(running, b"", path="/v2/health/ready", method="GET")[0] == 200
        x = images(1, seed=1)
        status, _, _ = post(running, *binary_request(x, "small"))  # small requests still fit
        assert status == 200
        assert _metric(running, "rfconv_inflight_refused") == 1
        assert _metric(running, "rfconv_inflight_limit_bytes") == 20 * MIB
        for sock in held:
            sock.close()
        wait_for(lambda: running.service.budget.used == 0, "the abandoned bodies' reservations to be released")
    finally:
        for sock in held:
            sock.close()
        running.stop()


def test_grpc_messages_are_held_within_the_memory_budget():
    """A gRPC request whose message and decoded tensors do not fit the budget together is
    RESOURCE_EXHAUSTED with retry-after, at once; the budget is whole again afterwards."""
    service = load_service(tiny_models().dynamic, ServeConfig(name="tiny", max_inflight_mb=1.0, max_body_mb=1.0))
    with BackgroundServer(service, grpc_port=0) as running:
        channel, stub = _stub(running)
        request = service_pb2.ModelInferRequest(model_name="tiny")
        x = np.zeros((8, *IMAGE_SHAPE), np.float32)
        big = np.zeros((4, 3, 128, 128), np.float32)  # 0.75 MiB as a message, as much again decoded
        request.inputs.add(name="input", datatype="FP32", shape=list(big.shape))
        request.raw_input_contents.append(big.tobytes())
        with pytest.raises(grpc.RpcError) as caught:
            stub.ModelInfer(request, timeout=TIMEOUT)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "--max-inflight-mb" in caught.value.details()
        assert dict(caught.value.trailing_metadata()).get("retry-after") == "1"
        ok = service_pb2.ModelInferRequest(model_name="tiny")
        ok.inputs.add(name="input", datatype="FP32", shape=list(x.shape))
        ok.raw_input_contents.append(x.tobytes())
        assert stub.ModelInfer(ok, timeout=TIMEOUT).outputs[0].name == "logits"
        channel.close()
        assert service.budget.used == 0 and service.budget.refused == 1


def test_json_waiting_for_the_decode_threads_is_bounded_and_refused_at_once():
    """Regression: the decode threads' queue was unbounded: 16 clients of 4 MiB JSON bodies kept
    polite clients waiting for seconds, with no 503. Now at most two JSON parts of --max-json-mb
    wait there; the next JSON request is 503 + Retry-After at once, before its body is read (a
    flood resending 4 MiB bodies kept the server reading them), binary requests still enter (their
    few hundred bytes of JSON header were refused too once the queue was within them of full), and
    the refusals are in /metrics."""
    import threading

    service = load_service(tiny_models().dynamic, ServeConfig(name="tiny", max_json_mb=0.5, max_delay_ms=0.0))
    gate, entered = threading.Event(), threading.Semaphore(0)
    decode_http = service._decode_http

    def gated_decode(*args):
        entered.release()
        assert gate.wait(TIMEOUT)
        return decode_http(*args)

    service._decode_http = gated_decode
    values = (400 * 1024) // len(b"0.123456789,")
    body = (b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3, 16, 16], "data": ['
            + b",".join([b"0.123456789"] * values) + b"]}]}")
    body += b" " * (service.config.max_json_bytes - 100 - len(body))  # two fill the queue to 200 bytes short
    pool = ThreadPoolExecutor(3)
    with BackgroundServer(service) as running:
        try:
            waiting = [pool.submit(post, running, body) for _ in range(2)]
            for _ in range(2):
                assert entered.acquire(timeout=TIMEOUT)  # both decode threads hold a JSON part
            status, headers, answer = post(running, body)
            assert status == 503 and headers["Retry-After"] == "1"
            assert "wait to be decoded" in json.loads(answer)["error"]
            with socket.create_connection((running.host, running.port), timeout=TIMEOUT) as sock:
                sock.sendall(f"POST {INFER} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode())
                assert sock.recv(64).startswith(b"HTTP/1.1 503"), "refused only after its body was read"
            x = images(1, seed=4)
            polite = pool.submit(post, running, *binary_request(x, "polite"))  # binary: admitted, waits its turn
            assert _metric(running, "rfconv_decode_refused") == 2
            gate.set()
            assert [f.result(TIMEOUT)[0] for f in waiting] == [400, 400]
            assert polite.result(TIMEOUT)[0] == 200
            assert service.decode_pending_bytes == 0
        finally:
            gate.set()
            pool.shutdown()


def test_large_json_parts_are_parsed_outside_the_server_process(server, monkeypatch):
    """Regression: 16 clients of 4 MiB JSON bodies beside RF-ResNet-50 kept /ready at p99 355 ms:
    ``json.loads`` held the server's GIL about 70 ms per part on a codec thread, stalling the event
    loop. Parts from ``OFF_PROCESS_BYTES`` up are parsed in worker processes: this process's parser
    never sees them, and their answers (200s and 400s) are those of the in-thread path."""
    from exporter.serving import protocol
    from exporter.serving.json_pool import OFF_PROCESS_BYTES

    parsed = []
    load_json = protocol._load_json
    monkeypatch.setattr(protocol, "_load_json", lambda data: (parsed.append(len(data)), load_json(data))[1])
    x = images(2, seed=7)
    small, headers = json_request(x, "small")
    large = small[:-1] + b" " * OFF_PROCESS_BYTES + b"}"  # the same request, padded with JSON whitespace
    status, _, answer = post(server, small, headers)
    assert status == 200 and parsed == [len(small)], parsed  # the in-thread path runs in this process
    status, _, padded = post(server, large, headers)
    assert status == 200, padded
    np.testing.assert_array_equal(np.array(json.loads(padded)["outputs"][0]["data"]),
                                  np.array(json.loads(answer)["outputs"][0]["data"]))
    wrong = large.replace(b'"shape": [2,', b'"shape": [3,')
    status, _, refusal = post(server, wrong, headers)
    assert status == 400 and "values but shape [3, 3, 16, 16]" in json.loads(refusal)["error"], refusal
    assert parsed == [len(small)], "a large JSON part was parsed in the server's own process"
    workers = server.service._json.pids()
    assert workers and os.getpid() not in workers


def test_large_json_answers_are_written_outside_the_server_process(server, monkeypatch):
    """Regression: an answer listed as JSON is written by ``json.dumps`` holding the GIL (about 0.55 s for a
    21x224x224 segmentation output on the 2-core machine), stalling the event loop. Answers listing
    ``off_process_values`` values or more are written in a worker process, byte for byte as here."""
    import types

    from exporter.serving import protocol

    written = []
    proxy = types.SimpleNamespace(**{name: getattr(json, name) for name in ("loads", "JSONDecodeError")})
    proxy.dumps = lambda obj, **kw: (written.append("outputs" in obj), json.dumps(obj, **kw))[1]
    monkeypatch.setattr(protocol, "json", proxy)
    body, headers = json_request(images(2, seed=8), "answer")
    status, _, here = post(server, body, headers)
    assert status == 200 and written == [True], written  # the in-thread path runs in this process
    monkeypatch.setattr(server.service._json, "off_process_values", 1)
    status, _, there = post(server, body, headers)
    assert status == 200 and there == here
    assert written == [True], "a large JSON answer was written in the server's own process"
    assert os.getpid() not in server.service._json.pids()


def test_what_a_shutdown_leaves_on_the_event_loop_is_one_line(caplog):
    """Regression: on SIGTERM aiohttp's cancelled handler waiters (InvalidStateError) and the futures of
    dropped requests ("Future exception was never retrieved") each logged a traceback."""
    import asyncio

    from exporter.serving.batcher import Overloaded
    from exporter.serving.logs import TracebackLog
    from exporter.serving.server import _loop_exception_handler

    handler = _loop_exception_handler(TracebackLog())
    with caplog.at_level(logging.DEBUG):
        for _ in range(5):
            handler(None, {"message": "Exception in callback", "exception": asyncio.InvalidStateError("invalid state")})
            handler(None, {"message": "Future exception was never retrieved",
                           "exception": Overloaded("the server shut down before this request ran")})
        handler(None, {"message": "Task exception was never retrieved", "exception": RuntimeError("a bug")})
    assert len([r for r in caplog.records if "left over" in r.getMessage()]) == 1
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1 and "a bug" in tracebacks[0].getMessage()


def test_memory_budget_option_is_checked_and_derived_from_the_machine():
    from exporter.serving.budget import default_budget_bytes

    with pytest.raises(ValueError, match="max_inflight_mb=1 must be at least max_body_mb=2"):
        ServeConfig(name="tiny", max_inflight_mb=1.0, max_body_mb=2.0)
    with pytest.raises(ValueError, match="max_inflight_mb must be >= 0"):
        ServeConfig(name="tiny", max_inflight_mb=-1.0)
    assert ServeConfig(name="tiny").max_inflight_bytes == default_budget_bytes() >= 64 * MIB
    assert ServeConfig(name="tiny", max_inflight_mb=100.0).max_inflight_bytes == 100 * MIB
