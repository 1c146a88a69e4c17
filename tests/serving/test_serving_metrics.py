"""``/metrics`` and the statistics behind it: parsed with prometheus_client's own parser, counted against
the requests the test sent and the runs the batcher reports, one registry per server."""

from __future__ import annotations

import http.client
import json
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
from prometheus_client.parser import text_string_to_metric_families

from exporter.serving.server import BackgroundServer, load_service
from exporter.serving.service import InferenceService, ServeConfig
from tests.helpers.serving_models import IMAGE_SHAPE, tiny_models
from tests.serving.test_serving_abuse import GatedModel
from tests.serving.test_serving_server import binary_request, images, json_request

TIMEOUT = 30.0
TRITON_COUNTERS = ("nv_inference_request_success", "nv_inference_request_failure", "nv_inference_count",
                   "nv_inference_exec_count", "nv_inference_request_duration_us", "nv_inference_queue_duration_us",
                   "nv_inference_compute_infer_duration_us")


def scrape(server) -> dict[str, list]:
    """``/metrics`` parsed: family name -> its samples."""
    with urllib.request.urlopen(f"http://{server.url}/metrics", timeout=TIMEOUT) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def value(families, name: str, **labels) -> float:
    """The sum of the samples called ``name`` (in any family: histogram samples have suffixes) with ``labels``."""
    matching = [s.value for samples in families.values() for s in samples
                if s.name == name and labels.items() <= s.labels.items()]
    assert matching, f"no sample {name}{labels}"
    return sum(matching)


def _post(server, body: bytes, headers: dict, path: str = "/v2/models/tiny/infer") -> int:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=TIMEOUT)
    try:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def _grpc_infer(server, x: np.ndarray):
    client = triton_grpc.InferenceServerClient(server.grpc_url)
    tensor = triton_grpc.InferInput("input", list(x.shape), "FP32" if x.dtype == np.float32 else "FP64")
    tensor.set_data_from_numpy(x)
    try:
        return client.infer("tiny", [tensor])
    finally:
        client.close()


def test_counters_durations_and_batch_histogram_match_the_requests_and_the_batcher():
    config = ServeConfig(name="tiny", max_batch=8, max_delay_ms=20.0)
    with BackgroundServer(load_service(tiny_models().dynamic, config), grpc_port=0) as running, \
            BackgroundServer(load_service(tiny_models().dynamic, config), grpc_port=0) as other:
        rows = [1, 2, 4, 1, 3, 1, 2, 1, 1]
        http_ok = [(binary_request if i % 2 else json_request)(images(r, seed=i), f"m{i}") for i, r in
                   enumerate(rows[:5])]
        with ThreadPoolExecutor(8) as pool:  # concurrent, so that some of them share a run
            statuses = list(pool.map(lambda request: _post(running, *request), http_ok))
            grpc_answers = list(pool.map(lambda r: _grpc_infer(running, images(r, seed=r)), rows[5:]))
        assert statuses == [200] * 5 and len(grpc_answers) == 4
        wrong = images(1, seed=0).astype(np.float64)
        body = {"inputs": [{"name": "input", "shape": [1, *IMAGE_SHAPE], "datatype": "FP64",
                            "data": wrong.ravel().tolist()}]}
        assert _post(running, json.dumps(body).encode(), {}) == 400
        with pytest.raises(triton_grpc.InferenceServerException):
            _grpc_infer(running, wrong)
        assert _post(running, *json_request(images(1, seed=0), "x"), path="/v2/models/other/infer") == 404
        time.sleep(0.05)
        families = scrape(running)
        runs = running.service.batcher.stats()
        stats = json.loads(urllib.request.urlopen(f"http://{running.url}/v2/models/tiny/stats").read())
        untouched = scrape(other)

    labels = {"model": "tiny", "version": "1"}
    for name in TRITON_COUNTERS:
        assert all(s.labels.items() >= labels.items() for s in families[name]), name
    assert value(families, "nv_inference_request_success", **labels) == len(rows)
    assert value(families, "nv_inference_request_failure", **labels) == 2  # the unknown model is not this model's
    assert value(families, "nv_inference_request_failure", reason="OTHER") == 2
    assert value(families, "nv_inference_count", **labels) == sum(rows)
    assert value(families, "nv_inference_exec_count", **labels) == runs.runs
    assert runs.runs < len(rows), "no two requests shared a run: the histogram check below would be trivial"
    for name in ("nv_inference_request_duration_us", "nv_inference_queue_duration_us",
                 "nv_inference_compute_infer_duration_us"):
        assert value(families, name, **labels) > 0, name
    inference = stats["model_stats"][0]["inference_stats"]
    assert inference["success"]["count"] == len(rows) and inference["fail"]["count"] == 2
    assert value(families, "nv_inference_request_duration_us") == pytest.approx(
        (inference["success"]["ns"] + inference["fail"]["ns"]) / 1000)
    assert value(families, "nv_inference_compute_infer_duration_us") == pytest.approx(
        inference["compute_infer"]["ns"] / 1000)

    buckets = {s.labels["le"]: s.value for s in families["rfconv_inference_batch_size"]
               if s.name == "rfconv_inference_batch_size_bucket"}
    for le, count in buckets.items():
        bound = float(le)
        assert count == sum(n for size, n in runs.sizes.items() if size <= bound), le
    assert value(families, "rfconv_inference_batch_size_count") == runs.runs
    assert value(families, "rfconv_inference_batch_size_sum") == sum(rows)
    assert sum(runs.sizes.values()) == runs.runs and sum(s * n for s, n in runs.sizes.items()) == sum(rows)
    batch_stats = {b["batch_size"]: b["compute_infer"]["count"] for b in stats["model_stats"][0]["batch_stats"]}
    assert batch_stats == runs.sizes
    assert value(families, "nv_inference_pending_request_count") == 0

    assert value(untouched, "nv_inference_request_success") == 0, "two servers share a registry"
    assert value(untouched, "nv_inference_exec_count") == 0


