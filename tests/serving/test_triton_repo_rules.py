"""``triton`` writes only repositories Triton can load: each test is a case that used to write a
repository Triton refuses (or one that silently runs wrong), and exit 0.

Triton's rules are read from its sources (see :mod:`exporter.serving.triton_check`); plans are
opaque bytes with a hand-written build sidecar carrying the fields ``build`` writes.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import tempfile
from pathlib import Path

import onnx
import pytest
import yaml
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from exporter.cli import main
from exporter.trt.sidecar import sidecar_path
from tests.helpers.serving_models import IMAGE_SHAPE, tiny_models

STORAGE = "gs://bucket/models"
_workdir = tempfile.TemporaryDirectory(prefix="rfconv-triton-rules-")


@functools.cache
def _exports() -> dict[str, Path]:
    """The tiny CNN as a plugin-mode export (RFConvRectify nodes) and as an fp16 export (fp32 IO)."""
    import torch

    from exporter.onnx.export import export_onnx

    example = torch.randn(2, *IMAGE_SHAPE)
    root = Path(_workdir.name)
    paths = {"plugin": root / "tiny_plugin.onnx", "fp16": root / "tiny_fp16.onnx"}
    export_onnx(tiny_models().torch_model, example, paths["plugin"], mode="plugin", output_names=["logits"])
    export_onnx(tiny_models().torch_model, example, paths["fp16"], precision="fp16", output_names=["logits"])
    return paths


def _parse(path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(Path(path).read_text(), model_config_pb2.ModelConfig())


def _check_passes(repo: Path) -> None:
    """The written repository passes ``triton --check`` (every rule that could run)."""
    assert main(["triton", "--check", str(repo)]) == 0


def _snapshot(root: Path) -> dict[str, bytes | str]:
    found = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        found[key] = f"-> {os.readlink(path)}" if path.is_symlink() else path.read_bytes() if path.is_file() else "dir"
    return found


# --- plugin-mode ONNX under the onnxruntime backend ------------------------------------------------------------


@pytest.mark.parametrize("accelerator", ["tensorrt", "cuda", "cpu"])
def test_plugin_mode_onnx_is_refused_saying_what_to_do(tmp_path, capsys, accelerator):
    """ONNX Runtime has no RFConvRectify kernel (its TensorRT EP takes TensorRT plugins only as custom
    ops of domain trt.plugins): such a repository fails to load in Triton."""
    plugin = _exports()["plugin"]
    assert any(node.op_type == "RFConvRectify" for node in onnx.load(str(plugin)).graph.node)
    assert main(["triton", str(plugin), "--repo", str(tmp_path / "repo"), "--accelerator", accelerator]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "2 RFConvRectify nodes" in err
    assert "rfconv-deploy build" in err and "export --mode static" in err
    assert not (tmp_path / "repo").exists()


# --- a plan's max_batch_size from its build profile ------------------------------------------------------------


def _plan(tmp_path, low: int, high: int) -> Path:
    plan = tmp_path / "engine.plan"
    plan.write_bytes(b"serialized engine bytes")
    shutil.copyfile(tiny_models().dynamic, tmp_path / "engine.onnx")
    sidecar_path(plan).write_text(json.dumps({
        "tensorrt_version": "10.16.0", "version_compatible": True, "plugin_embedded": True, "plugin_nodes": 2,
        "inputs": [{"name": "input", "min": [low, *IMAGE_SHAPE], "opt": [high, *IMAGE_SHAPE],
                    "max": [high, *IMAGE_SHAPE]}],
    }))
    return plan


@pytest.mark.parametrize("profile_max, max_batch, expected", [(2, 8, 2), (1, 8, 1), (32, 8, 8), (4, 4, 4)])
def test_plan_max_batch_size_is_at_most_the_profiles(tmp_path, profile_max, max_batch, expected):
    """Triton's TensorRT backend refuses a config whose max_batch_size exceeds the engine's
    (tensorrt_backend src/model_state.cc): the config gets the smaller of the two."""
    plan = _plan(tmp_path, 1, profile_max)
    repo = tmp_path / "repo"
    assert main(["triton", str(plan), "--repo", str(repo), "--max-batch", str(max_batch)]) == 0
    config = _parse(repo / "engine" / "config.pbtxt")
    assert config.max_batch_size == expected
    assert json.loads((repo / "engine" / "1" / "model.plan.json").read_text())["inputs"][0]["max"][0] == profile_max
    _check_passes(repo)


def test_plan_profile_above_batch_one_is_refused_naming_the_build_flag(tmp_path, capsys):
    plan = _plan(tmp_path, 2, 8)
    assert main(["triton", str(plan), "--repo", str(tmp_path / "repo")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "batches of 2 to 8" in err and "--min-shape" in err
    assert not (tmp_path / "repo").exists()
    # without batching Triton sends whole tensors: the profile's range is the client's business
    assert main(["triton", str(plan), "--repo", str(tmp_path / "repo"), "--max-batch", "0"]) == 0
    assert _parse(tmp_path / "repo" / "engine" / "config.pbtxt").max_batch_size == 0


# --- fp16 files ------------------------------------------------------------------------------------------------


def test_fp16_file_gets_fp16_precision_for_the_tensorrt_accelerator(tmp_path):
    """An fp16 export (fp32 inputs and outputs, fp16 weights) built by the EP without fp16 on runs in fp32."""
    from exporter.backends.ort import tensorrt_ep_options

    source = _exports()["fp16"]
    model = onnx.load(str(source))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # fp32 IO ...
    assert {i.data_type for i in model.graph.initializer if i.dims and len(i.dims) == 4} == {onnx.TensorProto.FLOAT16}
    repo = tmp_path / "repo"
    assert main(["triton", str(source), "--repo", str(repo)]) == 0
    (accelerator,) = _parse(repo / "tiny_fp16" / "config.pbtxt").optimization.execution_accelerators \
        .gpu_execution_accelerator
    assert accelerator.parameters["precision_mode"] == "FP16"
    assert tensorrt_ep_options((), 8, precision="fp16")["trt_fp16_enable"] == "True"  # serve's EP: the same switch
    _check_passes(repo)


# --- CPU repositories ------------------------------------------------------------------------------------------


def test_cpu_accelerator_writes_a_cpu_repository_and_a_gpu_free_manifest(tmp_path):
    repo, manifest_path = tmp_path / "repo", tmp_path / "isvc.yaml"
    assert main(["triton", str(tiny_models().dynamic), "--repo", str(repo), "--accelerator", "cpu",
                 "--kserve", str(manifest_path), "--storage-uri", STORAGE, "--gpus", "0"]) == 0
    config = _parse(repo / "tiny" / "config.pbtxt")
    assert [g.kind for g in config.instance_group] == [model_config_pb2.ModelInstanceGroup.KIND_CPU]
    assert not config.optimization.execution_accelerators.gpu_execution_accelerator
    model = yaml.safe_load(manifest_path.read_text())["spec"]["predictor"]["model"]
    assert "nvidia.com/gpu" not in json.dumps(model)
    assert "NVIDIA GPUs" not in manifest_path.read_text()
    _check_passes(repo)


@pytest.mark.parametrize("flags, message", [
    (["--accelerator", "cpu", "--gpus", "1"], "need no GPU, got --gpus 1"),
    (["--gpus", "0"], "gpus must be at least 1"),
], ids=["cpu-with-gpu", "gpu-without"])
def test_gpus_must_fit_the_accelerator(tmp_path, capsys, flags, message):
    assert main(["triton", str(tiny_models().dynamic), "--repo", str(tmp_path / "repo"), "--kserve",
                 str(tmp_path / "isvc.yaml"), "--storage-uri", STORAGE, *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert list(tmp_path.iterdir()) == []


def test_cpu_is_refused_for_a_plan(tmp_path, capsys):
    assert main(["triton", str(_plan(tmp_path, 1, 8)), "--repo", str(tmp_path / "repo"), "--accelerator", "cpu"]) == 2
    assert "runs on a GPU only" in capsys.readouterr().err
    assert not (tmp_path / "repo").exists()


# --- no write outside the repository --------------------------------------------------------------------------


def _link_layouts(root: Path) -> dict:
    """name -> (make the layout inside ``root``, what the link points at)."""
    def model_dir(repo):
        (root / "outside").mkdir()
        repo.mkdir()
        (repo / "tiny").symlink_to(root / "outside")

    def config_file(repo):
        (root / "victim.txt").write_text("precious")
        (repo / "tiny").mkdir(parents=True)
        (repo / "tiny" / "config.pbtxt").symlink_to(root / "victim.txt")

    def model_file(repo):
        (root / "file").write_text("precious")
        (repo / "tiny" / "1").mkdir(parents=True)
        (repo / "tiny" / "1" / "model.onnx").symlink_to(root / "file")

    def version_dir(repo):
        (root / "outside" / "v1").mkdir(parents=True)
        (repo / "tiny").mkdir(parents=True)
        (repo / "tiny" / "1").symlink_to(root / "outside" / "v1")

    return {"model-dir": (model_dir, "tiny"), "config": (config_file, "tiny/config.pbtxt"),
            "model-file": (model_file, "tiny/1/model.onnx"), "version-dir": (version_dir, "tiny/1")}


@pytest.mark.parametrize("layout", ["model-dir", "config", "model-file", "version-dir"])
def test_no_write_follows_a_symlink_inside_the_repository(tmp_path, capsys, layout):
    make, link = _link_layouts(tmp_path)[layout]
    repo = tmp_path / "repo"
    make(repo)
    before = _snapshot(tmp_path)
    assert main(["triton", str(tiny_models().dynamic), "--repo", str(repo)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"symlink {repo.resolve() / link}" in err
    assert _snapshot(tmp_path) == before, "something was written"


def test_a_hard_link_in_the_repository_is_replaced_not_written_through(tmp_path):
    repo = tmp_path / "repo"
    (repo / "tiny").mkdir(parents=True)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    os.link(victim, repo / "tiny" / "config.pbtxt")
    assert main(["triton", str(tiny_models().dynamic), "--repo", str(repo)]) == 0
    assert victim.read_text() == "precious"
    assert _parse(repo / "tiny" / "config.pbtxt").name == "tiny"


def test_external_data_cannot_take_the_models_file_name(tmp_path, capsys):
    """Weights saved as ``model.onnx`` used to overwrite the repository's 1/model.onnx (the model)."""
    src = tmp_path / "src"
    src.mkdir()
    onnx.save_model(onnx.load(str(tiny_models().dynamic)), src / "net.onnx", save_as_external_data=True,
                    all_tensors_to_one_file=True, location="model.onnx", size_threshold=0)
    assert main(["triton", str(src / "net.onnx"), "--repo", str(tmp_path / "repo")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'model.onnx' has the name the repository gives the model" in err
    assert not (tmp_path / "repo").exists()
