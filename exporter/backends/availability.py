"""Which execution backends this machine has, each with the reason when it is missing, and the
names that every step uses for them (one table of backends and ONNX Runtime providers).

Everything here imports lazily: asking about TensorRT never fails on a machine without it, and
importing this module loads neither torch nor onnxruntime.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import importlib.metadata
import importlib.util
import io
import logging
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

BACKENDS = ("torch", "ort-cpu", "ort-cuda", "ort-trt", "trt", "ov-cpu", "onnx-ref")
"""Every backend name (``compare --backends``, ``bench --backends``)."""

_log = logging.getLogger("exporter.backends.ort")

TENSORRT_EP = "TensorrtExecutionProvider"
CUDA_EP = "CUDAExecutionProvider"
CPU_EP = "CPUExecutionProvider"
ORT_PROVIDERS = {"ort-trt": TENSORRT_EP, "ort-cuda": CUDA_EP, "ort-cpu": CPU_EP}
"""ONNX Runtime backend name -> execution provider, best first (the serving fallback order)."""
GPU_PROVIDERS = frozenset({TENSORRT_EP, CUDA_EP})


class BackendSkipped(Exception):
    """A backend cannot run on this machine or for this model; ``str(err)`` says why."""


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


def ov_cpu() -> Availability:
    """Whether OpenVINO imports and lists a CPU device (the ``ov-cpu`` backend); detail: version and
    CPU name, or the reason it is missing."""
    try:
        import openvino
    except Exception as err:  # noqa: BLE001 - a broken install counts as missing, whatever it raises
        return Availability("ov-cpu", False, f"openvino does not import ({type(err).__name__}: {err}); "
                                             "pip install 'rfconv-deploy[openvino]'")
    try:
        core = openvino.Core()
        if "CPU" not in core.available_devices:
            return Availability("ov-cpu", False, f"OpenVINO lists no CPU device (devices: {core.available_devices})")
        name = core.get_property("CPU", "FULL_DEVICE_NAME")
    except Exception as err:  # noqa: BLE001 - OpenVINO raises its own RuntimeError subclasses
        return Availability("ov-cpu", False, f"OpenVINO cannot open the CPU device ({err})")
    return Availability("ov-cpu", True, f"OpenVINO {openvino.__version__.split('-')[0]} CPU ({name})")


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
        *(ort_provider(provider, name) for name, provider in ORT_PROVIDERS.items()),
        ov_cpu(),
    ]


PROVIDER_LIBRARIES = {TENSORRT_EP: "libonnxruntime_providers_tensorrt.so", CUDA_EP: "libonnxruntime_providers_cuda.so"}
"""The library ONNX Runtime loads for each GPU execution provider (onnxruntime/capi/)."""


def preload_cuda_libraries() -> bool:
    """Load the CUDA and cuDNN libraries of the ``nvidia-*`` wheels into the process, as
    ``import torch`` does, with ``onnxruntime.preload_dlls()``. Returns False when this
    onnxruntime has none (older than 1.21) or was not built with CUDA; a library that is not
    there is left for the provider's own load (whose error :func:`provider_load_error` reports)."""
    import onnxruntime

    preload = getattr(onnxruntime, "preload_dlls", None)
    if preload is None or not any(p in GPU_PROVIDERS for p in onnxruntime.get_available_providers()):
        return False
    printed = io.StringIO()  # it prints each library it misses; the provider's own load names the one that matters
    try:
        with contextlib.redirect_stdout(printed):
            preload(msvc=False)
    except (OSError, RuntimeError) as err:
        _log.debug("onnxruntime.preload_dlls() failed: %s", err)
        return False
    finally:
        if printed.getvalue().strip():
            _log.debug("onnxruntime.preload_dlls(): %s", printed.getvalue().strip())
    return True


def provider_load_error(provider: str) -> str | None:
    """Why ONNX Runtime's library for ``provider`` does not load here (the dynamic loader's
    message, naming the missing library), or None when it loads or the provider needs none (and
    off Linux, where the check after session creation reports it)."""
    library = PROVIDER_LIBRARIES.get(provider)
    if library is None or not sys.platform.startswith("linux"):  # elsewhere the session check reports it
        return None
    import onnxruntime

    capi = Path(onnxruntime.__file__).parent / "capi"
    path = capi / library
    if not path.exists():
        return f"{library} is not in {capi} (install onnxruntime-gpu: docs/onnxruntime.md)"
    try:
        shared = capi / "libonnxruntime_providers_shared.so"
        if shared.exists():
            ctypes.CDLL(str(shared), mode=ctypes.RTLD_GLOBAL)
        ctypes.CDLL(str(path))
    except OSError as err:
        return str(err)
    return None


def why_not(backend: str, *, torch_model: bool = True, torch_device: str = "cpu") -> str | None:
    """Why ``backend`` cannot run here, in a few words, or None when it can (as far as can be told
    without the file: ONNX Runtime listing a provider does not prove that it loads). The one check
    behind ``compare --backends`` and ``bench --backends``; ``torch_model`` says whether a PyTorch
    model was given (the torch backend runs it)."""
    if backend == "torch":
        if not torch_model:
            return "no PyTorch model given (the torch backend runs the model the file was exported from: --model)"
        if torch_device.startswith("cuda"):
            found = cuda()
            if not found.available:
                return f"torch_device={torch_device!r}: {found.detail}"
        return None
    if backend == "trt":
        if importlib.util.find_spec("tensorrt") is None:
            return "the tensorrt package is not installed"
        found = tensorrt()
        return None if found.available else found.detail
    if backend in ORT_PROVIDERS:
        if importlib.util.find_spec("onnxruntime") is None:
            return "the onnxruntime package is not installed"
        found = ort_provider(ORT_PROVIDERS[backend], backend)
        if not found.available:
            return found.detail
        preload_cuda_libraries()
        error = provider_load_error(ORT_PROVIDERS[backend])
        return None if error is None else f"{ORT_PROVIDERS[backend]} does not load: {error}"
    if backend == "ov-cpu":
        found = ov_cpu()
        return None if found.available else found.detail
    return None


def check_named(backends, *, torch_model: bool = True, torch_device: str = "cpu") -> None:
    """Raise ``ValueError`` naming every one of ``backends`` that cannot run here (:func:`why_not`),
    on one line: "backend 'trt' cannot run here: the tensorrt package is not installed"."""
    missing = [f"backend {backend!r} cannot run here: {reason}" for backend in backends
               if (reason := why_not(backend, torch_model=torch_model, torch_device=torch_device)) is not None]
    if missing:
        raise ValueError("; ".join(missing))


VERSIONED_PACKAGES = (
    "torch", "torchvision", "onnx", "onnxruntime", "onnx_graphsurgeon", "polygraphy", "onnxscript",
    "tensorrt", "resnest", "openvino",
)


def versions() -> dict[str, str | None]:
    """Python and package versions (None for packages that do not import)."""
    found = {"python": platform.python_version()}
    found.update({name: package_version(name) for name in VERSIONED_PACKAGES})
    return found
