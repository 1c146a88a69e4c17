"""``triton --kserve``: the InferenceService validates against KServe's published CRD schema (pruned
fixture, unknown fields refused; see tests/helpers/kserve_schema.py) and carries what the plan needs.

Plans are opaque bytes here (the writer copies them); their sidecars are written by hand with the
fields ``build`` writes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path, PurePosixPath

import pytest
import yaml

from exporter.cli import main
from exporter.trt.sidecar import sidecar_path
from tests.helpers.kserve_schema import fixture, validator
from tests.helpers.serving_models import tiny_models

STORAGE = "gs://bucket/rfconv/models"


def _errors(manifest: dict) -> list[str]:
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator().iter_errors(manifest)]


def _write(tmp_path, model, *flags) -> dict:
    out = tmp_path / "isvc.yaml"
    assert main(["triton", str(model), "--repo", str(tmp_path / "repo"), "--kserve", str(out),
                 "--storage-uri", STORAGE, *flags]) == 0
    text = out.read_text()
    assert text.startswith("# upload ")  # the notes head the file as comments
    return yaml.safe_load(text)


def _plan(tmp_path, sidecar: dict | None) -> Path:
    plan = tmp_path / "rf_plan.plan"
    plan.write_bytes(b"serialized engine bytes")
    shutil.copyfile(tiny_models().dynamic, tmp_path / "rf_plan.onnx")
    if sidecar is not None:
        sidecar_path(plan).write_text(json.dumps({"tensorrt_version": "10.16.0", **sidecar}))
    return plan


def test_onnx_manifest_is_valid_and_names_the_triton_runtime(tmp_path, capsys):
    manifest = _write(tmp_path, tiny_models().dynamic)
    assert _errors(manifest) == []
    assert (manifest["apiVersion"], manifest["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")
    assert manifest["metadata"]["name"] == "tiny"
    model = manifest["spec"]["predictor"]["model"]
    runtime = fixture()["runtime"]
    assert model["runtime"] == runtime["name"] and model["modelFormat"]["name"] in runtime["modelFormats"]
    assert model["modelFormat"]["name"] == "triton" and model["protocolVersion"] in runtime["protocolVersions"]
    assert model["storageUri"] == STORAGE
    assert model["resources"]["limits"]["nvidia.com/gpu"] == 1 == model["resources"]["requests"]["nvidia.com/gpu"]
    assert "args" not in model and "env" not in model
    assert (tmp_path / "repo" / "tiny" / "config.pbtxt").is_file()
    assert "InferenceService 'tiny' (1 GPU per replica, 1-1 replicas)" in capsys.readouterr().out


def test_options_reach_the_manifest(tmp_path):
    manifest = _write(tmp_path, tiny_models().dynamic, "--name", "RF_ResNet.50", "--gpus", "2", "--min-replicas",
                      "0", "--max-replicas", "4", "--kserve-protocol", "grpc-v2", "--runtime-version", "24.08-py3")
    assert _errors(manifest) == []
    assert manifest["metadata"]["name"] == "rf-resnet-50"  # a valid InferenceService name from the model name
    predictor = manifest["spec"]["predictor"]
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (0, 4)
    model = predictor["model"]
    assert (model["protocolVersion"], model["runtimeVersion"]) == ("grpc-v2", "24.08-py3")
    assert model["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert (tmp_path / "repo" / "RF_ResNet.50" / "config.pbtxt").is_file()


def test_version_compatible_plan_gets_the_backend_option(tmp_path):
    plan = _plan(tmp_path, {"version_compatible": True, "plugin_embedded": True, "plugin_nodes": 2})
    manifest = _write(tmp_path, plan)
    assert _errors(manifest) == []
    model = manifest["spec"]["predictor"]["model"]
    assert model["args"] == ["--backend-config=tensorrt,version-compatible=true"] and "env" not in model
    assert "TensorRT 10.16.0" in (tmp_path / "isvc.yaml").read_text()


def test_plain_plan_carries_its_plugin_library_into_the_pod(tmp_path):
    plan = _plan(tmp_path, {"version_compatible": False, "plugin_embedded": False, "plugin_nodes": 2})
    library = _plugin_pair(tmp_path)
    manifest = _write(tmp_path, plan, "--plugin-lib", str(library))
    assert _errors(manifest) == []
    model = manifest["spec"]["predictor"]["model"]
    (arg,) = model["args"]
    assert arg.startswith("--backend-config=tensorrt,plugins=")
    in_pod = PurePosixPath(arg.split("plugins=")[1])
    assert model["env"] == [{"name": "LD_PRELOAD", "value": str(in_pod)}]
    # /mnt/models is where KServe puts the repository root: the path must be the copied library
    copied = tmp_path / "repo" / in_pod.relative_to("/mnt/models")
    assert copied.name == "librfconv_trt_plugin_autoreg.so"
    assert copied.read_bytes() == library.with_name(copied.name).read_bytes()
    assert copied.with_name(library.name).read_bytes() == library.read_bytes()


def test_plan_without_plugins_needs_nothing(tmp_path):
    plan = _plan(tmp_path, {"version_compatible": False, "plugin_embedded": False, "plugin_nodes": 0})
    model = _write(tmp_path, plan)["spec"]["predictor"]["model"]
    assert "args" not in model and "env" not in model


def test_plain_plan_without_its_library_is_refused(tmp_path, capsys):
    plan = _plan(tmp_path, {"version_compatible": False, "plugin_embedded": False, "plugin_nodes": 3})
    out = tmp_path / "isvc.yaml"
    assert main(["triton", str(plan), "--repo", str(tmp_path / "repo"), "--kserve", str(out),
                 "--storage-uri", STORAGE]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "3 RFConvRectify nodes: pass --plugin-lib" in err
    assert not out.exists()


@pytest.mark.parametrize("flags, message", [
    ([], "(--kserve FILE.yaml) needs --storage-uri"),
    (["--storage-uri", "bucket/models"], "is not a URI such as gs://"),
    (["--storage-uri", STORAGE, "--kserve-name", "Bad_Name"], "set --kserve-name"),
    (["--storage-uri", STORAGE, "--gpus", "0"], "gpus must be at least 1"),
    (["--storage-uri", STORAGE, "--min-replicas", "3", "--max-replicas", "2"], "got 3 and 2"),
    (["--storage-uri", STORAGE, "--kserve", "isvc.json"], "should be a .yaml file"),
], ids=["no-storage-uri", "not-a-uri", "bad-name", "no-gpu", "replicas", "not-yaml"])
def test_bad_kserve_options_are_one_line_errors_and_write_nothing(tmp_path, capsys, flags, message):
    argv = ["triton", str(tiny_models().dynamic), "--repo", str(tmp_path / "repo")]
    if "--kserve" not in flags:
        argv += ["--kserve", str(tmp_path / "isvc.yaml")]
    assert main(argv + [str(tmp_path / f) if f.endswith(".json") else f for f in flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rfconv-deploy triton: error:") and message in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_the_schema_check_can_fail():
    """The validator refuses what the API server would: misspelt fields, wrong types, bad quantities."""
    good = yaml.safe_load(yaml.safe_dump({
        "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService", "metadata": {"name": "m"},
        "spec": {"predictor": {"model": {"modelFormat": {"name": "triton"}, "storageUri": STORAGE,
                                         "resources": {"limits": {"nvidia.com/gpu": 1}}}}},
    }))
    assert _errors(good) == []

    def model(doc):
        return doc["spec"]["predictor"]["model"]

    broken = {
        "misspelt field": lambda doc: model(doc).update(storageURI=model(doc).pop("storageUri")),
        "string replicas": lambda doc: doc["spec"]["predictor"].update(minReplicas="1"),
        "bad quantity": lambda doc: model(doc)["resources"]["limits"].update({"nvidia.com/gpu": "one"}),
        "no format name": lambda doc: model(doc)["modelFormat"].pop("name"),
        "args not a list": lambda doc: model(doc).update(args="--x"),
        "env entry field": lambda doc: model(doc).update(env=[{"name": "A", "val": "1"}]),
        "no predictor": lambda doc: doc.update(spec={}),
    }
    for what, damage in broken.items():
        doc = yaml.safe_load(yaml.safe_dump(good))
        damage(doc)
        assert _errors(doc), f"{what}: a broken manifest passed"


def test_plan_without_a_sidecar(tmp_path):
    """No sidecar: with --plugin-lib the library is loaded as for a plain plan; without, a note says what to do."""
    plan = _plan(tmp_path, None)
    manifest = _write(tmp_path, plan)
    assert "args" not in manifest["spec"]["predictor"]["model"]
    assert "no sidecar says whether this plan needs" in (tmp_path / "isvc.yaml").read_text()
    library = _plugin_pair(tmp_path)
    model = _write(tmp_path, plan, "--plugin-lib", str(library))["spec"]["predictor"]["model"]
    assert model["args"] == ["--backend-config=tensorrt,plugins=/mnt/models/rf_plan/librfconv_trt_plugin_autoreg.so"]
    assert _errors(_write(tmp_path, plan, "--plugin-lib", str(library))) == []


def test_storage_uri_without_kserve_is_refused(tmp_path, capsys):
    assert main(["triton", str(tiny_models().dynamic), "--repo", str(tmp_path / "repo"), "--storage-uri", STORAGE]) == 2
    assert "add --kserve FILE.yaml" in capsys.readouterr().err
    assert not (tmp_path / "repo").exists()


def _runtime_http_port() -> int:
    """The HTTP port KServe's Triton runtime starts tritonserver with (its container args, in the fixture)."""
    (arg,) = [a for a in fixture()["runtime"]["args"] if a.startswith("--http-port=")]
    return int(arg.split("=", 1)[1])


