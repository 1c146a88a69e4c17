"""``rfconv-deploy inspect``'s entry point: an ONNX file (:func:`exporter.onnx.inspect.inspect_onnx`)
or a TensorRT plan with the sidecar ``build`` wrote next to it (:mod:`exporter.trt.sidecar`).

Light: never imports torch or tensorrt (only asks whether tensorrt imports, for the backends).
"""

from __future__ import annotations

from pathlib import Path

from exporter.backends import availability
from exporter.onnx.inspect import FileInfo, inspect_onnx
from exporter.trt.sidecar import read_sidecar, sidecar_path

PLAN_SUFFIXES = (".plan", ".engine", ".trt")


def inspect_plan(path) -> FileInfo:
    """Describe the TensorRT plan at ``path``: its size, its sidecar (None when it has none) and
    whether TensorRT here can load it. FileNotFoundError for a missing file; ValueError for a
    sidecar that is not the JSON ``build`` writes."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist" if not path.is_dir() else f"{path} is a directory, not a file")
    sidecar = read_sidecar(path)
    tensorrt = availability.tensorrt()
    detail = tensorrt.detail
    if tensorrt.available and sidecar and sidecar.get("tensorrt") and str(sidecar["tensorrt"]) not in detail:
        detail += f" (the plan was built with TensorRT {sidecar['tensorrt']}: it loads only on that version)"
    if sidecar is None:
        detail += f"; no sidecar {sidecar_path(path).name}, so the TensorRT version and GPU it needs are unknown"
    return FileInfo(path=str(path), kind="plan", size_bytes=path.stat().st_size, sidecar=sidecar,
                    backends={"trt": (tensorrt.available, detail)})


def inspect_file(path) -> FileInfo:
    """:func:`inspect_plan` for ``.plan``/``.engine``/``.trt`` files, else :func:`inspect_onnx`."""
    if Path(path).suffix.lower() in PLAN_SUFFIXES:
        return inspect_plan(path)
    return inspect_onnx(path)
