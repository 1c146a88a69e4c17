"""The shape range of a dynamic-H/W model (``serve``/``triton`` ``--min/opt/max-shape``).

Without it, ONNX Runtime's TensorRT EP had no optimization profile for a dynamic-H/W file (only
dynamic-batch files with fixed H/W got one), so every new input size built an engine while
serving. The range is the EP's profile and, in ``serve``, the shapes accepted (others get 400 on
every provider). The TensorRT EP cannot run here: its options are checked as the strings ONNX
Runtime documents (``trt_profile_{min,opt,max}_shapes``, ``name:1x3x224x224`` lists); the
server's range check runs on the CPU provider, against outputs of a separate ONNX Runtime session.
"""

from __future__ import annotations

import json

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
from tritonclient.utils import InferenceServerException

from exporter.backends.ort import tensorrt_ep_options
from exporter.cli import main
from exporter.serving.server import BackgroundServer, load_service
from exporter.serving.service import ServeConfig
from exporter.serving.session import TensorSpec, served_profiles
from exporter.serving.triton_repo import write_repository
from exporter.shapes import InputProfile
from tests.helpers.serving_models import tiny_models
from tests.serving.test_serving_abuse import _reference
from tests.serving.test_serving_server import binary_request, logits_of, post

HW = [TensorSpec("input", "FP32", (-1, 3, -1, -1))]
RANGE = {"min_shapes": "1x3x16x16", "opt_shapes": "4x3x32x32", "max_shapes": "8x3x48x48"}


def test_served_profiles_complete_and_check_the_range():
    assert served_profiles(HW, 8, True) == ()
    assert served_profiles(HW, 8, True, **RANGE) == (
        InputProfile("input", (1, 3, 16, 16), (4, 3, 32, 32), (8, 3, 48, 48), dynamic=True),)
    # a server stacks 1 to max_batch rows: the range's batch must cover them
    with pytest.raises(ValueError, match=r"batch \(first dim\) is 2 to 8, .* max_batch=8: give "
                                         r"min_shapes='1x3x16x16' and max_shapes='8x3x48x48'"):
        served_profiles(HW, 8, True, min_shapes="2x3x16x16", max_shapes="8x3x48x48")
    with pytest.raises(ValueError, match=r"is 1 to 4, .* max_batch=8"):
        served_profiles(HW, 8, True, min_shapes="1x3x16x16", max_shapes="4x3x48x48")
    # a fixed batch is the model's own: no batch rule
    fixed = [TensorSpec("input", "FP32", (2, 3, -1, -1))]
    (profile,) = served_profiles(fixed, 8, False, min_shapes="2x3x16x16", max_shapes="2x3x32x32")
    assert profile.contains((2, 3, 20, 32)) and not profile.contains((2, 3, 40, 32))
    with pytest.raises(ValueError, match="does not fit input 'input'"):
        served_profiles(HW, 8, True, opt_shapes="4x1x32x32")


def test_tensorrt_ep_profile_is_the_range_of_every_dynamic_input():
    specs = [*HW, TensorSpec("gain", "FP32", (1, 4))]
    profiles = served_profiles(specs, 8, False, **{k: f"input:{v}" for k, v in RANGE.items()})
    assert [p.dynamic for p in profiles] == [True, False]
    options = tensorrt_ep_options(specs, 8, profiles)
    assert {k: v for k, v in options.items() if k.startswith("trt_profile_")} == {  # the static input needs none
        "trt_profile_min_shapes": "input:1x3x16x16",
        "trt_profile_opt_shapes": "input:4x3x32x32",
        "trt_profile_max_shapes": "input:8x3x48x48",
    }
    assert not any(k.startswith("trt_profile_") for k in tensorrt_ep_options(HW, 8))  # H/W without a range


@pytest.fixture(scope="module")
def ranged():
    config = ServeConfig(name="tiny", max_batch=8)
    with BackgroundServer(load_service(tiny_models().dynamic_hw, config, **RANGE), grpc_port=0) as running:
        yield running


