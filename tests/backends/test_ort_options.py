"""The TensorRT EP's options (exporter.backends.ort.tensorrt_ep_options) for every kind of file,
checked against the option names ONNX Runtime's TensorrtExecutionProvider accepts."""

from __future__ import annotations

import pytest

from exporter.backends.ort import PROVIDER_ALIASES, model_cache_dir, model_digest, tensorrt_ep_options
from exporter.serving.session import TensorSpec, served_profiles

# onnxruntime/core/providers/tensorrt/tensorrt_execution_provider_info.cc (provider_option_names)
ORT_TRT_OPTIONS = {
    "device_id", "trt_max_partition_iterations", "trt_min_subgraph_size", "trt_max_workspace_size",
    "trt_fp16_enable", "trt_int8_enable", "trt_int8_calibration_table_name", "trt_int8_use_native_calibration_table",
    "trt_dla_enable", "trt_dla_core", "trt_dump_subgraphs", "trt_engine_cache_enable", "trt_engine_cache_path",
    "trt_engine_cache_prefix", "trt_engine_decryption_enable", "trt_engine_decryption_lib_path",
    "trt_force_sequential_engine_build", "trt_context_memory_sharing_enable", "trt_layer_norm_fp32_fallback",
    "trt_timing_cache_enable", "trt_timing_cache_path", "trt_force_timing_cache", "trt_detailed_build_log",
    "trt_build_heuristics_enable", "trt_sparsity_enable", "trt_builder_optimization_level", "trt_auxiliary_streams",
    "trt_tactic_sources", "trt_extra_plugin_lib_paths", "trt_profile_min_shapes", "trt_profile_max_shapes",
    "trt_profile_opt_shapes", "trt_cuda_graph_enable",
}
BOOLEANS = {"True", "False", "true", "false", "1", "0"}

STATIC = [TensorSpec("input", "FP32", (1, 3, 32, 32))]
BATCH = [TensorSpec("input", "FP32", (-1, 3, 32, 32))]
HW = [TensorSpec("input", "FP32", (-1, 3, -1, -1))]


def _checked(options: dict[str, str]) -> dict[str, str]:
    assert set(options) <= ORT_TRT_OPTIONS, set(options) - ORT_TRT_OPTIONS
    assert all(isinstance(v, str) and v for v in options.values()), options  # the EP throws on empty values
    for key, value in options.items():
        if key.endswith("_enable"):
            assert value in BOOLEANS
    return options


def _profile(options: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in options.items() if k.startswith("trt_profile_")}


def test_a_static_file_with_a_shape_range_gets_no_empty_profile():
    """A static-shape file served with --min/--opt/--max-shape: no trt_profile_* keys (they were ""
    and the EP threw, which ONNX Runtime's fallback turned into a CPU session)."""
    profiles = served_profiles(STATIC, 8, False, min_shapes="1x3x32x32", max_shapes="1x3x32x32")
    options = _checked(tensorrt_ep_options(STATIC, 8, profiles))
    assert _profile(options) == {}
    assert _profile(_checked(tensorrt_ep_options(STATIC, 8))) == {}


def test_dynamic_batch_and_dynamic_hw_profiles():
    assert _profile(_checked(tensorrt_ep_options(BATCH, 4))) == {
        "trt_profile_min_shapes": "input:1x3x32x32", "trt_profile_opt_shapes": "input:4x3x32x32",
        "trt_profile_max_shapes": "input:4x3x32x32"}
    profiles = served_profiles(HW, 4, True, min_shapes="1x3x16x16", opt_shapes="2x3x32x32", max_shapes="4x3x64x48")
    assert _profile(_checked(tensorrt_ep_options(HW, 4, profiles))) == {
        "trt_profile_min_shapes": "input:1x3x16x16", "trt_profile_opt_shapes": "input:2x3x32x32",
        "trt_profile_max_shapes": "input:4x3x64x48"}
    assert _profile(_checked(tensorrt_ep_options(HW, 4))) == {}  # no range given: none to build


@pytest.mark.parametrize(("precision", "build_fp16", "fp16", "int8"), [
    ("fp32", False, False, False),
    ("fp32", True, True, False),
    ("fp16", False, True, False),  # fp32 I/O, fp16 inside: the weakly typed EP needs the switch
    ("mixed", False, True, False),
    ("int8", False, False, True),  # Q/DQ: int8 on, scales from the file
])
def test_precision_switches_follow_the_file(precision, build_fp16, fp16, int8):
    options = _checked(tensorrt_ep_options(BATCH, 8, precision=precision, build_fp16=build_fp16))
    assert ("trt_fp16_enable" in options) == fp16 and ("trt_int8_enable" in options) == int8
    assert options["trt_max_workspace_size"] == str(1 << 30)
    with pytest.raises(ValueError, match="precision 'bf16'"):
        tensorrt_ep_options(BATCH, 8, precision="bf16")