def test_queue_depth_gauges_follow_the_queue():
    model = GatedModel()
    service = InferenceService(model, ServeConfig(name="tiny", max_batch=4, max_delay_ms=0.0))
    pool = ThreadPoolExecutor(3)
    with BackgroundServer(service) as running:
        try:
            held = pool.submit(_post, running, *binary_request(images(1, seed=1), "held"))
            assert model.entered.wait(TIMEOUT)
            queued = [pool.submit(_post, running, *binary_request(images(r, seed=r), "q")) for r in (2, 3)]
            deadline = time.monotonic() + TIMEOUT
            while running.service.batcher.queued < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            families = scrape(running)
            assert value(families, "nv_inference_pending_request_count") == 2
            assert value(families, "rfconv_inference_pending_rows") == 5
            model.gate.set()
            assert [f.result(TIMEOUT) for f in (held, *queued)] == [200] * 3
            assert value(scrape(running), "nv_inference_pending_request_count") == 0
        finally:
            model.gate.set()
            pool.shutdown()


def test_stats_of_an_unknown_model_are_404_and_every_model_form_works():
    with BackgroundServer(load_service(tiny_models().dynamic, ServeConfig(name="tiny"))) as running:
        for path, status in (("/v2/models/other/stats", 404), ("/v2/models/tiny/versions/2/stats", 404),
                             ("/v2/models/stats", 200), ("/v2/models/tiny/versions/1/stats", 200),
                             ("/v2/models/other/config", 404), ("/v2/models/tiny/config", 200)):
            conn = http.client.HTTPConnection(running.host, running.port, timeout=TIMEOUT)
            conn.request("GET", path)
            response = conn.getresponse()
            body = json.loads(response.read())
            conn.close()
            assert response.status == status, path
            if status == 404:
                assert "error" in body
        assert list(IMAGE_SHAPE) == json.loads(
            urllib.request.urlopen(f"http://{running.url}/v2/models/tiny/config").read())["input"][0]["dims"]


def test_config_json_of_a_fixed_batch_model_prints_its_zero_max_batch_size():
    """As Triton's HTTP API: scalar fields at their defaults are written (tritonclient users read them)."""
    with BackgroundServer(load_service(tiny_models().fixed, ServeConfig(name="fixed"))) as running:
        config = json.loads(urllib.request.urlopen(f"http://{running.url}/v2/models/fixed/config").read())
    assert config["max_batch_size"] == 0 and "dynamic_batching" not in config
    assert config["input"][0]["dims"] == [1, *IMAGE_SHAPE] and config["instance_group"][0]["kind"] == "KIND_CPU"
