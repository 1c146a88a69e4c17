"""ONNX Runtime session wrapper: specs, provider choice, and outputs against the PyTorch model."""

from __future__ import annotations

import numpy as np
import onnxruntime
import pytest
import torch

from exporter.serving.session import CPU_EP, CUDA_EP, TENSORRT_EP, OrtModel, TensorSpec, select_providers
from tests.serving_models import IMAGE_SHAPE, tiny_models


def test_specs_and_batchability():
    models = tiny_models()
    dynamic = OrtModel(models.dynamic, [CPU_EP])
    assert dynamic.inputs == [TensorSpec("input", "FP32", (-1, *IMAGE_SHAPE))]
    assert dynamic.outputs == [TensorSpec("logits", "FP32", (-1, 10))]
    assert dynamic.batchable and dynamic.providers == [CPU_EP] and dynamic.device == "cpu"
    fixed = OrtModel(models.fixed, [CPU_EP])
    assert fixed.inputs == [TensorSpec("input", "FP32", (1, *IMAGE_SHAPE))]
    assert not fixed.batchable


@pytest.mark.parametrize("io_binding", [False, True], ids=["session.run", "io-binding"])
def test_outputs_match_pytorch(io_binding):
    models = tiny_models()
    model = OrtModel(models.dynamic, [CPU_EP], io_binding=io_binding)
    x = np.random.default_rng(0).standard_normal((5, *IMAGE_SHAPE)).astype(np.float32)
    got = model.run({"input": x})
    assert list(got) == ["logits"]
    with torch.no_grad():
        want = models.torch_model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got["logits"], want, rtol=1e-4, atol=1e-5)


def test_provider_preference_order():
    everything = [CPU_EP, CUDA_EP, TENSORRT_EP, "OpenVINOExecutionProvider"]
    assert select_providers("auto", everything) == [TENSORRT_EP, CUDA_EP, CPU_EP]
    assert select_providers("auto", [CUDA_EP, CPU_EP]) == [CUDA_EP, CPU_EP]
    assert select_providers("cuda", everything) == [CUDA_EP, CPU_EP]
    assert select_providers("cpu", everything) == [CPU_EP]
    with pytest.raises(RuntimeError, match="onnxruntime-gpu"):
        select_providers("tensorrt", [CPU_EP])
    with pytest.raises(ValueError, match="not one of"):
        select_providers("rocm", everything)
    assert select_providers()[-1] == CPU_EP
    assert set(select_providers()) <= set(onnxruntime.get_available_providers())


def test_bad_model_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        OrtModel(tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a protobuf")
    with pytest.raises(ValueError, match="junk.onnx"):
        OrtModel(junk)
