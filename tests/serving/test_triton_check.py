"""``triton --check``: one repository breaking each rule, one passing it.

Repositories are written by the writer (which runs the check itself), then damaged the way a
hand edit or another tool would. The rules are Triton's, read from its sources
(:data:`exporter.serving.triton_check.RULES` names each file); no Triton runs here.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnx
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from exporter.cli import main
from exporter.serving.model_config import (
    TRITON_TO_ORT_TRT,
    TRITON_TRT_PARAMETERS,
    triton_accelerator_parameters,
)
from exporter.serving.triton_check import RULES, check_repository
from exporter.serving.triton_repo import write_repository
from exporter.trt.sidecar import sidecar_path
from tests.helpers.serving_models import IMAGE_SHAPE, tiny_models


def _edit(config_path: Path, change) -> None:
    config = text_format.Parse(config_path.read_text(), pb.ModelConfig())
    change(config)
    config_path.write_text(text_format.MessageToString(config))


def _onnx_repo(tmp_path, **options) -> Path:
    repo = tmp_path / "repo"
    write_repository(tiny_models().dynamic, repo, name="m", **options)
    return repo


def _plan_repo(tmp_path, sidecar: dict | None = None) -> Path:
    plan = tmp_path / "m.plan"
    plan.write_bytes(b"serialized engine bytes")
    shutil.copyfile(tiny_models().dynamic, tmp_path / "m.onnx")
    if sidecar is not False:
        sidecar_path(plan).write_text(json.dumps(sidecar or {
            "version_compatible": True, "plugin_nodes": 2,
            "inputs": [{"name": "input", "min": [1, *IMAGE_SHAPE], "opt": [8, *IMAGE_SHAPE],
                        "max": [8, *IMAGE_SHAPE]}]}))
    repo = tmp_path / "repo"
    write_repository(plan, repo)
    return repo


def _failed_rules(repo: Path) -> set[str]:
    return {finding.rule for finding in check_repository(repo).failures}


def _accelerator(config):
    return config.optimization.execution_accelerators.gpu_execution_accelerator[0]


def _replace_with_plugin_op(repo):
    path = repo / "m" / "1" / "model.onnx"
    model = onnx.load(str(path))
    mul = next(node for node in model.graph.node if node.op_type == "Mul")
    mul.op_type, mul.domain = "RFConvRectify", "rfconv"
    model.opset_import.append(onnx.helper.make_opsetid("rfconv", 1))
    onnx.save(model, str(path))


def _set_fp16_weights(repo):
    path = repo / "m" / "1" / "model.onnx"
    model = onnx.load(str(path))
    for init in model.graph.initializer:
        if init.data_type == onnx.TensorProto.FLOAT:
            array = onnx.numpy_helper.to_array(init).astype("float16")
            init.CopyFrom(onnx.numpy_helper.from_array(array, init.name))
    onnx.save(model, str(path))


ONNX_DAMAGE = {  # rule -> how a written ONNX repository is made to break it
    "layout": lambda repo: (repo / "m" / "1" / "model.onnx").unlink(),
    "schema": lambda repo: (repo / "m" / "config.pbtxt").write_text('name: "m"\nmax_batch: 8\n'),
    "name": lambda repo: _edit(repo / "m" / "config.pbtxt", lambda c: setattr(c, "name", "other")),
    "platform": lambda repo: _edit(repo / "m" / "config.pbtxt", lambda c: setattr(c, "backend", "tensorrt")),
    "io": lambda repo: _edit(repo / "m" / "config.pbtxt", lambda c: c.input[0].dims.__setitem__(0, 0)),
    "onnx-io": lambda repo: _edit(repo / "m" / "config.pbtxt", lambda c: c.input[0].dims.__setitem__(1, 32)),
    "accelerator": lambda repo: _edit(repo / "m" / "config.pbtxt",
                                      lambda c: _accelerator(c).parameters.__setitem__("trt_fp16_enable", "1")),
    "accelerator-precision": _set_fp16_weights,
    "accelerator-kind": lambda repo: _edit(
        repo / "m" / "config.pbtxt", lambda c: setattr(c.instance_group[0], "kind", pb.ModelInstanceGroup.KIND_CPU)),
    "plugin-library": lambda repo: _edit(
        repo / "m" / "config.pbtxt",
        lambda c: _accelerator(c).parameters.__setitem__("trt_extra_plugin_lib_paths", str(repo / "missing.so"))),
    "cpu-accelerator": lambda repo: _edit(  # the OpenVINO CPU accelerator on the written KIND_GPU instances
        repo / "m" / "config.pbtxt",
        lambda c: c.optimization.execution_accelerators.cpu_execution_accelerator.add(name="openvino")),
    "no-plugin-op": _replace_with_plugin_op,
    "version": lambda repo: shutil.copytree(repo / "m" / "1", repo / "m" / "2"),  # Triton serves the latest
}


def test_a_written_onnx_repository_passes_every_onnx_rule(tmp_path):
    repo = _onnx_repo(tmp_path)
    report = check_repository(repo)
    assert report.ok and not report.unchecked
    assert set(report.ran["m"]) == set(ONNX_DAMAGE)  # every rule for the onnxruntime backend ran


@pytest.mark.parametrize("rule", sorted(ONNX_DAMAGE))
def test_each_rule_fails_the_repository_that_breaks_it(tmp_path, capsys, rule):
    repo = _onnx_repo(tmp_path)
    assert _failed_rules(repo) == set()
    ONNX_DAMAGE[rule](repo)
    assert rule in _failed_rules(repo)
    assert main(["triton", "--check", str(repo)]) == 1
    out = capsys.readouterr().out
    assert f"[{rule}]" in out and RULES[rule].source in out and "Result: FAIL" in out


def test_a_fixed_batch_model_with_batching_breaks_onnx_io(tmp_path):
    repo = tmp_path / "repo"
    write_repository(tiny_models().fixed, repo, name="m", accelerator="cuda")
    assert _failed_rules(repo) == set()
    _edit(repo / "m" / "config.pbtxt", lambda c: (setattr(c, "max_batch_size", 4), c.input[0].dims.pop(0)))
    assert "onnx-io" in _failed_rules(repo)


def test_plan_rules(tmp_path):
    repo = _plan_repo(tmp_path)
    report = check_repository(repo)
    assert report.ok and not report.unchecked
    assert {"plan-batch", "plan-dims", "plugin-library", "platform"} <= set(report.ran["m"])
    config_path = repo / "m" / "config.pbtxt"
    _edit(config_path, lambda c: setattr(c, "max_batch_size", 16))  # above the profile's 8
    assert _failed_rules(repo) == {"plan-batch"}
    _edit(config_path, lambda c: (setattr(c, "max_batch_size", 8), c.input[0].dims.__setitem__(1, 64)))
    assert _failed_rules(repo) == {"plan-dims"}
    _edit(config_path, lambda c: c.input[0].dims.__setitem__(1, 16))
    assert _failed_rules(repo) == set()
    sidecar = repo / "m" / "1" / "model.plan.json"
    data = json.loads(sidecar.read_text())
    data["inputs"][0]["min"][0] = 2
    sidecar.write_text(json.dumps(data))
    assert _failed_rules(repo) == {"plan-batch"}


def test_a_plan_needing_its_library_fails_on_a_fake_one_and_is_unchecked_without(tmp_path, capsys):
    sidecar = {"version_compatible": False, "plugin_nodes": 2,
               "inputs": [{"name": "input", "min": [1, *IMAGE_SHAPE], "opt": [8, *IMAGE_SHAPE],
                           "max": [8, *IMAGE_SHAPE]}]}
    repo = _plan_repo(tmp_path, sidecar)
    report = check_repository(repo)
    assert report.ok and [f.rule for f in report.unchecked] == ["plugin-library"]
    assert main(["triton", "--check", str(repo)]) == 0
    out = capsys.readouterr().out
    assert "NOT CHECKED" in out and "Result: PASS for the rules checked (1 not checked)" in out
    (repo / "m" / "librfconv_trt_plugin.so").write_bytes(b"not a library")
    assert _failed_rules(repo) == {"plugin-library"}
    (repo / "m" / "librfconv_trt_plugin.so").write_bytes(b"\x7fELF...")
    report = check_repository(repo)
    assert report.ok and not report.unchecked


def test_a_plan_without_sidecar_is_never_a_plain_pass(tmp_path, capsys):
    repo = _plan_repo(tmp_path, False)
    report = check_repository(repo)
    assert report.ok and {f.rule for f in report.unchecked} == {"plan-batch", "plan-dims", "plugin-library"}
    assert main(["triton", "--check", str(repo)]) == 0
    assert "Result: PASS for the rules checked (3 not checked)" in capsys.readouterr().out


def test_the_writer_fails_when_its_repository_fails_the_check(tmp_path, monkeypatch):
    """The writer runs the check on what it wrote: a config it got wrong is an error, not exit 0."""
    import exporter.serving.triton_repo as triton_repo

    real = triton_repo.build_config

    def wrong(*args, **kwargs):
        config = real(*args, **kwargs)
        config.input[0].dims[1] = 99
        return config

    monkeypatch.setattr(triton_repo, "build_config", wrong)
    with pytest.raises(ValueError, match=r"Triton would not load .*\[onnx-io\]"):
        write_repository(tiny_models().dynamic, tmp_path / "repo")


@pytest.mark.parametrize("argv, message", [
    (["--check", "REPO", "--repo", "x"], "check reads a repository and writes nothing: drop repo"),
    (["MODEL", "--check", "REPO"], "drop model"),
    ([], "or --check REPO"),
    (["--check", "MISSING"], "is not a directory"),
])
def test_check_cli_errors(tmp_path, capsys, argv, message):
    repo = _onnx_repo(tmp_path)
    subst = {"REPO": str(repo), "MODEL": str(tiny_models().dynamic), "MISSING": str(tmp_path / "missing")}
    assert main(["triton", *(subst.get(a, a) for a in argv)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_accelerator_parameters_are_translated_from_ort_option_names():
    """One definition (ONNX Runtime's option names) -> the keys Triton's onnxruntime backend reads."""
    assert triton_accelerator_parameters({"trt_int8_enable": "True", "trt_max_workspace_size": "1024",
                                          "trt_profile_min_shapes": "input:1x3x8x8"}) == {
        "precision_mode": "INT8", "max_workspace_size_bytes": "1024", "trt_profile_min_shapes": "input:1x3x8x8"}
    assert triton_accelerator_parameters({"trt_fp16_enable": "1"}) == {"precision_mode": "FP16"}
    assert triton_accelerator_parameters({"trt_fp16_enable": "False"}) == {"precision_mode": "FP32"}
    with pytest.raises(ValueError, match="precision_mode takes one"):
        triton_accelerator_parameters({"trt_fp16_enable": "True", "trt_int8_enable": "True"})
    with pytest.raises(ValueError, match="no parameter in Triton's onnxruntime backend"):
        triton_accelerator_parameters({"trt_op_types_to_exclude": "Conv"})
    assert set(TRITON_TO_ORT_TRT) | {"precision_mode"} == TRITON_TRT_PARAMETERS


def test_version_policy_decides_what_is_checked(tmp_path):
    repo = _onnx_repo(tmp_path)
    shutil.copytree(repo / "m" / "1", repo / "m" / "2")
    assert "version" in _failed_rules(repo)
    _edit(repo / "m" / "config.pbtxt", lambda c: setattr(c.version_policy.latest, "num_versions", 2))
    report = check_repository(repo)
    assert report.ok and [f.rule for f in report.unchecked] == ["version"]  # version 2 is served, not checked
    _edit(repo / "m" / "config.pbtxt", lambda c: c.version_policy.specific.versions.append(1))
    report = check_repository(repo)
    assert report.ok and not report.unchecked


def test_a_backend_without_platform_is_checked_and_other_backends_are_not_passed(tmp_path):
    repo = _onnx_repo(tmp_path)
    _edit(repo / "m" / "config.pbtxt", lambda c: setattr(c, "platform", ""))  # Triton fills it in
    report = check_repository(repo)
    assert report.ok and "onnx-io" in report.ran["m"]
    _edit(repo / "m" / "config.pbtxt", lambda c: setattr(c, "backend", "python"))
    report = check_repository(repo)
    assert report.ok and "platform" in {f.rule for f in report.unchecked} and "onnx-io" not in report.ran["m"]
