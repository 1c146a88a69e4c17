"""KServe ``InferenceService`` manifests (``serving.kserve.io/v1beta1``) for a Triton repository (``triton --kserve``).

The predictor is ``model`` with ``modelFormat: triton`` on KServe's ``kserve-tritonserver``
ClusterServingRuntime, which runs ``tritonserver --model-store=/mnt/models``; ``storageUri`` is
where the user uploaded the repository folder (its root, the folder holding ``NAME/config.pbtxt``),
and KServe's storage initializer downloads it to ``/mnt/models``. Each replica asks for
``gpus`` ``nvidia.com/gpu`` (none for a CPU repository). KServe appends the predictor's ``args`` to the runtime's and
merges ``env``, so a TensorRT plan gets what :mod:`.triton_repo` derives from its sidecar:

* a version-compatible plan (the plugin embedded, ``build``'s default):
  ``--backend-config=tensorrt,version-compatible=true``;
* a plain plan that needs the RFConvRectify library: the library copied into the repository
  (``NAME/librfconv_trt_plugin.so``), loaded by ``--backend-config=tensorrt,plugins=PATH`` and
  ``LD_PRELOAD=PATH`` (PATH under ``/mnt/models``; the second load of the same path is a no-op).

Probes, on the runtime's HTTP port (``--http-port=8080`` in ``kserve-tritonserver``), with the
KServe v2 health endpoints Triton serves: liveness ``/v2/health/live`` (the server answers);
readiness ``/v2/models/NAME/ready`` (the model is loaded); a startup probe on the same readiness
path that allows ``startup_timeout_s`` seconds for the first load (a TensorRT engine build and
warm-up) before the liveness probe may restart the pod.

Names follow KServe's rule for InferenceService names (a DNS-1035 label).
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

API_VERSION = "serving.kserve.io/v1beta1"
RUNTIME = "kserve-tritonserver"
MODEL_STORE = PurePosixPath("/mnt/models")
PROTOCOLS = ("v2", "grpc-v2")
ISVC_NAME = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")  # KServe's IsvcNameFmt
MAX_NAME = 63
HTTP_PORT = 8080  # kserve-tritonserver runs tritonserver --http-port=8080
PROBE_PERIOD_S = 10


def isvc_name(model_name: str) -> str:
    """The default InferenceService name for a model: lower case, ``_`` and ``.`` as ``-``."""
    return re.sub(r"[_.]+", "-", model_name.lower()).strip("-")


def check_isvc_name(name: str) -> str:
    if not ISVC_NAME.fullmatch(name) or len(name) > MAX_NAME:
        raise ValueError(
            f"InferenceService name {name!r} is not valid for KServe: lower-case letters, digits and '-', "
            f"starting with a letter and ending with a letter or digit, at most {MAX_NAME} characters; "
            "set kserve_name"
        )
    return name


def triton_plugin_options(model_name: str, plugin_file: str | None, version_compatible: bool | None):
    """(args, env) for ``tritonserver`` in the pod: how a plan's plugin gets loaded (see the module doc)."""
    if version_compatible:
        return ["--backend-config=tensorrt,version-compatible=true"], []
    if plugin_file is None:
        return [], []
    path = str(MODEL_STORE / model_name / plugin_file)
    return [f"--backend-config=tensorrt,plugins={path}"], [{"name": "LD_PRELOAD", "value": path}]


