"""Which execution backends this machine has, each with the reason when it is missing.

Everything here imports lazily: asking about TensorRT never fails on a machine without it.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import platform
from dataclasses import dataclass


@dataclass(frozen=True)
class Availability:
    """One backend: whether it can run here, and a one-line detail (version, device or reason)."""

    name: str
    available: bool
    detail: str


def package_version(module: str) -> str | None:
    """The version of an importable module, or None when it does not import."""
    try:
        mod = importlib.import_module(module)
    except Exception:  # noqa: BLE001 - a broken install counts as missing, whatever it raises
        return None
    version = getattr(mod, "__version__", None)
    if version is None:
        try:
            version = importlib.metadata.version(module.replace("_", "-"))
        except importlib.metadata.PackageNotFoundError:
            version = "unknown"
    return version


def tensorrt() -> Availability:
    try:
        import tensorrt as trt
    except Exception as err:  # noqa: BLE001 - the stub wheels raise assorted errors
        return Availability("tensorrt", False, f"tensorrt does not import ({type(err).__name__}: {err})")
    return Availability("tensorrt", True, f"TensorRT {trt.__version__}")


def cuda() -> Availability:
    import torch

    if not torch.cuda.is_available():
        return Availability("cuda", False, "no CUDA device visible to torch")
    return Availability("cuda", True, torch.cuda.get_device_name(0))


def onnxruntime_providers() -> list[str]:
    """Execution providers of the installed onnxruntime (empty when it does not import)."""
    try:
        import onnxruntime
    except ImportError:
        return []
    return list(onnxruntime.get_available_providers())


def ort_provider(provider: str, name: str) -> Availability:
    """Whether ONNX Runtime lists ``provider``; note that listing it does not prove it loads."""
    providers = onnxruntime_providers()
    if provider in providers:
        return Availability(name, True, provider)
    listed = ", ".join(providers) or "none"
    return Availability(name, False, f"onnxruntime has no {provider} (providers: {listed})")


def probe() -> list[Availability]:
    """Every backend the toolkit can use, in order of preference for serving."""
    return [
        tensorrt(),
        cuda(),
        ort_provider("TensorrtExecutionProvider", "ort-trt"),
        ort_provider("CUDAExecutionProvider", "ort-cuda"),
        ort_provider("CPUExecutionProvider", "ort-cpu"),
    ]


VERSIONED_PACKAGES = (
    "torch", "torchvision", "onnx", "onnxruntime", "onnx_graphsurgeon", "polygraphy", "onnxscript",
    "tensorrt", "resnest",
)


def versions() -> dict[str, str | None]:
    """Python and package versions (None for packages that do not import)."""
    found = {"python": platform.python_version()}
    found.update({name: package_version(name) for name in VERSIONED_PACKAGES})
    return found


def _info(args: argparse.Namespace) -> int:
    found = versions()
    available = probe()
    if args.json:
        print(json.dumps({
            "versions": found,
            "backends": {b.name: {"available": b.available, "detail": b.detail} for b in available},
        }, indent=2))
        return 0
    print("Packages")
    for name, version in found.items():
        print(f"  {name:<18} {version or 'not installed'}")
    print("\nBackends")
    for b in available:
        print(f"  {b.name:<18} {'yes' if b.available else 'no ':<4} {b.detail}")
    return 0


def add_subcommand(sub) -> None:
    """Register ``rfconv-deploy info``."""
    info = sub.add_parser("info", help="print package versions and which backends are available")
    info.add_argument("--json", action="store_true", help="print machine-readable JSON")
    info.set_defaults(func=_info)
