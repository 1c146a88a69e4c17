"""Small ONNX models for the serving tests, exported once per test process.

A tiny rectified CNN (two RFConv2d layers with padding, so the rectification is active) exported
with the project's :func:`exporter.export_onnx`: ``dynamic`` has a symbolic batch dimension,
``fixed`` has batch 1 baked in, ``dynamic_hw`` takes any height and width. Input ``input`` FP32
``[N, 3, 16, 16]`` (``[N, 3, H, W]`` for ``dynamic_hw``), output ``logits`` FP32 ``[N, 10]``.
"""

from __future__ import annotations

import functools
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from exporter.model.layer import RFConv2d
from exporter.onnx.export import export_onnx

IMAGE_SHAPE = (3, 16, 16)
CLASSES = 10


def tiny_rfconv_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(
        RFConv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        RFConv2d(8, 8, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, CLASSES),
    )
    bn = model[1]
    bn.running_mean.uniform_(-0.5, 0.5)
    bn.running_var.uniform_(0.5, 2.0)
    return model.eval()


@dataclass(frozen=True)
class TinyModels:
    torch_model: nn.Module
    dynamic: Path
    fixed: Path
    dynamic_hw: Path


_workdir = tempfile.TemporaryDirectory(prefix="rfconv-serving-tests-")


@functools.cache
def tiny_models() -> TinyModels:
    model = tiny_rfconv_cnn()
    example = torch.randn(2, *IMAGE_SHAPE)
    root = Path(_workdir.name)
    dynamic, fixed, dynamic_hw = root / "tiny.onnx", root / "tiny_fixed.onnx", root / "tiny_hw.onnx"
    export_onnx(model, example, dynamic, output_names=["logits"])
    export_onnx(model, example[:1], fixed, dynamic_batch=False, output_names=["logits"])
    export_onnx(model, example, dynamic_hw, dynamic_hw=True, output_names=["logits"])
    return TinyModels(model, dynamic, fixed, dynamic_hw)
