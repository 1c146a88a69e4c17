"""Find the built ``RFConvRectify`` plugin library and register it with TensorRT's plugin registry.

Two files come out of ``trt_plugin_src`` (see its README, Loading):

* ``librfconv_trt_plugin.so``: the plugin. It does nothing when loaded; TensorRT registers what its
  ``getCreators`` returns (``IPluginRegistry::loadLibrary``, trtexec ``--dynamicPlugins``, plans that
  embed it). :func:`load_library` and ``rfconv-deploy build`` use this one.
* ``librfconv_trt_plugin_autoreg.so``: registers the plugin when it is ``dlopen``ed, for loaders that
  call nothing in the file (Triton's ``plugins=``, ``LD_PRELOAD``); it needs the plugin library next to
  it and is never handed to ``loadLibrary``.

The plugin library is looked up by path (``--plugin-lib``), then ``$RFCONV_TRT_PLUGIN``, then package
data (``plugins/lib/``, where ``cmake --install build/trt_plugin --prefix plugins`` puts it), then the
build directories of a source checkout; never relative to the working directory.
"""

from __future__ import annotations

import os
from pathlib import Path

from .spec import PLUGIN_NAME, PLUGIN_NAMESPACE, PLUGIN_VERSION

LIBRARY_NAME = "librfconv_trt_plugin.so"
AUTOREG_NAME = "librfconv_trt_plugin_autoreg.so"
LIBRARY_ENV = "RFCONV_TRT_PLUGIN"
PACKAGE_DIR = Path(__file__).resolve().parent / "lib"
REPO_ROOT = Path(__file__).resolve().parents[1]
# Where `cmake -S trt_plugin_src -B <dir>` builds usually put it in a source checkout, in the order searched.
BUILD_DIRS = (REPO_ROOT / "build" / "trt_plugin", REPO_ROOT / "trt_plugin_src" / "build")
BUILD_HINT = ("build it with `cmake -S trt_plugin_src -B build/trt_plugin -DTensorRT_ROOT=<TensorRT dir> && "
              "cmake --build build/trt_plugin -j && cmake --install build/trt_plugin --prefix plugins`, or pass "
              f"its path (--plugin-lib) or set {LIBRARY_ENV}")


def search_dirs() -> tuple[Path, ...]:
    """The directories searched when no path is given: package data first, then checkout build dirs."""
    return (PACKAGE_DIR, *BUILD_DIRS)


def find_library(path: str | os.PathLike | None = None) -> Path:
    """The plugin library, as an absolute path: ``path`` if given, else ``$RFCONV_TRT_PLUGIN``, else the
    first of :func:`search_dirs` holding ``librfconv_trt_plugin.so``.

    Raises ``FileNotFoundError`` naming where it looked, and ``ValueError`` for the autoregistration
    library (which must not be handed to TensorRT's ``loadLibrary``).
    """
    if path is not None or os.environ.get(LIBRARY_ENV):
        given = Path(path if path is not None else os.environ[LIBRARY_ENV]).expanduser()
        source = "" if path is not None else f" (from ${LIBRARY_ENV})"
        if given.name == AUTOREG_NAME:
            raise ValueError(f"{given}{source} is the autoregistration library for loaders that only dlopen "
                             f"(Triton's plugins=, LD_PRELOAD); give {given.with_name(LIBRARY_NAME)} instead")
        if not given.is_file():
            raise FileNotFoundError(f"RFConvRectify plugin library {given}{source} does not exist; {BUILD_HINT}")
        return given.resolve()
    for directory in search_dirs():
        if (directory / LIBRARY_NAME).is_file():
            return (directory / LIBRARY_NAME).resolve()
    looked = ", ".join(str(d) for d in search_dirs())
    raise FileNotFoundError(f"RFConvRectify plugin library {LIBRARY_NAME} not found in {looked}; {BUILD_HINT}")


def autoreg_library(library: str | os.PathLike) -> Path:
    """The autoregistration library built beside the plugin library ``library``: what Triton's ``plugins=``
    and ``LD_PRELOAD`` take (it loads ``library`` from its own folder). Raises ``FileNotFoundError`` when it
    is not there."""
    library = Path(library)
    autoreg = library.with_name(AUTOREG_NAME)
    if not autoreg.is_file():
        raise FileNotFoundError(f"{autoreg} does not exist: loaders that only dlopen (Triton's plugins=, "
                                f"LD_PRELOAD) need it beside {library.name}; {BUILD_HINT}")
    return autoreg.resolve()


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


def _creators(registry) -> list:
    """The creators registered in ``registry``: ``all_creators`` (TensorRT >= 10, every interface kind),
    else the IPluginV2-only ``plugin_creator_list``."""
    found = getattr(registry, "all_creators", None)
    if found is None:
        found = getattr(registry, "plugin_creator_list", None)
    return list(found or [])


def is_registered(registry) -> bool:
    """Whether ``registry`` (a ``tensorrt.IPluginRegistry``) already holds RFConvRectify v1 in namespace rfconv.

    Reads the registry's creator list rather than calling ``get_creator``, which logs a TensorRT
    error when the creator is absent: a first load stays silent.
    """
    for creator in _creators(registry):
        if (getattr(creator, "name", None) == PLUGIN_NAME
                and getattr(creator, "plugin_version", None) == PLUGIN_VERSION
                and getattr(creator, "plugin_namespace", None) == PLUGIN_NAMESPACE):
            return True
    return False


def load_library(path: str | os.PathLike | None = None) -> Path:
    """Register the plugin library with TensorRT's global plugin registry and return its path.

    Idempotent: when RFConvRectify is already registered (an earlier call, the autoregistration
    library, another copy) nothing is loaded again (TensorRT's ``loadLibrary`` refuses a library whose
    plugins are registered). Raises RuntimeError when TensorRT is missing or rejects the library,
    FileNotFoundError when the library is not found, ValueError when given the autoregistration library.
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
