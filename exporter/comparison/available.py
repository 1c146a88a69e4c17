"""Whether a named backend can run on this machine, asked before any work (light: no torch import
unless the torch backend is asked about on a CUDA device)."""

from __future__ import annotations

import importlib.util

from exporter.backends import availability
from exporter.backends.availability import ORT_PROVIDERS


def why_not(backend: str, *, torch_model: bool = True, torch_device: str = "cpu") -> str | None:
    """Why ``backend`` cannot run here, in a few words, or None when it can (as far as can be
    told without the file: ONNX Runtime listing a provider does not prove that it loads).
    ``torch_model`` says whether a PyTorch model was given (the torch backend runs it)."""
    if backend == "torch":
        if not torch_model:
            return "no PyTorch model given (the torch backend runs the model the file was exported from: --model)"
        if torch_device.startswith("cuda"):
            cuda = availability.cuda()
            if not cuda.available:
                return f"torch_device={torch_device!r}: {cuda.detail}"
        return None
    if backend == "trt":
        if importlib.util.find_spec("tensorrt") is None:
            return "the tensorrt package is not installed"
        found = availability.tensorrt()
        return None if found.available else found.detail
    if backend in ORT_PROVIDERS:
        if importlib.util.find_spec("onnxruntime") is None:
            return "the onnxruntime package is not installed"
        found = availability.ort_provider(ORT_PROVIDERS[backend], backend)
        return None if found.available else found.detail
    return None


def check_named(backends, *, torch_model: bool = True, torch_device: str = "cpu") -> None:
    """Raise ``ValueError`` naming every one of ``backends`` that cannot run here, on one line:
    "backend 'trt' cannot run here: the tensorrt package is not installed"."""
    missing = [f"backend {backend!r} cannot run here: {reason}" for backend in backends
               if (reason := why_not(backend, torch_model=torch_model, torch_device=torch_device)) is not None]
    if missing:
        raise ValueError("; ".join(missing))