def probes(model_name: str, startup_timeout_s: int = 600) -> dict:
    """The container probes of a Triton replica serving ``model_name`` (see the module doc)."""
    if startup_timeout_s < 1:
        raise ValueError(f"startup_timeout_s must be at least 1, got {startup_timeout_s}")

    def get(path: str) -> dict:
        return {"httpGet": {"path": path, "port": HTTP_PORT}, "periodSeconds": PROBE_PERIOD_S}

    ready = f"/v2/models/{model_name}/ready"
    return {
        "livenessProbe": {**get("/v2/health/live"), "failureThreshold": 3},
        "readinessProbe": {**get(ready), "failureThreshold": 3},
        "startupProbe": {**get(ready), "failureThreshold": -(-startup_timeout_s // PROBE_PERIOD_S)},
    }


def inference_service(
    model_name: str,
    storage_uri: str,
    *,
    name: str | None = None,
    gpus: int = 1,
    min_replicas: int = 1,
    max_replicas: int | None = None,
    protocol: str = "v2",
    runtime_version: str | None = None,
    args: list[str] | None = None,
    env: list[dict] | None = None,
    startup_timeout_s: int = 600,
) -> dict:
    """The InferenceService as a dict (what ``kubectl apply`` reads from YAML).

    ``storage_uri`` (``gs://``, ``s3://``, ``pvc://``, ``https://``...) holds the repository root;
    ``gpus`` per replica (0: a CPU repository, no GPU asked for); ``min_replicas`` to
    ``max_replicas`` (default: ``min_replicas``) replicas;
    ``protocol`` ``v2`` (HTTP) or ``grpc-v2``; ``runtime_version`` the Triton image tag (it must
    carry the TensorRT version a plan was built with); ``startup_timeout_s`` the startup probe's
    allowance for the first model load. ValueError names a bad value.
    """
    name = check_isvc_name(name or isvc_name(model_name))
    if "://" not in storage_uri:
        raise ValueError(f"storage_uri {storage_uri!r} is not a URI such as gs://bucket/models or "
                         "pvc://claim/models (KServe downloads the repository from it)")
    if gpus < 0:
        raise ValueError(f"gpus must be >= 0 (0 for a CPU repository), got {gpus}")
    max_replicas = min_replicas if max_replicas is None else max_replicas
    if min_replicas < 0 or max_replicas < max(1, min_replicas):
        raise ValueError(f"replicas must satisfy 0 <= min_replicas <= max_replicas, max_replicas >= 1; "
                         f"got {min_replicas} and {max_replicas}")
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol {protocol!r} is not one of {', '.join(PROTOCOLS)}")
    model: dict = {
        "modelFormat": {"name": "triton"},
        "runtime": RUNTIME,
        "protocolVersion": protocol,
        "storageUri": storage_uri,
    }
    if runtime_version:
        model["runtimeVersion"] = runtime_version
    if args:
        model["args"] = list(args)
    if env:
        model["env"] = list(env)
    if gpus:
        model["resources"] = {"limits": {"nvidia.com/gpu": gpus}, "requests": {"nvidia.com/gpu": gpus}}
    model.update(probes(model_name, startup_timeout_s))
    return {
        "apiVersion": API_VERSION,
        "kind": "InferenceService",
        "metadata": {"name": name},
        "spec": {"predictor": {"minReplicas": min_replicas, "maxReplicas": max_replicas, "model": model}},
    }


def manifest_path(path: str | Path) -> Path:
    """``path`` as a Path; ValueError unless it names a ``.yaml`` (or ``.yml``) file."""
    path = Path(path)
    if path.suffix.lower() not in (".yaml", ".yml"):
        raise ValueError(f"the KServe manifest {path} should be a .yaml file")
    return path


def write_manifest(path: str | Path, manifest: dict, notes: list[str]) -> Path:
    """Write ``manifest`` as YAML to ``path``, ``notes`` as comment lines above it."""
    import yaml

    path = manifest_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = "".join(f"# {line}\n" for line in notes)
    path.write_text(header + yaml.safe_dump(manifest, sort_keys=False))
    return path


def for_repository(written, storage_uri: str, **options) -> tuple[dict, list[str]]:
    """The InferenceService for what :func:`~.triton_repo.write_repository` wrote (a
    :class:`~.triton_repo.TritonRepository`), and notes for the user; ``options`` as for
    :func:`inference_service`. ValueError for a plan that needs its plugin library when none was
    copied into the repository (pass ``plugin_lib``), and for ``gpus`` that do not fit the
    repository (a CPU repository asks for none, a GPU one for at least one)."""
    model_name = written.model_dir.name
    cpu = getattr(written, "accelerator", "tensorrt") in ("cpu", "openvino")  # KIND_CPU repositories
    gpus = options.get("gpus", 0 if cpu else 1)
    if cpu and gpus:
        raise ValueError(f"the repository runs on CPU instances (accelerator={written.accelerator!r}): its "
                         "replicas need no GPU, "
                         f"got gpus={gpus}")
    if not cpu and gpus < 1:
        raise ValueError(f"gpus must be at least 1 (the Triton config asks for GPU instances), got {gpus}")
    options = {**options, "gpus": gpus}
    notes = [f"upload {written.model_dir.parent} (the repository root) to {storage_uri}, then: kubectl apply -f "
             "THIS_FILE", f"needs KServe's {RUNTIME} ClusterServingRuntime"
             + (" (CPU instances: no GPU asked for)" if cpu else " and nodes with NVIDIA GPUs")]
    plan = written.model_file.suffix == ".plan"
    needs_library = plan and not written.version_compatible and written.plugin_nodes != 0
    if needs_library and written.plugin_file is None:
        if written.version_compatible is None:
            notes.append("no sidecar says whether this plan needs the RFConvRectify plugin library; if it was "
                         "built with --no-embed-plugin, rerun with plugin_lib so the repository carries it")
        else:
            raise ValueError(
                f"{written.model_file.name} was built without the plugin embedded and has "
                f"{written.plugin_nodes if written.plugin_nodes is not None else 'some'} RFConvRectify nodes: "
                "pass plugin_lib (the library it was built with) so that the repository carries it to the cluster"
            )
    args, env = triton_plugin_options(model_name, written.plugin_file if needs_library else None,
                                      written.version_compatible if plan else None)
    if written.tensorrt_version:
        notes.append(f"the plan was built with TensorRT {written.tensorrt_version}: pick a Triton image "
                     "(runtime_version) with that TensorRT")
    return inference_service(model_name, storage_uri, args=args, env=env, **options), notes
