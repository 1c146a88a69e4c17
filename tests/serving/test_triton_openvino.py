"""``triton --accelerator openvino``: Triton's onnxruntime backend with its OpenVINO CPU execution
accelerator on CPU instances, checked against the rule read from onnxruntime_backend
src/onnxruntime.cc (the name is ``openvino``, no parameters; on GPU instances the CUDA EP comes
first and OpenVINO would not run the model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from exporter.cli import main
from exporter.serving.triton_check import RULES, check_repository
from exporter.serving.triton_config import TritonConfig
from tests.helpers.serving_models import tiny_models

STORAGE = "gs://bucket/models"


def _config(repo: Path) -> pb.ModelConfig:
    return text_format.Parse((repo / "tiny" / "config.pbtxt").read_text(), pb.ModelConfig())


def _write(config_path: Path, config: pb.ModelConfig) -> None:
    config_path.write_text(text_format.MessageToString(config))


@pytest.fixture
def repo(tmp_path, capsys):
    repo, manifest = tmp_path / "repo", tmp_path / "isvc.yaml"
    assert main(["triton", str(tiny_models().dynamic), "--repo", str(repo), "--accelerator", "openvino",
                 "--kserve", str(manifest), "--storage-uri", STORAGE]) == 0
    (repo.parent / "stdout.txt").write_text(capsys.readouterr().out)
    return repo


def test_openvino_writes_kind_cpu_with_the_cpu_accelerator_and_a_gpu_free_manifest(repo):
    config = _config(repo)
    assert [(g.kind, g.count) for g in config.instance_group] == [(pb.ModelInstanceGroup.KIND_CPU, 1)]
    accelerators = config.optimization.execution_accelerators
    assert [(a.name, dict(a.parameters)) for a in accelerators.cpu_execution_accelerator] == [("openvino", {})]
    assert not accelerators.gpu_execution_accelerator
    assert (config.platform, config.backend) == ("onnxruntime_onnx", "onnxruntime")
    text = (repo / "tiny" / "config.pbtxt").read_text()
    assert 'cpu_execution_accelerator {\n      name: "openvino"\n    }' in text
    manifest = (repo.parent / "isvc.yaml").read_text()
    assert "nvidia.com/gpu" not in json.dumps(yaml.safe_load(manifest)["spec"]["predictor"]["model"])
    assert "NVIDIA GPUs" not in manifest
    out = (repo.parent / "stdout.txt").read_text()
    assert "OpenVINO CPU execution accelerator" in out and "no GPU" in out
    report = check_repository(repo)
    assert report.ok and "cpu-accelerator" in report.ran["tiny"]


@pytest.mark.parametrize("change, message", [
    (lambda c: setattr(c.instance_group[0], "kind", pb.ModelInstanceGroup.KIND_GPU), "KIND_GPU instances"),
    (lambda c: c.ClearField("instance_group"), "no instance_group (KIND_AUTO)"),
    (lambda c: setattr(c.optimization.execution_accelerators.cpu_execution_accelerator[0], "name", "OpenVINO"),
     "unknown CPU execution accelerator 'OpenVINO'"),
    (lambda c: c.optimization.execution_accelerators.cpu_execution_accelerator[0].parameters.__setitem__(
        "device_type", "GPU"), "takes no parameters"),
], ids=["kind-gpu", "kind-auto", "name", "parameters"])
def test_the_check_refuses_what_the_backend_would_not_run(repo, capsys, change, message):
    config = _config(repo)
    change(config)
    _write(repo / "tiny" / "config.pbtxt", config)
    failures = check_repository(repo).failures
    assert [f.rule for f in failures] == ["cpu-accelerator"] and message in failures[0].message
    assert main(["triton", "--check", str(repo)]) == 1
    out = capsys.readouterr().out
    assert "[cpu-accelerator]" in out and RULES["cpu-accelerator"].source in out
    assert "onnxruntime_backend src/onnxruntime.cc" in RULES["cpu-accelerator"].source


def test_openvino_with_gpus_and_on_a_plan_are_one_line(tmp_path, capsys):
    assert main(["triton", str(tiny_models().dynamic), "--repo", str(tmp_path / "repo"), "--accelerator", "openvino",
                 "--kserve", str(tmp_path / "isvc.yaml"), "--storage-uri", STORAGE, "--gpus", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "need no GPU, got --gpus 1" in err
    plan = tmp_path / "m.plan"
    plan.write_bytes(b"serialized engine bytes")
    assert main(["triton", str(plan), "--repo", str(tmp_path / "repo"), "--accelerator", "openvino"]) == 2
    assert "runs on a GPU only" in capsys.readouterr().err
    assert not (tmp_path / "repo").exists()
    assert TritonConfig(model="m.onnx", repo=tmp_path / "r", accelerator="openvino").gpus_per_replica == 0
