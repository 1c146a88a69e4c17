"""ONNX Runtime session wrapper: specs, provider choice, and outputs against the PyTorch model."""

from __future__ import annotations

import numpy as np
import onnxruntime
import pytest
import torch

from exporter.backends.availability import CPU_EP, CUDA_EP, TENSORRT_EP
from exporter.backends.ort import ProviderUnavailable, select_providers, tensorrt_ep_options
from exporter.serving.model_io import onnx_io
from exporter.serving.session import OrtModel, TensorSpec, served_profiles, warm_up_shapes
from exporter.shapes import InputProfile
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
    # the TensorRT EP's nodes it rejects go to CUDA, not to the CPU
    assert select_providers("tensorrt", everything) == [TENSORRT_EP, CUDA_EP, CPU_EP]
    with pytest.raises(RuntimeError, match="onnxruntime-gpu"):
        select_providers("tensorrt", [CPU_EP])
    with pytest.raises(ProviderUnavailable, match=CUDA_EP):
        select_providers("tensorrt", [TENSORRT_EP, CPU_EP])
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
    assert {k: v for k, v in options.items() if k.startswith("trt_profile_")} == {
        "trt_profile_min_shapes": "input:1x3x224x224,scale:1x1",
        "trt_profile_opt_shapes": "input:8x3x224x224,scale:8x1",
        "trt_profile_max_shapes": "input:8x3x224x224,scale:8x1",
    }
    for fixed_or_hw in ((-1, 3, -1, -1), (1, 3, 8, 8)):
        assert not any(k.startswith("trt_profile_") for k in tensorrt_ep_options([TensorSpec("input", "FP32",
                                                                                            fixed_or_hw)], 8))
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


@pytest.mark.filterwarnings("ignore:Specified provider")
def test_a_provider_asked_for_runs_or_the_session_is_not_made(monkeypatch):
    """A requested provider that ONNX Runtime leaves out of the session is an error naming it, never a
    CPU session (ONNX Runtime only warns and drops a provider it cannot use)."""
    import exporter.backends.ort as ort

    # only the check of the session's providers after creation can catch it (no library probe first)
    monkeypatch.setattr(ort, "provider_load_error", lambda provider: None)
    with pytest.raises(ProviderUnavailable, match=f"{CUDA_EP} did not load: .*session providers: {CPU_EP}"):
        OrtModel(tiny_models().dynamic, [CUDA_EP, CPU_EP])
    model = OrtModel(tiny_models().dynamic, [CUDA_EP, CPU_EP], required=[CPU_EP])  # as --provider auto asks
    assert model.providers == [CPU_EP] and model.device == "cpu" and model.tf32 is None
    assert not model.session._enable_fallback  # ONNX Runtime's run-time rebuild on the CPU is off too


def test_warm_up_runs_every_batch_size_and_the_corners_of_the_range():
    hw = [TensorSpec("input", "FP32", (-1, 3, -1, -1))]
    profile = InputProfile("input", (1, 3, 16, 24), (4, 3, 32, 32), (8, 3, 48, 64), dynamic=True)
    shapes = [s["input"] for s in warm_up_shapes(hw, (profile,), 3, True)]
    assert shapes[:3] == [(1, 3, 32, 32), (2, 3, 32, 32), (3, 3, 32, 32)]
    corners = {(h, w) for h in (16, 48) for w in (24, 64)}
    assert {s[2:] for s in shapes[3:]} == corners and {s[0] for s in shapes[3:]} == {1, 3}
    assert len(shapes) == len(set(shapes)) == 3 + 2 * len(corners)
    assert warm_up_shapes(hw, (), 3, True) == []  # no sizes known: nothing to warm up at
    fixed = [TensorSpec("input", "FP32", (1, 3, 8, 8))]
    assert warm_up_shapes(fixed, (), 8, False) == [{"input": (1, 3, 8, 8)}]
    lines = []
    model = OrtModel(tiny_models().dynamic_hw, [CPU_EP])
    profiles = served_profiles(model.inputs, 2, True, min_shapes="1x3x16x16", max_shapes="2x3x24x32")
    ran = model.warm_up(warm_up_shapes(model.inputs, profiles, 2, True), lines.append)
    assert [dict(s) for s, _ in ran] == warm_up_shapes(model.inputs, profiles, 2, True) and len(lines) == len(ran)
    assert all(line.startswith(f"warm-up on {CPU_EP}: input ") for line in lines)