@pytest.mark.parametrize("shape", [(2, 3, 24, 40), (1, 3, 16, 16), (8, 3, 48, 48)])
def test_shapes_in_the_range_are_served(ranged, shape):
    x = np.random.default_rng(sum(shape)).standard_normal(shape).astype(np.float32)
    status, headers, body = post(ranged, *binary_request(x, "in"))
    assert status == 200, body
    np.testing.assert_allclose(logits_of(headers, body)[1], _reference(tiny_models().dynamic_hw, x),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", [(1, 3, 64, 64), (1, 3, 8, 16), (1, 3, 32, 49)])
def test_shapes_outside_the_range_get_400_naming_it(ranged, shape):
    status, _, body = post(ranged, *binary_request(np.zeros(shape, np.float32), "out"))
    assert status == 400
    error = json.loads(body)["error"]
    assert f"[{','.join(map(str, shape))}]" in error and "1x3x16x16..8x3x48x48" in error
    assert "--min-shape/--max-shape" in error
    client = triton_grpc.InferenceServerClient(ranged.grpc_url)
    request = triton_grpc.InferInput("input", list(shape), "FP32")
    request.set_data_from_numpy(np.zeros(shape, np.float32))
    with pytest.raises(InferenceServerException, match="outside the shapes this server accepts") as caught:
        client.infer("tiny", [request])
    assert caught.value.status() == str(grpc.StatusCode.INVALID_ARGUMENT)
    client.close()


def test_the_banner_names_the_range(ranged):
    assert "input 'input' 1x3x16x16..8x3x48x48" in ranged.service.describe()


def test_cli_serve_refuses_a_range_short_of_max_batch_in_flags(capsys):
    assert main(["serve", str(tiny_models().dynamic_hw), "--no-grpc", "--port", "0", "--max-shape", "4x3x32x32"]) == 2
    err = capsys.readouterr().err
    assert "--max-batch 8" in err and "--min-shape 1x3x32x32 and --max-shape 8x3x32x32" in err, err
    assert err.count("\n") == 1


def _tensorrt_parameters(written) -> dict:
    (accelerator,) = written.config.optimization.execution_accelerators.gpu_execution_accelerator
    return dict(accelerator.parameters)


def test_triton_repository_gets_the_range_as_the_tensorrt_profile(tmp_path):
    written = write_repository(tiny_models().dynamic_hw, tmp_path / "repo", name="hw", **RANGE)
    parameters = _tensorrt_parameters(written)
    assert (parameters["trt_profile_min_shapes"], parameters["trt_profile_opt_shapes"],
            parameters["trt_profile_max_shapes"]) == ("input:1x3x16x16", "input:4x3x32x32", "input:8x3x48x48")
    assert "# the TensorRT EP's profile: input 1x3x16x16..8x3x48x48" in written.config_path.read_text()
    bare = write_repository(tiny_models().dynamic_hw, tmp_path / "bare", name="hw")
    assert not any(key.startswith("trt_profile") for key in _tensorrt_parameters(bare))
    assert any("builds an engine for every new input size" in note for note in bare.notes)
    with pytest.raises(ValueError, match="the CUDA EP takes any shape"):
        write_repository(tiny_models().dynamic_hw, tmp_path / "cuda", accelerator="cuda", **RANGE)


def test_cli_triton_passes_the_range_and_names_flags(tmp_path, capsys):
    args = ["triton", str(tiny_models().dynamic_hw), "--repo", str(tmp_path), "--name", "hw"]
    assert main([*args, "--min-shape", "1x3x16x16", "--max-shape", "8x3x48x48"]) == 0
    assert "input 1x3x16x16..8x3x48x48" in capsys.readouterr().out
    assert main([*args, "--accelerator", "cuda", "--max-shape", "8x3x48x48"]) == 2
    assert "--min-shape/--opt-shape/--max-shape set the TensorRT EP's profile" in capsys.readouterr().err
