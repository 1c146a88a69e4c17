"""Find the built ``RFConvRectify`` plugin library and register it with TensorRT's plugin registry."""

from __future__ import annotations

import os
from pathlib import Path

from .spec import PLUGIN_NAME, PLUGIN_NAMESPACE, PLUGIN_VERSION

LIBRARY_NAME = "librfconv_trt_plugin.so"
LIBRARY_ENV = "RFCONV_TRT_PLUGIN"
REPO_ROOT = Path(__file__).resolve().parents[1]
# Where `cmake -S trt_plugin_src -B <dir>` builds usually put it, in the order searched.
BUILD_DIRS = (REPO_ROOT / "build" / "trt_plugin", REPO_ROOT / "trt_plugin_src" / "build")
BUILD_HINT = ("build it with `cmake -S trt_plugin_src -B build/trt_plugin -DTensorRT_ROOT=<TensorRT dir> && "
              f"cmake --build build/trt_plugin -j`, or pass its path / set {LIBRARY_ENV}")


def find_library(path: str | os.PathLike | None = None) -> Path:
    """The plugin library: ``path`` if given, else ``$RFCONV_TRT_PLUGIN``, else the first build dir holding it.

    Raises ``FileNotFoundError`` naming where it looked.
    """
    if path is not None or os.environ.get(LIBRARY_ENV):
        given = Path(path if path is not None else os.environ[LIBRARY_ENV])
        if not given.is_file():
            source = "" if path is not None else f" (from ${LIBRARY_ENV})"
            raise FileNotFoundError(f"RFConvRectify plugin library {given}{source} does not exist; {BUILD_HINT}")
        return given.resolve()
    for directory in BUILD_DIRS:
        if (directory / LIBRARY_NAME).is_file():
            return directory / LIBRARY_NAME
    looked = ", ".join(str(d) for d in BUILD_DIRS)
    raise FileNotFoundError(f"RFConvRectify plugin library {LIBRARY_NAME} not found in {looked}; {BUILD_HINT}")


def import_tensorrt():
    """``tensorrt``, or RuntimeError saying that TensorRT is needed (it is never a hard dependency)."""
    try:
        import tensorrt
    except Exception as err:  # noqa: BLE001 - stub wheels and missing CUDA libraries raise assorted errors
        raise RuntimeError(
            f"TensorRT is not installed or does not import ({type(err).__name__}: {err}); install TensorRT >= 10.3 "
            "with its Python bindings (pip install 'rfconv-deploy[tensorrt]' on a machine with an NVIDIA GPU)"
        ) from err
    return tensorrt


def is_registered(registry) -> bool:
    """Whether ``registry`` (a ``tensorrt.IPluginRegistry``) already holds RFConvRectify v1 in namespace rfconv."""
    return registry.get_creator(PLUGIN_NAME, PLUGIN_VERSION, PLUGIN_NAMESPACE) is not None


def load_library(path: str | os.PathLike | None = None) -> Path:
    """Register the plugin library with TensorRT's global plugin registry and return its path.

    Idempotent: when RFConvRectify is already registered nothing is loaded again (TensorRT refuses to
    load a library whose plugins are registered). Raises RuntimeError when TensorRT is missing or
    rejects the library, FileNotFoundError when the library is not found.
    """
    trt = import_tensorrt()
    library = find_library(path)
    registry = trt.get_plugin_registry()
    if is_registered(registry):
        return library
    handle = registry.load_library(str(library))
    if handle is None or not is_registered(registry):
        raise RuntimeError(f"TensorRT could not load the plugin library {library} (see TensorRT's log for why)")
    return library
