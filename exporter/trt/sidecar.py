"""The JSON description written next to every engine ``build`` makes: ``model.plan`` ->
``model.plan.json`` (TensorRT version, GPU, shapes, precision, TF32, plugin embedding).

Light (json and pathlib only): the Triton writer reads it to tell how a plan must be loaded.
"""

from __future__ import annotations

import json
from pathlib import Path


def sidecar_path(plan_path) -> Path:
    """Where the JSON description of a plan lives: ``model.plan`` -> ``model.plan.json``."""
    plan_path = Path(plan_path)
    return plan_path.with_name(plan_path.name + ".json")


def read_sidecar(plan_path) -> dict | None:
    """The sidecar of ``plan_path`` as a dict, or None when there is none (a plan built elsewhere).

    Raises ValueError when the file exists but is not a JSON object.
    """
    path = sidecar_path(plan_path)
    if not path.is_file():
        return None
    try:
        found = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not the JSON sidecar rfconv-deploy build writes: {err}") from err
    if not isinstance(found, dict):
        raise ValueError(f"{path} is not the JSON sidecar rfconv-deploy build writes (not an object)")
    return found
