"""Shared files for the quantization tests: one small rectified export and its INT8 file."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from exporter.onnx.export import export_onnx
from exporter.quantize.quantize import QuantizeReport, quantize_onnx
from tests.helpers.export_models import small_rf_net

SIZE = 24


@dataclass
class Quantized:
    model: torch.nn.Module
    fp32: Path
    int8: Path
    report: QuantizeReport


@pytest.fixture(scope="package")
def quantized(tmp_path_factory) -> Quantized:
    """``small_rf_net`` (7 rectified convs of 6 geometries, a plain conv, BatchNorms) exported at
    24 x 24 with a dynamic batch, and quantized with 8 random calibration samples."""
    folder = tmp_path_factory.mktemp("quantize")
    model = small_rf_net(0)
    fp32, int8 = folder / "small_rf.onnx", folder / "small_rf_int8.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_onnx(model, torch.randn(1, 3, SIZE, SIZE), fp32)
    report = quantize_onnx(fp32, int8, samples=8)
    return Quantized(model, fp32, int8, report)