@pytest.mark.parametrize("flags", [[], ["--kserve-protocol", "grpc-v2"], ["--accelerator", "cpu"]],
                         ids=["v2", "grpc-v2", "cpu"])
def test_probes_watch_the_model_on_the_runtimes_http_port(tmp_path, flags):
    """Liveness: the server answers; readiness: the model is loaded; startup: long enough for the first load."""
    manifest = _write(tmp_path, tiny_models().dynamic, "--startup-timeout-s", "900", *flags)
    assert _errors(manifest) == []
    model = manifest["spec"]["predictor"]["model"]
    port = _runtime_http_port()  # tritonserver serves HTTP in both protocols (--allow-http=true)
    assert "--allow-http=true" in fixture()["runtime"]["args"]
    live, ready, startup = (model[f"{kind}Probe"] for kind in ("liveness", "readiness", "startup"))
    assert live["httpGet"] == {"path": "/v2/health/live", "port": port}
    assert ready["httpGet"] == startup["httpGet"] == {"path": "/v2/models/tiny/ready", "port": port}
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 900
    assert live["periodSeconds"] * live["failureThreshold"] < 900  # liveness alone would restart a slow load


def test_probes_name_the_model_directory_not_the_service(tmp_path):
    manifest = _write(tmp_path, tiny_models().dynamic, "--name", "RF_Net", "--kserve-name", "svc")
    model = manifest["spec"]["predictor"]["model"]
    assert model["readinessProbe"]["httpGet"]["path"] == "/v2/models/RF_Net/ready"
    assert (tmp_path / "repo" / "RF_Net" / "config.pbtxt").is_file()


def test_the_schema_refuses_a_misspelt_probe():
    good = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService", "metadata": {"name": "m"},
            "spec": {"predictor": {"model": {"modelFormat": {"name": "triton"}, "storageUri": STORAGE,
                                             "readinessProbe": {"httpGet": {"path": "/", "port": 8080}}}}}}
    assert _errors(good) == []
    good["spec"]["predictor"]["model"]["readinessProbe"]["httpget"] = {}
    assert _errors(good)


def _plugin_pair(folder):
    """A stand-in plugin library and its autoregistration library beside it (ELF headers only):
    Triton's plugins= gets the autoregistration one, which loads the plugin from its own folder."""
    (folder / "librfconv_trt_plugin_autoreg.so").write_bytes(b"\x7fELF autoreg")
    library = folder / "librfconv_trt_plugin.so"
    library.write_bytes(b"\x7fELF plugin")
    return library
