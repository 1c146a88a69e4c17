"""KServe's published InferenceService schema, cut down to the fields ``triton --kserve`` writes, as a validator.

The schema is the ``openAPIV3Schema`` of KServe's CRD (``config/crd/full/serving.kserve.io_inferenceservices.yaml``,
1.9 MB: too large for a fixture). :func:`prune` keeps, of every object on the paths in :data:`KEEP`,
only those properties, each exactly as the CRD defines it (types, formats, patterns, ``required``);
``tests/serving/data/kserve_inferenceservice_v1beta1.json`` is the result. :func:`validator` adds
``additionalProperties: false`` to every object that does not preserve unknown fields, as
``kubectl apply --validate=strict`` refuses unknown fields, so a misspelt or misplaced field fails.

The fixture also records, from ``config/runtimes/kserve-tritonserver.yaml``, the model formats
and protocols KServe's Triton runtime declares and its container's arguments (``runtime``:
``--http-port``, where the manifest's probes must point), which the manifest must use.

Regenerate (KServe commit and paths are recorded in the file)::

    python -m tests.helpers.kserve_schema CRD.yaml RUNTIME.yaml COMMIT
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

FIXTURE = Path(__file__).resolve().parents[1] / "serving" / "data" / "kserve_inferenceservice_v1beta1.json"
CRD_PATH = "config/crd/full/serving.kserve.io_inferenceservices.yaml"
RUNTIME_PATH = "config/runtimes/kserve-tritonserver.yaml"

KEEP = {  # True: the whole subtree as in the CRD; a dict: these properties only
    "apiVersion": True,
    "kind": True,
    "metadata": True,
    "spec": {
        "predictor": {
            "minReplicas": True,
            "maxReplicas": True,
            "model": {
                "modelFormat": True,
                "runtime": True,
                "runtimeVersion": True,
                "protocolVersion": True,
                "storageUri": True,
                "args": True,
                "env": {"name": True, "value": True},
                "resources": {"limits": True, "requests": True},
                "livenessProbe": True,
                "readinessProbe": True,
                "startupProbe": True,
            },
        },
    },
}


def prune(schema: dict, keep) -> dict:
    if keep is True:
        return copy.deepcopy(schema)
    pruned = {key: copy.deepcopy(value) for key, value in schema.items() if key not in ("properties", "items")}
    if "items" in schema:
        pruned["items"] = prune(schema["items"], keep)
    if "properties" in schema:
        missing = set(keep) - set(schema["properties"])
        if missing:
            raise KeyError(f"the CRD has no properties {sorted(missing)} here; KEEP is out of date")
        pruned["properties"] = {name: prune(schema["properties"][name], sub) for name, sub in keep.items()}
    return pruned


def _strict(schema: dict) -> dict:
    schema = dict(schema)
    if "properties" in schema:
        schema["properties"] = {name: _strict(sub) for name, sub in schema["properties"].items()}
        if not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema.setdefault("additionalProperties", False)
    if isinstance(schema.get("items"), dict):
        schema["items"] = _strict(schema["items"])
    if isinstance(schema.get("additionalProperties"), dict):
        schema["additionalProperties"] = _strict(schema["additionalProperties"])
    return schema


def fixture() -> dict:
    return json.loads(FIXTURE.read_text())


def validator():
    """A jsonschema validator of the fixture, with unknown fields refused."""
    import jsonschema

    return jsonschema.Draft7Validator(_strict(fixture()["openAPIV3Schema"]))


def main(argv: list[str]) -> int:
    import yaml

    crd_file, runtime_file, commit = argv
    crd = yaml.safe_load(Path(crd_file).read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1beta1"]
    pruned = prune(version["schema"]["openAPIV3Schema"], KEEP)
    runtime = yaml.safe_load(Path(runtime_file).read_text())
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    FIXTURE.write_text(json.dumps({
        "source": f"github.com/kserve/kserve@{commit}:{CRD_PATH}, {RUNTIME_PATH}",
        "kind": crd["spec"]["names"]["kind"], "group": crd["spec"]["group"], "version": "v1beta1",
        "runtime": {"name": runtime["metadata"]["name"],
                    "modelFormats": sorted({f["name"] for f in runtime["spec"]["supportedModelFormats"]}),
                    "protocolVersions": runtime["spec"]["protocolVersions"],
                    "args": runtime["spec"]["containers"][0]["args"]},
        "openAPIV3Schema": pruned,
    }, indent=1) + "\n")
    print(f"wrote {FIXTURE} ({FIXTURE.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
