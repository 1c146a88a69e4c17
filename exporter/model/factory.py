"""``package.module:factory`` models: imported like ``python -m`` would, called with keyword arguments.

A factory spec names a module and a callable in it that returns an ``nn.Module``. The module is
looked up in the current directory first, then on ``sys.path``; the ``rfconv`` shim is installed
before the import so that code written against the official package imports; any official
``RFConv2d`` left in the result is converted with :func:`exporter.model.convert.from_official`.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import json
import os
import sys
import types
import warnings
from collections.abc import Callable, Iterator, Mapping

import torch
from torch import nn

from exporter.model.checkpoint import load_checkpoint
from exporter.model.compat import SHIM_NAME, install_rfconv_shim
from exporter.model.convert import from_official
from exporter.model.layer import RFConv2d

EXPORT_DEFAULTS_ATTR = "_rfconv_export_defaults"
"""Name of the dict attribute through which a model carries its ``export_onnx`` keyword defaults."""

OFFICIAL_PACKAGES: Mapping[str, str] = types.MappingProxyType(
    {"resnest": "rectified_conv", "encoding": "rectified_conv"}
)
"""Official model zoos whose factories build rectified convs only when asked, and the keyword that asks."""


class NoRectifiedConvWarning(UserWarning):
    """A factory from the official packages (or written against ``rfconv``) built no rectified conv."""


def parse_factory_spec(spec: str) -> tuple[str, str]:
    """``"package.module:factory"`` -> ``("package.module", "factory")``; ``ValueError`` if a part is empty."""
    module_name, _, factory_name = spec.partition(":")
    if not module_name or not factory_name or ":" in factory_name:
        raise ValueError(f"model factory {spec!r} is not of the form package.module:factory (e.g. mynet:build)")
    return module_name, factory_name


@contextlib.contextmanager
def current_directory_first() -> Iterator[None]:
    """The current directory at the front of ``sys.path`` while the block runs (as ``python -m`` puts it)."""
    cwd = os.getcwd()
    if "" in sys.path or cwd in sys.path:
        yield
        return
    sys.path.insert(0, cwd)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(cwd)


def _import(spec: str, module_name: str) -> types.ModuleType:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        top = module_name.split(".")[0]
        if err.name is not None and (err.name == module_name or module_name.startswith(err.name + ".")):
            where = f"the current directory ({os.getcwd()}) or on sys.path" if err.name == top else "its package"
            raise ValueError(f"cannot load model factory {spec!r}: no module {err.name!r} in {where}") from err
        raise ValueError(f"cannot load model factory {spec!r}: importing {module_name} failed: {err}") from err
    except ImportError as err:
        raise ValueError(f"cannot load model factory {spec!r}: importing {module_name} failed: {err}") from err
    except SyntaxError as err:
        raise ValueError(
            f"cannot load model factory {spec!r}: {err.filename} line {err.lineno}: {err.msg}"
        ) from err


def _factory(spec: str, module: types.ModuleType, factory_name: str) -> Callable[..., object]:
    factory = getattr(module, factory_name, None)
    if factory is None:
        names = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
        hint = f"; its callables: {', '.join(names[:12])}" if names else ""
        raise ValueError(
            f"cannot load model factory {spec!r}: module {module.__name__} has no attribute {factory_name!r}{hint}"
        )
    if not callable(factory):
        raise ValueError(f"cannot load model factory {spec!r}: {factory_name} is a {type(factory).__name__}, "
                         "not a callable")
    return factory


def _check_kwargs(spec: str, factory: Callable[..., object], kwargs: Mapping[str, object]) -> None:
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return  # a builtin or C callable: let the call itself complain
    try:
        signature.bind_partial(**kwargs)
    except TypeError as err:
        raise ValueError(
            f"model factory {spec!r} does not take model_kwargs {json.dumps(dict(kwargs))}: {err}; "
            f"its signature is {factory.__name__}{signature}"
        ) from err


def _rectify_switch(modules: list[types.ModuleType], factory: Callable[..., object]) -> str | None:
    """The keyword that makes this factory build rectified convs, when it is known or guessable."""
    for module in modules:
        switch = OFFICIAL_PACKAGES.get(module.__name__.split(".")[0])
        if switch:
            return switch
    with contextlib.suppress(TypeError, ValueError):
        for name in inspect.signature(factory).parameters:
            if "rectif" in name.lower():
                return name
    return None


def _written_for_rfconv(modules: list[types.ModuleType]) -> bool:
    """True for the official zoos and for modules that import the ``rfconv`` package (or its class)."""
    shim = sys.modules.get(SHIM_NAME)
    for module in modules:
        if module.__name__.split(".")[0] in OFFICIAL_PACKAGES:
            return True
        for value in vars(module).values():
            if value is shim or (shim is not None and value is getattr(shim, "RFConv2d", None)):
                return True
    return False


def _warn_if_not_rectified(spec: str, model: nn.Module, modules: list[types.ModuleType], factory) -> None:
    if any(isinstance(m, RFConv2d) and m.rectify for m in model.modules()):
        return
    if not _written_for_rfconv(modules):
        return
    switch = _rectify_switch(modules, factory)
    if switch:
        how = (f"pass the factory {switch}=True (on the command line: --model-kwargs "
               f"'{json.dumps({switch: True})}')")
    else:
        how = ("pass the factory the keyword that switches its rfconv.RFConv2d layers on (model_kwargs; on the "
               "command line --model-kwargs '{\"name\": true}')")
    warnings.warn(
        f"{spec} built no rectified convolution, so it is the plain network (a rectified checkpoint's keys fit it "
        f"too): {how}; rectify_model is not the same, its exact counting differs from the official layer's",
        NoRectifiedConvWarning, stacklevel=3,
    )


def load_factory_model(
    spec: str,
    seed: int = 0,
    checkpoint=None,
    model_kwargs: Mapping[str, object] | None = None,
) -> nn.Module:
    """Build ``package.module:factory`` with ``factory(**model_kwargs)`` and return it in eval mode.

    The module is imported with the current directory first on ``sys.path`` (``mynet:build``
    finds ``./mynet.py``), the factory is called under ``torch.manual_seed(seed)``, official
    ``RFConv2d`` layers are converted, and ``checkpoint`` (if given) is loaded strictly. A factory
    from the official zoos (``resnest``, ``encoding``) or from a module that imports ``rfconv``
    whose model has no rectified conv raises a :class:`NoRectifiedConvWarning` naming the
    keyword to pass, before the checkpoint is read. Raises ``ValueError`` when the module or
    factory cannot be found or imported, when ``model_kwargs`` do not fit its signature, or when
    it returns something other than an ``nn.Module``.
    """
    module_name, factory_name = parse_factory_spec(spec)
    kwargs = dict(model_kwargs or {})
    install_rfconv_shim()
    with current_directory_first():
        module = _import(spec, module_name)
        factory = _factory(spec, module, factory_name)
        _check_kwargs(spec, factory, kwargs)
        torch.manual_seed(seed)
        model = factory(**kwargs)
    if not isinstance(model, nn.Module):
        raise ValueError(f"model factory {spec!r} returned {type(model).__name__}, not an nn.Module")
    model = from_official(model)
    modules = [module]
    own = sys.modules.get(getattr(factory, "__module__", None) or "")
    if own is not None and own is not module:
        modules.append(own)
    _warn_if_not_rectified(spec, model, modules, factory)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint)
    return model.eval()
