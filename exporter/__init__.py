"""rfconv-deploy: take rectified-convolution CNNs from PyTorch to ONNX, TensorRT and serving.

The public API is declared once, in :data:`_IMPORT_STRUCTURE` (module -> names), and loaded
lazily (PEP 562): ``import exporter`` imports nothing heavy, and ``from exporter import
export_onnx`` imports only the modules that name needs. Serving and the command line's
``--help`` therefore never load torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_IMPORT_STRUCTURE: dict[str, tuple[str, ...]] = {
    "exporter.model.layer": ("RFConv2d",),
    "exporter.model.scale": ("rectify_scale",),
    "exporter.model.convert": ("from_official", "rectify_model"),
    "exporter.model.compat": ("install_rfconv_shim",),
    "exporter.model.registry": ("build_model", "load_model", "REGISTRY"),
    "exporter.onnx.export": ("ExportError", "ExportReport", "export_onnx"),
    "exporter.quantize.quantize": ("QuantizeError", "QuantizeReport", "quantize_onnx"),
    "exporter.quantize.rules": ("check_qdq",),
    "exporter.trt.engine": ("build_engine",),
    "exporter.comparison.compare": ("compare",),
    "exporter.serving.triton_repo": ("write_repository",),
}
_MODULE_OF = {name: module for module, names in _IMPORT_STRUCTURE.items() for name in names}

__all__ = sorted(_MODULE_OF)

if TYPE_CHECKING:  # IDEs and type checkers: `name as name` marks a re-export (PEP 484)
    from exporter.comparison.compare import compare as compare
    from exporter.model.compat import install_rfconv_shim as install_rfconv_shim
    from exporter.model.convert import from_official as from_official
    from exporter.model.convert import rectify_model as rectify_model
    from exporter.model.layer import RFConv2d as RFConv2d
    from exporter.model.registry import REGISTRY as REGISTRY
    from exporter.model.registry import build_model as build_model
    from exporter.model.registry import load_model as load_model
    from exporter.model.scale import rectify_scale as rectify_scale
    from exporter.onnx.export import ExportError as ExportError
    from exporter.onnx.export import ExportReport as ExportReport
    from exporter.onnx.export import export_onnx as export_onnx
    from exporter.quantize.quantize import QuantizeError as QuantizeError
    from exporter.quantize.quantize import QuantizeReport as QuantizeReport
    from exporter.quantize.quantize import quantize_onnx as quantize_onnx
    from exporter.quantize.rules import check_qdq as check_qdq
    from exporter.serving.triton_repo import write_repository as write_repository
    from exporter.trt.engine import build_engine as build_engine


def __getattr__(name: str):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'exporter' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