def test_a_plugin_file_is_refused():
    with pytest.raises(ValueError, match="custom ops .*rfconv.RFConvRectify.* static-mode export"):
        tensorrt_ep_options(BATCH, 8, custom_ops=["rfconv.RFConvRectify"])


def test_an_input_name_with_a_colon_cannot_get_a_profile():
    """ONNX Runtime splits each profile entry at its first ':' (MakeInputNameShapePair): 'a:b:1x3x8x8'
    would be input 'a' with shape 'b:1x3x8x8'. Refused with the reason; a static input needs no entry."""
    with pytest.raises(ValueError, match="'image:0'.*first ':'"):
        tensorrt_ep_options([TensorSpec("image:0", "FP32", (-1, 3, 8, 8))], 8)
    assert _profile(tensorrt_ep_options([TensorSpec("image:0", "FP32", (1, 3, 8, 8))], 8)) == {}


def test_caches_are_keyed_by_the_file_contents(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"weights v1")
    first = model_cache_dir(tmp_path / "cache", model)
    options = _checked(tensorrt_ep_options(BATCH, 8, cache_dir=first))
    assert options["trt_engine_cache_enable"] == options["trt_timing_cache_enable"] == "True"
    assert options["trt_engine_cache_path"] == options["trt_timing_cache_path"] == str(first) and first.is_dir()
    assert model_cache_dir(tmp_path / "cache", model) == first  # same bytes, same folder
    model.write_bytes(b"weights v2")  # a re-export under the same name: never the old engine
    assert model_cache_dir(tmp_path / "cache", model) != first
    (tmp_path / "m.onnx.data").write_bytes(b"external weights")
    assert model_digest(model) != model_digest(tmp_path / "m.onnx.data")
    digest = model_digest(model)
    (tmp_path / "m.onnx.data").write_bytes(b"other external weights")
    assert model_digest(model) != digest  # external data counts too
    blocked = tmp_path / "file"
    blocked.write_text("")
    with pytest.raises(OSError, match="--trt-cache"):
        model_cache_dir(blocked, model)


def test_provider_aliases_are_the_cli_choices():
    from exporter.cli import build_parser

    serve = build_parser()._subparsers._group_actions[0].choices["serve"]
    (provider,) = [a for a in serve._actions if a.dest == "provider"]
    assert set(provider.choices) == {"auto", *PROVIDER_ALIASES, "openvino"}  # openvino: OpenVINO, not an ORT EP


def test_compare_backends_providers():
    """compare's ort-cuda runs with TF32 off (the noise floor is fp32's); ort-trt is [TensorRT, CUDA] with the
    file's precision switch (an fp16 file ran fp32 kernels without trt_fp16_enable; the runner had [TensorRT])."""
    from exporter.backends.availability import CPU_EP, CUDA_EP, TENSORRT_EP
    from exporter.backends.runners import RunnerOptions, ort_providers

    assert ort_providers("ort-cpu", RunnerOptions()) == [CPU_EP]
    assert ort_providers("ort-cuda", RunnerOptions()) == [(CUDA_EP, {"use_tf32": "0"})]
    for model_precision, asked, switch in (("fp16", "fp16", "trt_fp16_enable"), ("int8", "fp32", "trt_int8_enable"),
                                           ("fp32", "fp16", "trt_fp16_enable")):
        (trt, trt_options), cuda = ort_providers("ort-trt", RunnerOptions(asked, model_precision))
        assert trt == TENSORRT_EP and cuda == (CUDA_EP, {"use_tf32": "0"})
        assert _checked(trt_options)[switch] == "True"
    (_, fp32_options), _ = ort_providers("ort-trt", RunnerOptions("fp32", "fp32"))
    assert "trt_fp16_enable" not in fp32_options and "trt_int8_enable" not in fp32_options


def test_notes_for_qdq_on_cuda_and_tf32():
    from exporter.backends.availability import CPU_EP, CUDA_EP, TENSORRT_EP
    from exporter.backends.ort import QDQ_ON_CUDA_NOTE, provider_notes

    assert provider_notes([CUDA_EP, CPU_EP], "int8") == [QDQ_ON_CUDA_NOTE] and "fp32" in QDQ_ON_CUDA_NOTE
    assert provider_notes([TENSORRT_EP, CUDA_EP, CPU_EP], "int8") == []  # TensorRT runs Q/DQ in int8
    assert provider_notes([CUDA_EP, CPU_EP], "fp32") == provider_notes([CPU_EP], "int8") == []
    assert any("TF32" in note for note in provider_notes([CUDA_EP, CPU_EP], "fp32", tf32=True))
