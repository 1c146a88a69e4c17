"""ONNX Runtime session wrapper: specs, provider choice, and outputs against the PyTorch model."""

from __future__ import annotations

import numpy as np
import onnxruntime
import pytest
import torch

from exporter.backends.availability import CPU_EP, CUDA_EP, TENSORRT_EP
from exporter.serving.model_io import onnx_io
from exporter.serving.session import (
    OrtModel,
    TensorSpec,
    select_providers,
    tensorrt_ep_options,
)
from tests.helpers.serving_models import IMAGE_SHAPE, tiny_models


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


def test_graph_io_agrees_with_the_session():
    for path in (tiny_models().dynamic, tiny_models().fixed):
        session = OrtModel(path, [CPU_EP])
        assert onnx_io(path) == (session.inputs, session.outputs)


def test_tensorrt_profile_covers_batch_1_to_max():
    specs = [TensorSpec("input", "FP32", (-1, 3, 224, 224)), TensorSpec("scale", "FP32", (-1, 1))]
    options = tensorrt_ep_options(specs, 8)
    assert options == {
        "trt_profile_min_shapes": "input:1x3x224x224,scale:1x1",
        "trt_profile_opt_shapes": "input:8x3x224x224,scale:8x1",
        "trt_profile_max_shapes": "input:8x3x224x224,scale:8x1",
    }
    assert tensorrt_ep_options([TensorSpec("input", "FP32", (-1, 3, -1, -1))], 8) == {}
    assert tensorrt_ep_options([TensorSpec("input", "FP32", (1, 3, 8, 8))], 8) == {}
    chosen = select_providers("auto", [TENSORRT_EP, CUDA_EP, CPU_EP], tensorrt_options=options)
    assert chosen == [(TENSORRT_EP, options), CUDA_EP, CPU_EP]
    assert select_providers("auto", [CPU_EP], tensorrt_options=options) == [CPU_EP]


@pytest.mark.parametrize("reader", [OrtModel, onnx_io], ids=["session", "graph"])
def test_bad_model_files(tmp_path, reader):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        reader(tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a protobuf")
    with pytest.raises(ValueError, match="junk.onnx"):
        reader(junk)
