"""Dense prediction and several inputs through the KServe v2 server (issue 16).

A dynamic-H/W segmentation file (``{"out": [N, C, H, W]}``) is served with requests of two sizes sent
at once: each answer equals a separate in-process ONNX Runtime session on that request, and every
run the batcher made held one size only (the model's runs are recorded). A two-input file (image and
per-channel vector) is served the same way. Only the tests are new here: the server needed no change.
"""

from __future__ import annotations

import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnxruntime
import pytest
import torch
import tritonclient.http as triton_http

from exporter import export_onnx
from exporter.serving.server import BackgroundServer
from exporter.serving.service import InferenceService, ServeConfig
from exporter.serving.session import OrtModel
from tests.helpers.dense_models import CLASSES, tiny_segmenter
from tests.helpers.export_models import ImageAndGain

SIZES = [(24, 32), (37, 19)]  # (H, W): two sizes, one odd


class RecordingModel(OrtModel):
    """The server's model, recording the input shapes of every run the batcher makes."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.runs: list[dict[str, tuple]] = []
        self._lock = threading.Lock()

    def run(self, feeds):
        with self._lock:
            self.runs.append({name: array.shape for name, array in feeds.items()})
        return super().run(feeds)


@pytest.fixture(scope="module")
def dense_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("dense") / "seg.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_onnx(tiny_segmenter(), torch.randn(1, 3, 32, 32), path, dynamic_hw=True)
    return path


def _serve(path, **config):
    model = RecordingModel(path, ["CPUExecutionProvider"])
    return model, BackgroundServer(InferenceService(model, ServeConfig(name="m", **config)))


def _infer(url: str, feeds: dict[str, np.ndarray], output: str) -> np.ndarray:
    client = triton_http.InferenceServerClient(url, connection_timeout=30, network_timeout=30)
    try:
        tensors = []
        for name, array in feeds.items():
            tensor = triton_http.InferInput(name, list(array.shape), "FP32")
            tensor.set_data_from_numpy(array, binary_data=True)
            tensors.append(tensor)
        result = client.infer("m", tensors, outputs=[triton_http.InferRequestedOutput(output, binary_data=True)])
        return result.as_numpy(output)
    finally:
        client.close()


def test_dense_file_declares_any_size(dense_file):
    model = OrtModel(dense_file, ["CPUExecutionProvider"])
    assert [(s.name, s.shape) for s in model.inputs] == [("input", (-1, 3, -1, -1))]
    assert [(s.name, s.shape) for s in model.outputs] == [("out", (-1, CLASSES, -1, -1))]
    assert model.batchable


def test_concurrent_requests_of_two_sizes_batch_by_size(dense_file):
    reference = onnxruntime.InferenceSession(str(dense_file), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    requests = [rng.standard_normal((1 + i % 2, 3, *SIZES[i % 2])).astype(np.float32) for i in range(24)]
    model, server = _serve(dense_file, max_batch=8, max_delay_ms=50.0)
    with server:
        with ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(lambda x: _infer(server.url, {"input": x}, "out"), requests))
        stats = server.service.batcher.stats()
    for x, got in zip(requests, answers, strict=True):
        (want,) = reference.run(["out"], {"input": x})
        assert got.shape == (x.shape[0], CLASSES, *x.shape[2:])
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert stats.requests == len(requests) and stats.runs == len(model.runs)
    assert sum(run["input"][0] for run in model.runs) == sum(x.shape[0] for x in requests)  # each row ran once
    assert stats.runs < len(requests), "requests of one size were not stacked at all"
    assert {run["input"][2:] for run in model.runs} == set(SIZES)  # every run holds one size: stacked on dim 0
    assert any(run["input"][0] > 2 for run in model.runs)


def test_two_input_file_is_served(tmp_path):
    path = tmp_path / "two.onnx"
    gen = torch.Generator().manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_onnx(ImageAndGain(), (torch.randn(2, 3, 16, 16, generator=gen), torch.rand(2, 8, generator=gen)),
                    path, input_names=["image", "gain"], output_names=["features"], dynamic_hw=True)
    reference = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    requests = [{"image": rng.standard_normal((2, 3, 16 + 4 * (i % 2), 16)).astype(np.float32),
                 "gain": rng.random((2, 8)).astype(np.float32)} for i in range(8)]
    model, server = _serve(path, max_batch=8, max_delay_ms=50.0)
    with server:
        metadata = triton_http.InferenceServerClient(server.url).get_model_metadata("m")
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda feeds: _infer(server.url, feeds, "features"), requests))
        with pytest.raises(Exception, match=r"missing input 'gain'"):
            _infer(server.url, {"image": requests[0]["image"]}, "features")
    assert [(i["name"], i["shape"]) for i in metadata["inputs"]] == [("image", [-1, 3, -1, -1]), ("gain", [-1, 8])]
    for feeds, got in zip(requests, answers, strict=True):
        np.testing.assert_allclose(got, reference.run(["features"], feeds)[0], rtol=1e-5, atol=1e-5)
    for run in model.runs:  # stacked along dim 0 only, one image size per run, the gain with its images
        assert run["gain"][0] == run["image"][0] and run["image"][2:] in {(16, 16), (20, 16)}


def test_triton_config_of_a_dense_file_has_any_size_spatial_dims(dense_file, tmp_path):
    """`triton` on a real dynamic-H/W segmentation export: input [N,3,-1,-1] -> dims [3,-1,-1], output
    [N,C,-1,-1] -> [C,-1,-1], batched (max_batch_size > 0, the batch left out of dims)."""
    from exporter.serving.triton_repo import read_config, write_repository

    written = write_repository(dense_file, tmp_path / "repo", name="seg", max_batch=4)
    config = read_config(written.config_path)
    assert config.max_batch_size == 4 and config.dynamic_batching.max_queue_delay_microseconds > 0
    assert [(t.name, list(t.dims)) for t in config.input] == [("input", [3, -1, -1])]
    assert [(t.name, list(t.dims)) for t in config.output] == [("out", [CLASSES, -1, -1])]


def _example():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "deploy_examples" / "serve_segmentation.py"
    spec = importlib.util.spec_from_file_location("serve_segmentation", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    return example


def test_segmentation_deploy_example_with_a_small_model(tmp_path, capsys):
    """deploy_examples/serve_segmentation.py: export, `rfconv-deploy serve` (a subprocess), tritonclient at 2 sizes."""
    argv = ["--model", "tests.helpers.dense_models:tiny_segmenter", "--example-size", "32x32",
            "--sizes", "40x48,37x29", "--out", str(tmp_path)]
    assert _example().main(argv) == 0
    printed = capsys.readouterr().out
    assert "40x48: served [1, 5, 40, 48]" in printed and "37x29: served [1, 5, 37, 29]" in printed
    assert printed.count("-> ok") == 2


@pytest.mark.slow
def test_segmentation_deploy_example_with_fcn_resnet50(tmp_path):
    assert _example().main(["--out", str(tmp_path)]) == 0
