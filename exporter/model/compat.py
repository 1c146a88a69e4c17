"""The ``rfconv`` shim: make ``import rfconv`` resolve to our layer.

The official ``rfconv`` package is a CUDA extension that no longer builds on torch 2.x. Code
written against it (the ``resnest`` model zoo with ``rectified_conv=True``, users' own models)
only needs ``rfconv.RFConv2d``; the shim provides it, defaulting to ``count_mode="rfconv"`` so
that official checkpoints compute exactly what they were trained with.
"""

from __future__ import annotations

import sys
import types

from exporter.model import layer as layers

SHIM_NAME = "rfconv"


class RFConv2d(layers.RFConv2d):
    """Our ``RFConv2d`` with the official package's counting rule as the default."""

    def __init__(self, *args, count_mode: str = "rfconv", **kwargs):
        super().__init__(*args, count_mode=count_mode, **kwargs)


def install_rfconv_shim(force: bool = False) -> types.ModuleType:
    """Register the shim as ``sys.modules["rfconv"]`` and return the module now registered.

    A real ``rfconv`` that is already imported is left alone unless ``force`` is set; use
    :func:`exporter.from_official` to convert models built with it.
    """
    existing = sys.modules.get(SHIM_NAME)
    if existing is not None and (getattr(existing, "__rfconv_deploy_shim__", False) or not force):
        return existing
    shim = types.ModuleType(SHIM_NAME, "rfconv-deploy shim for the official rfconv package")
    shim.RFConv2d = RFConv2d
    shim.__all__ = ["RFConv2d"]
    shim.__rfconv_deploy_shim__ = True
    sys.modules[SHIM_NAME] = shim
    return shim
