"""The KServe v2 server on loopback: tritonclient round trips, a bounded load test, bad requests, shutdown.

Expected outputs come from a separate ONNX Runtime session on the same file, run per request;
the load test's requests are encoded here by hand (JSON and binary), not by the server's codec.
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from exporter.serving.server import BackgroundServer, load_service
from exporter.serving.service import ServeConfig
from tests.helpers.serving_models import IMAGE_SHAPE, tiny_models

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 30.0
MAX_BODY_MB = 0.25


@pytest.fixture(scope="module")
def server():
    config = ServeConfig(
        name="tiny", max_batch=8, max_delay_ms=5.0, reject_non_finite=True, max_body_mb=MAX_BODY_MB
    )
    with BackgroundServer(load_service(tiny_models().dynamic, config)) as running:
        yield running


def images(rows: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((rows, *IMAGE_SHAPE)).astype(np.float32)


def post(server, body: bytes, headers: dict | None = None, path: str = "/v2/models/tiny/infer"):
    """One POST on a fresh connection: (status, headers, body)."""
    conn = http.client.HTTPConnection(server.host, server.port, timeout=TIMEOUT)
    try:
        conn.request("POST", path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def json_request(x: np.ndarray, request_id: str) -> tuple[bytes, dict]:
    body = {"id": request_id, "inputs": [
        {"name": "input", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]}
    return json.dumps(body).encode(), {"Content-Type": "application/json"}


def binary_request(x: np.ndarray, request_id: str) -> tuple[bytes, dict]:
    raw = x.astype("<f4").tobytes()
    header = json.dumps({
        "id": request_id,
        "inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32",
                    "parameters": {"binary_data_size": len(raw)}}],
        "outputs": [{"name": "logits", "parameters": {"binary_data": True}}],
    }).encode()
    return header + raw, {"Inference-Header-Content-Length": str(len(header))}


def logits_of(headers: dict, body: bytes) -> tuple[str, np.ndarray]:
    """Request id and logits from a response, parsed by hand."""
    length = headers.get("Inference-Header-Content-Length")
    split = int(length) if length is not None else len(body)
    header = json.loads(body[:split])
    (out,) = header["outputs"]
    assert out["name"] == "logits" and out["datatype"] == "FP32"
    if "data" in out:
        values = np.asarray(out["data"], np.float32)
    else:
        values = np.frombuffer(body[split:split + out["parameters"]["binary_data_size"]], "<f4")
    return header["id"], values.reshape(out["shape"])


def test_health_and_metadata_through_tritonclient(server):
    client = triton_http.InferenceServerClient(server.url)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("tiny") and client.is_model_ready("tiny", model_version="1")
    assert not client.is_model_ready("other")
    metadata = client.get_model_metadata("tiny")
    assert metadata["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, *IMAGE_SHAPE]}]
    assert metadata["outputs"] == [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}]
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    client.close()


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_round_trip(server, reference, binary):
    client = triton_http.InferenceServerClient(server.url)
    x = images(3, seed=1)
    tensor = triton_http.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary)
    wanted = [triton_http.InferRequestedOutput("logits", binary_data=binary)]
    result = client.infer("tiny", [tensor], outputs=wanted, request_id="rt-1", model_version="1")
    assert result.get_response()["id"] == "rt-1"
    np.testing.assert_allclose(result.as_numpy("logits"), reference(x), rtol=1e-5, atol=1e-6)
    compressed = client.infer("tiny", [tensor], request_compression_algorithm="gzip")
    np.testing.assert_allclose(compressed.as_numpy("logits"), reference(x), rtol=1e-5, atol=1e-6)
    client.close()


def test_load_200_requests_16_clients_all_correct(server, reference):
    """200 single-image requests (half JSON, half binary) from 16 keep-alive clients."""
    before = server.service.batcher.stats()
    requests = [(f"req-{i}", images(1, seed=1000 + i)) for i in range(200)]
    local = threading.local()

    def send(item):
        request_id, x = item
        if not hasattr(local, "conn"):
            local.conn = http.client.HTTPConnection(server.host, server.port, timeout=TIMEOUT)
        encode = binary_request if int(request_id.split("-")[1]) % 2 else json_request
        body, headers = encode(x, request_id)
        local.conn.request("POST", "/v2/models/tiny/infer", body=body, headers=headers)
        response = local.conn.getresponse()
        return response.status, *logits_of(dict(response.getheaders()), response.read())

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(send, requests, timeout=120))
    assert len(answers) == 200
    for (request_id, x), (status, answered_id, logits) in zip(requests, answers, strict=True):
        assert status == 200
        assert answered_id == request_id
        np.testing.assert_allclose(logits, reference(x), rtol=1e-5, atol=1e-6)
    after = server.service.batcher.stats()
    assert after.requests - before.requests == 200
    assert after.runs - before.runs < 200, "the server never batched two requests together"


def _infer_json(inputs, **extra) -> bytes:
    return json.dumps({"inputs": inputs, **extra}).encode()


GOOD_INPUT = {"name": "input", "shape": [1, *IMAGE_SHAPE], "datatype": "FP32",
              "data": [0.5] * int(np.prod(IMAGE_SHAPE))}
NAN_INPUT = {**GOOD_INPUT, "data": [float("nan")] + GOOD_INPUT["data"][1:]}
OVERSIZE = int(MAX_BODY_MB * 1024 * 1024) * 2
INFER = "/v2/models/tiny/infer"
BAD_REQUESTS = {  # id: (path, body, headers, status, message fragment)
    "wrong-shape": (
        INFER, _infer_json([{**GOOD_INPUT, "shape": [1, 3, 16, 15], "data": GOOD_INPUT["data"][:720]}]), {},
        400, "shape [1,3,16,15] but the model takes [-1,3,16,16]",
    ),
    "wrong-dtype": (
        INFER, _infer_json([{**GOOD_INPUT, "datatype": "FP64"}]), {},
        400, "datatype FP64 but the model takes FP32",
    ),
    "missing-input": (
        INFER, _infer_json([{**GOOD_INPUT, "name": "image"}]), {},
        400, "unknown input 'image'; the model's inputs are: input",
    ),
    "unknown-output": (
        INFER, _infer_json([GOOD_INPUT], outputs=[{"name": "probs"}]), {}, 400, "unknown output 'probs'"
    ),
    "batch-too-big": (
        INFER, _infer_json([{**GOOD_INPUT, "shape": [9, *IMAGE_SHAPE], "data": GOOD_INPUT["data"] * 9}]), {},
        400, "max batch of 8",
    ),
    "nan-token-in-json": (INFER, _infer_json([NAN_INPUT]), {}, 400, "NaN, which is not JSON"),
    "non-finite": (INFER, *binary_request(np.full((1, *IMAGE_SHAPE), np.nan, np.float32), "nan"), 400,
                   f"{int(np.prod(IMAGE_SHAPE))} non-finite values"),
    "malformed-json": (INFER, b'{"inputs": [{"name": "input", ', {}, 400, "not valid JSON"),
    "bad-header-length": (
        INFER, _infer_json([GOOD_INPUT]), {"Inference-Header-Content-Length": "-4"},
        400, "Inference-Header-Content-Length",
    ),
    "oversize-body": (INFER, b" " * OVERSIZE, {}, 413, "--max-body-mb"),
    "unknown-model": (
        "/v2/models/resnet/infer", _infer_json([GOOD_INPUT]), {}, 404, "unknown model 'resnet'"
    ),
    "unknown-version": (
        "/v2/models/tiny/versions/3/infer", _infer_json([GOOD_INPUT]), {}, 404, "version '3'"
    ),
    "unknown-route": ("/v2/models/tiny/explain", b"{}", {}, 404, "Not Found"),
}


@pytest.mark.parametrize(
    "path, body, headers, status, message", BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys()
)
def test_bad_request_gets_4xx_naming_the_problem_and_server_survives(
    server, reference, path, body, headers, status, message
):
    got_status, got_headers, got_body = post(server, body, headers, path)
    assert got_status == status
    assert got_headers["Content-Type"].startswith("application/json")
    assert message in json.loads(got_body)["error"]
    x = images(1, seed=7)
    ok_status, ok_headers, ok_body = post(server, *binary_request(x, "after"))
    assert ok_status == 200
    np.testing.assert_allclose(logits_of(ok_headers, ok_body)[1], reference(x), rtol=1e-5, atol=1e-6)


def test_tritonclient_sees_the_error_message(server):
    client = triton_http.InferenceServerClient(server.url)
    x = images(1, seed=3).astype(np.float64)
    tensor = triton_http.InferInput("input", list(x.shape), "FP64")
    tensor.set_data_from_numpy(x)
    with pytest.raises(InferenceServerException, match="datatype FP64 but the model takes FP32") as caught:
        client.infer("tiny", [tensor])
    assert caught.value.status() == "400"
    client.close()


def test_fixed_batch_model_runs_per_request(reference):
    config = ServeConfig(name="fixed", max_batch=8, max_delay_ms=20.0)
    with BackgroundServer(load_service(tiny_models().fixed, config)) as running:
        path = "/v2/models/fixed/infer"
        inputs = [images(1, seed=200 + i) for i in range(8)]
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda x: post(running, *binary_request(x, "f"), path=path), inputs))
        for x, (status, headers, body) in zip(inputs, answers, strict=True):
            assert status == 200
            np.testing.assert_allclose(logits_of(headers, body)[1], reference(x), rtol=1e-5, atol=1e-6)
        assert running.service.batcher.stats().sizes == {1: 8}
        status, _, body = post(running, *binary_request(images(2, seed=0), "two"), path=path)
        assert status == 400 and "the model takes [1,3,16,16]" in json.loads(body)["error"]


def test_graceful_shutdown_answers_in_flight_requests(reference):
    """Requests held in the batcher (1 s window) when stop() is called still get their answers."""
    config = ServeConfig(name="tiny", max_batch=64, max_delay_ms=1000.0)
    running = BackgroundServer(load_service(tiny_models().dynamic, config)).start()
    inputs = [images(1, seed=300 + i) for i in range(6)]
    pool = ThreadPoolExecutor(6)
    pending = [pool.submit(post, running, *binary_request(x, f"s{i}")) for i, x in enumerate(inputs)]
    deadline = time.monotonic() + TIMEOUT
    while running.service.in_flight < len(inputs) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert running.service.in_flight == len(inputs)
    running.stop()
    answers = [future.result(TIMEOUT) for future in pending]
    pool.shutdown()
    for x, (status, headers, body) in zip(inputs, answers, strict=True):
        assert status == 200
        np.testing.assert_allclose(logits_of(headers, body)[1], reference(x), rtol=1e-5, atol=1e-6)
    assert not running.service.ready
    with pytest.raises(ConnectionRefusedError):
        post(running, *binary_request(inputs[0], "late"))


def _read_lines(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line)


def test_cli_serve_starts_answers_and_stops_on_sigterm(reference):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "exporter.cli", "serve", str(tiny_models().dynamic),
               "--port", "0", "--grpc-port", "0", "--name", "cli-tiny", "--max-delay-ms", "1"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_read_lines, args=(process.stdout, lines), daemon=True).start()
    try:
        seen = []
        while not any("listening on http://" in line for line in seen):
            seen.append(lines.get(timeout=120))
        assert "providers CPUExecutionProvider" in "".join(seen)
        url = seen[-1].split("http://")[1].split()[0]
        client = triton_http.InferenceServerClient(url)
        x = images(2, seed=11)
        tensor = triton_http.InferInput("input", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        np.testing.assert_allclose(client.infer("cli-tiny", [tensor]).as_numpy("logits"), reference(x),
                                   rtol=1e-5, atol=1e-6)
        client.close()
        grpc_url = seen[-1].split("grpc://")[1].split()[0]
        grpc_client = triton_grpc.InferenceServerClient(grpc_url)
        grpc_tensor = triton_grpc.InferInput("input", list(x.shape), "FP32")
        grpc_tensor.set_data_from_numpy(x)
        np.testing.assert_allclose(grpc_client.infer("cli-tiny", [grpc_tensor]).as_numpy("logits"), reference(x),
                                   rtol=1e-5, atol=1e-6)
        grpc_client.close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(TIMEOUT) == 0
        assert "stopped" in lines.get(timeout=TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(TIMEOUT)


def test_cli_serve_reports_a_missing_model_in_one_line(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "exporter.cli", "serve", str(tmp_path / "none.onnx"), "--port", "0"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert done.returncode == 2
    missing = tmp_path / "none.onnx"
    expected = f"rfconv-deploy serve: error: ONNX model {missing} does not exist"
    assert done.stderr.strip().splitlines() == [expected]


def test_cli_serve_without_grpc_and_with_a_busy_grpc_port(capsys):
    from exporter.cli import main
    from exporter.serving.server import bind

    busy = bind("127.0.0.1", 0)
    try:
        port = busy.getsockname()[1]
        assert main(["serve", str(tiny_models().dynamic), "--port", "0", "--grpc-port", str(port)]) == 2
    finally:
        busy.close()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"cannot listen for gRPC on 127.0.0.1:{port}" in err[0] and "--no-grpc" in err[0]
    from exporter.cli import build_parser

    args = build_parser().parse_args(["serve", str(tiny_models().dynamic), "--no-grpc"])
    assert args.grpc is False and args.grpc_port == 8001


def test_example_client_against_the_server(server):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(ROOT / "deploy_examples" / "client.py"), "--url", server.url, "--model", "tiny",
         "--batch", "3"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "tiny: input [3, 3, 16, 16] -> logits [3, 10]" in done.stdout
    assert done.stdout.count("top class") == 3
