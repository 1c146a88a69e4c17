"""Triton model repositories: config.pbtxt parses back with Triton's protobuf schema and describes the model.

Expected tensor names, types and dims come from ONNX Runtime's view of the same file. The plan
tests treat the engine as opaque bytes (the writer only copies it); no TensorRT runs here.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import onnxruntime
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from exporter.cli import main
from exporter.serving.triton_repo import read_config, write_repository
from exporter.trt.sidecar import sidecar_path
from tests.helpers.serving_models import IMAGE_SHAPE, tiny_models

ORT_TO_TRITON = {"tensor(float)": model_config_pb2.TYPE_FP32}


def _ort_io(path):
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.get_inputs(), session.get_outputs()


def _parse(path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def test_onnx_repository_with_dynamic_batch(tmp_path):
    source = tiny_models().dynamic
    written = write_repository(source, tmp_path / "repo", name="tiny", max_batch=16, max_delay_us=500)
    assert written.config_path == tmp_path / "repo" / "tiny" / "config.pbtxt"
    assert written.model_file == tmp_path / "repo" / "tiny" / "1" / "model.onnx"
    assert written.model_file.read_bytes() == source.read_bytes()
    config = _parse(written.config_path)
    assert config == read_config(written.config_path) == written.config
    # the writer checked what it wrote as Triton would load it (exporter.serving.triton_check)
    assert written.check.ok and not written.check.unchecked and "onnx-io" in written.check.ran["tiny"]
    assert (config.name, config.platform, config.backend) == ("tiny", "onnxruntime_onnx", "onnxruntime")
    assert config.max_batch_size == 16
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    ort_inputs, ort_outputs = _ort_io(source)
    for triton_tensors, ort_tensors in ((config.input, ort_inputs), (config.output, ort_outputs)):
        assert [t.name for t in triton_tensors] == [t.name for t in ort_tensors]
        for triton_tensor, ort_tensor in zip(triton_tensors, ort_tensors, strict=True):
            assert triton_tensor.data_type == ORT_TO_TRITON[ort_tensor.type]
            assert isinstance(ort_tensor.shape[0], str)  # the batch dim is symbolic ...
            assert list(triton_tensor.dims) == ort_tensor.shape[1:]  # ... and left out of dims
    assert list(config.input[0].dims) == list(IMAGE_SHAPE)
    (group,) = config.instance_group
    assert group.kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    (accelerator,) = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert accelerator.name == "tensorrt" and accelerator.parameters["precision_mode"] == "FP32"
    # the TensorRT EP's profile covers every batch the dynamic batcher forms, as serve's does:
    # without it the EP builds a new engine whenever a larger batch arrives
    shape = "x".join(str(d) for d in IMAGE_SHAPE)
    assert dict(accelerator.parameters) == {
        "precision_mode": "FP32", "max_workspace_size_bytes": accelerator.parameters["max_workspace_size_bytes"],
        "trt_profile_min_shapes": f"input:1x{shape}", "trt_profile_opt_shapes": f"input:16x{shape}",
        "trt_profile_max_shapes": f"input:16x{shape}",
    }


def test_fixed_batch_model_gets_full_dims_and_no_batching(tmp_path):
    written = write_repository(tiny_models().fixed, tmp_path, accelerator="cuda")
    config = _parse(written.config_path)
    assert config.name == "tiny_fixed" and config.max_batch_size == 0
    assert not config.HasField("dynamic_batching")
    assert list(config.input[0].dims) == [1, *IMAGE_SHAPE] and list(config.output[0].dims) == [1, 10]
    assert not config.optimization.execution_accelerators.gpu_execution_accelerator


def test_rewriting_a_repository_replaces_it(tmp_path):
    write_repository(tiny_models().dynamic, tmp_path, name="m", max_batch=4)
    written = write_repository(tiny_models().dynamic, tmp_path, name="m", max_batch=0)
    config = _parse(written.config_path)
    assert config.max_batch_size == 0 and list(config.input[0].dims) == [-1, *IMAGE_SHAPE]


def test_external_weights_are_copied_and_the_copy_runs(tmp_path):
    model = onnx.load(str(tiny_models().dynamic))
    onnx.save_model(model, tmp_path / "ext.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
                    location="ext.weights", size_threshold=1024)
    written = write_repository(tmp_path / "ext.onnx", tmp_path / "repo")
    assert (written.model_file.parent / "ext.weights").is_file()
    x = np.random.default_rng(0).standard_normal((2, *IMAGE_SHAPE)).astype(np.float32)
    sessions = [onnxruntime.InferenceSession(str(p), providers=["CPUExecutionProvider"])
                for p in (tiny_models().dynamic, written.model_file)]
    np.testing.assert_array_equal(*(s.run(None, {"input": x})[0] for s in sessions))


def _opaque_plan(tmp_path, with_onnx: bool):
    plan = tmp_path / "engine.plan"
    plan.write_bytes(b"serialized engine bytes: copied, never parsed")
    if with_onnx:
        shutil.copyfile(tiny_models().dynamic, tmp_path / "engine.onnx")
    return plan


def test_plan_repository_with_plugin_instructions(tmp_path):
    plan = _opaque_plan(tmp_path, with_onnx=True)
    plugin = _plugin_pair(tmp_path)
    written = write_repository(plan, tmp_path / "repo", plugin_lib=plugin)
    assert written.model_file.name == "model.plan" and written.model_file.read_bytes() == plan.read_bytes()
    text = written.config_path.read_text()
    carried = tmp_path / "repo" / "engine" / "librfconv_trt_plugin_autoreg.so"
    assert f"LD_PRELOAD={carried}" in text and f'--backend-config=tensorrt,plugins="{carried}"' in text
    assert (carried.parent / "librfconv_trt_plugin.so").read_bytes() == plugin.read_bytes()
    config = _parse(written.config_path)
    assert (config.platform, config.backend, config.max_batch_size) == ("tensorrt_plan", "tensorrt", 8)
    assert [t.name for t in config.input] == ["input"] and list(config.input[0].dims) == list(IMAGE_SHAPE)
    assert not config.optimization.execution_accelerators.gpu_execution_accelerator


@pytest.mark.parametrize("version_compatible", [True, False])
def test_plan_instructions_follow_the_build_sidecar(tmp_path, version_compatible):
    """A version-compatible plan (plugin embedded, build's default) loads in Triton only with
    ``--backend-config=tensorrt,version-compatible=true``; a plain plan needs the library through
    ``plugins=`` (it registers itself when dlopen'd) or LD_PRELOAD (issue 13, bug 2)."""
    plan = _opaque_plan(tmp_path, with_onnx=True)
    plugin = _plugin_pair(tmp_path)
    sidecar_path(plan).write_text(json.dumps({"version_compatible": version_compatible,
                                              "plugin_embedded": version_compatible}))
    text = write_repository(plan, tmp_path / "repo", plugin_lib=plugin).config_path.read_text()
    vc = "--backend-config=tensorrt,version-compatible=true"
    assert (vc in text) == version_compatible
    carried = tmp_path / "repo" / "engine" / "librfconv_trt_plugin_autoreg.so"
    assert (f'--backend-config=tensorrt,plugins="{carried}"' in text) == (not version_compatible)
    assert (f"LD_PRELOAD={carried}" in text) == (not version_compatible)


def test_plan_without_a_sidecar_gets_both_ways(tmp_path):
    plan = _opaque_plan(tmp_path, with_onnx=True)
    text = write_repository(plan, tmp_path / "repo").config_path.read_text()
    assert "version-compatible=true" in text and "plugins=" in text and "No sidecar" in text


def test_plan_without_onnx_leaves_tensors_to_triton(tmp_path):
    written = write_repository(_opaque_plan(tmp_path, with_onnx=False), tmp_path / "repo")
    config = _parse(written.config_path)
    assert not config.input and not config.output and config.max_batch_size == 8
    assert any("Triton completes them" in note for note in written.notes)


@pytest.mark.parametrize("make_args, message", [
    (lambda d: [str(d / "model.pt")], "neither an ONNX model"),
    (lambda d: [str(tiny_models().dynamic), "--plugin-lib", str(d / "model.pt")], "applies to TensorRT"),
    (lambda d: [str(d / "missing.onnx")], "does not exist"),
    (lambda d: [str(d)], "is a directory, not a file"),
    (lambda d: [str(tiny_models().dynamic), "--name", "a/b"], "not a valid directory name"),
], ids=["suffix", "plugin-for-onnx", "missing", "directory", "bad-name"])
def test_cli_errors_are_one_line(tmp_path, capsys, make_args, message):
    (tmp_path / "model.pt").write_bytes(b"")
    assert main(["triton", *make_args(tmp_path), "--repo", str(tmp_path / "repo")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rfconv-deploy triton: error:") and message in err and err.count("\n") == 1


def test_cli_writes_and_reports(tmp_path, capsys):
    assert main(["triton", str(tiny_models().dynamic), "--repo", str(tmp_path), "--name", "cli"]) == 0
    out = capsys.readouterr().out
    assert "onnxruntime backend, max_batch_size 8, 1 inputs, 1 outputs" in out
    assert _parse(tmp_path / "cli" / "config.pbtxt").name == "cli"


def _with_location(tmp_path, location: str):
    """The tiny model with its weights in external data whose ``location`` is ``location``."""
    model = onnx.load(str(tiny_models().dynamic))
    src = tmp_path / "a" / "b" / "src"
    onnx.save_model(model, src / "ext.onnx", save_as_external_data=True,
                    all_tensors_to_one_file=True, location="ext.weights", size_threshold=1024)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    crafted = src / "crafted.onnx"
    crafted.write_bytes(model.SerializeToString())
    return crafted


@pytest.mark.parametrize("location", [
    "../../escaped.bin", "sub/../../../escaped.bin", "ABSOLUTE", "", ".", "sub\x00x",
], ids=["dotdot", "nested-dotdot", "absolute", "empty", "dot", "nul"])
def test_external_data_outside_the_models_folder_is_refused(tmp_path, location):
    """Regression (#15): a crafted ``location`` made ``triton`` read and write outside its folders."""
    (tmp_path / "a" / "b" / "src").mkdir(parents=True)
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"attacker bytes")
    location = str(secret) if location == "ABSOLUTE" else location
    (tmp_path / "a" / "escaped.bin").write_bytes(b"attacker bytes")
    crafted = _with_location(tmp_path, location)
    repo = tmp_path / "a" / "b" / "repo"
    before = sorted(p for p in tmp_path.rglob("*"))
    with pytest.raises(ValueError, match="external data"):
        write_repository(crafted, repo)
    assert sorted(p for p in tmp_path.rglob("*")) == before, "something was written"
    assert main(["triton", str(crafted), "--repo", str(repo)]) == 2
    assert sorted(p for p in tmp_path.rglob("*")) == before


def test_external_data_in_a_subfolder_is_copied(tmp_path):
    (tmp_path / "src" / "weights").mkdir(parents=True)
    model = onnx.load(str(tiny_models().dynamic))
    onnx.save_model(model, tmp_path / "src" / "ext.onnx", save_as_external_data=True,
                    all_tensors_to_one_file=True, location="weights/w.bin", size_threshold=1024)
    written = write_repository(tmp_path / "src" / "ext.onnx", tmp_path / "repo")
    assert (written.model_file.parent / "weights" / "w.bin").read_bytes() == \
        (tmp_path / "src" / "weights" / "w.bin").read_bytes()


def _plugin_pair(folder):
    """A stand-in plugin library and its autoregistration library beside it (ELF headers only):
    Triton's plugins= gets the autoregistration one, which loads the plugin from its own folder."""
    (folder / "librfconv_trt_plugin_autoreg.so").write_bytes(b"\x7fELF autoreg")
    library = folder / "librfconv_trt_plugin.so"
    library.write_bytes(b"\x7fELF plugin")
    return library


def test_plan_plugin_library_without_its_autoregistration_library_is_refused(tmp_path):
    """Triton's plugins= only dlopens: the library that registers nothing when loaded is not enough."""
    plan = _opaque_plan(tmp_path, with_onnx=True)
    plugin = tmp_path / "librfconv_trt_plugin.so"
    plugin.write_bytes(b"\x7fELF plugin")
    with pytest.raises(FileNotFoundError, match="librfconv_trt_plugin_autoreg.so does not exist"):
        write_repository(plan, tmp_path / "repo", plugin_lib=plugin)
    assert not (tmp_path / "repo").exists()


def test_check_fails_an_autoregistration_library_without_the_plugin_beside_it(tmp_path):
    from exporter.serving.triton_check import check_repository

    plan = _opaque_plan(tmp_path, with_onnx=True)
    sidecar_path(plan).write_text(json.dumps({"version_compatible": False, "plugin_nodes": 2}))
    written = write_repository(plan, tmp_path / "repo", plugin_lib=_plugin_pair(tmp_path))
    assert check_repository(tmp_path / "repo", [written.model_dir.name]).ok
    (written.model_dir / "librfconv_trt_plugin.so").unlink()
    report = check_repository(tmp_path / "repo", [written.model_dir.name])
    assert not report.ok
    assert "loads librfconv_trt_plugin.so from its own folder" in "; ".join(map(str, report.failures))
