"""``serve --provider openvino``: the server built by ``load_service`` on OpenVINO's CPU plugin
answers as in-process ONNX Runtime does, over HTTP and gRPC (tritonclient), with batching; the
banner and ``/v2/models/NAME/config`` say the provider."""

from __future__ import annotations

import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from exporter.backends import availability
from exporter.cli import main
from exporter.serving import openvino as serving_openvino
from exporter.serving.config import ServeConfig
from tests.helpers.export_models import ort_session, rel_err
from tests.helpers.serving_models import IMAGE_SHAPE, tiny_models

needs_openvino = pytest.mark.skipif(not availability.ov_cpu().available, reason=availability.ov_cpu().detail)
FP32_NOISE = 1e-5
"""Largest error relative to the largest reference value two fp32 CPU engines differ by here."""


class Gated(serving_openvino.OpenVinoModel):
    """Once ``armed``, holds its first run until ``release`` is set, so the next requests queue and
    are batched together; records the rows of every armed run."""

    def __init__(self, path, **options):
        super().__init__(path, **options)
        self.armed, self.entered, self.release, self.rows = False, threading.Event(), threading.Event(), []

    def run(self, feeds):
        if self.armed:
            self.rows.append(next(iter(feeds.values())).shape[0])
            if len(self.rows) == 1:
                self.entered.set()
                assert self.release.wait(60)
        return super().run(feeds)


@needs_openvino
def test_served_on_openvino_over_http_and_grpc_with_batching_equals_onnx_runtime(monkeypatch):
    import tritonclient.grpc as triton_grpc
    import tritonclient.http as triton_http
    from tritonclient.grpc import model_config_pb2 as pb

    from exporter.serving.server import BackgroundServer, load_service

    monkeypatch.setattr(serving_openvino, "OpenVinoModel", Gated)
    path = tiny_models().dynamic
    service = load_service(path, ServeConfig(name="tiny", max_batch=4, max_delay_ms=0.0), "openvino")
    model = service.model
    assert isinstance(model, Gated) and model.providers == ["OpenVINO CPU"]
    assert service.describe().startswith("providers OpenVINO CPU; batches of up to 4 rows")
    config = service.model_config()
    assert config.parameters["execution_provider"].string_value == "OpenVINO CPU"
    assert [g.kind for g in config.instance_group] == [pb.ModelInstanceGroup.KIND_CPU]
    assert [a.name for a in config.optimization.execution_accelerators.cpu_execution_accelerator] == ["openvino"]
    assert not config.optimization.execution_accelerators.gpu_execution_accelerator
    reference = ort_session(path)
    inputs = [np.random.default_rng(seed).standard_normal((1, *IMAGE_SHAPE), dtype=np.float32) for seed in range(5)]

    def over_http(x):
        client = triton_http.InferenceServerClient(server.url, network_timeout=60)
        tensor = triton_http.InferInput("input", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x, binary_data=True)
        try:
            return client.infer("tiny", [tensor]).as_numpy("logits")
        finally:
            client.close()

    def over_grpc(x):
        client = triton_grpc.InferenceServerClient(server.grpc_url)
        tensor = triton_grpc.InferInput("input", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        try:
            return client.infer("tiny", [tensor]).as_numpy("logits")
        finally:
            client.close()

    model.armed = True  # after the warm-up run
    with BackgroundServer(service, grpc_port=0) as server, ThreadPoolExecutor(5) as pool:
        served = triton_http.InferenceServerClient(server.url).get_model_config("tiny")
        assert served["parameters"]["execution_provider"]["string_value"] == "OpenVINO CPU"
        first = pool.submit(over_http, inputs[0])
        assert model.entered.wait(60)  # the worker holds the first run: the next four queue
        rest = [pool.submit(over_grpc if i % 2 else over_http, x) for i, x in enumerate(inputs[1:], 1)]
        deadline = time.monotonic() + 60
        while service.batcher.queued_rows < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert service.batcher.queued_rows == 4
        model.release.set()
        answers = [first.result(60)] + [future.result(60) for future in rest]
    assert model.rows[0] == 1 and max(model.rows[1:]) > 1 and sum(model.rows) == 5  # batched
    for x, got in zip(inputs, answers, strict=True):
        want = reference.run(["logits"], {"input": x})[0]
        assert rel_err(got, want) < FP32_NOISE


@needs_openvino
def test_shape_range_bounds_what_openvino_serves():
    from exporter.serving.server import load_service

    service = load_service(tiny_models().dynamic_hw, ServeConfig(name="tiny", max_batch=2), "openvino",
                           min_shapes="input:1x3x8x8", opt_shapes="input:1x3x16x16", max_shapes="input:2x3x32x32")
    assert [p.name for p in service.profiles] == ["input"] and service.profiles[0].max == (2, 3, 32, 32)


def test_trt_cache_is_not_for_openvino(tmp_path, capsys):
    code = main(["serve", str(tiny_models().dynamic), "--provider", "openvino", "--trt-cache", str(tmp_path)])
    assert code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "TensorRT" in line and "openvino" in line


def test_provider_openvino_without_openvino_is_one_line(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "openvino", None)
    assert main(["serve", str(tiny_models().dynamic), "--provider", "openvino", "--port", "0"]) != 0
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "provider openvino cannot run here: openvino does not import" in line
