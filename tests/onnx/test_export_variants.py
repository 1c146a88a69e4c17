"""The benchmark's alternative graph layouts compute the same function as the default export."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import pytest
import torch
from torch import nn

from benchmarks.graph_variants import CORRECT, PROBES
from exporter import RFConv2d
from exporter.onnx.export import export_onnx
from tests.helpers.export_models import ort_session, randomize_batchnorm


@pytest.fixture(scope="module")
def default_export(tmp_path_factory):
    torch.manual_seed(0)
    model = randomize_batchnorm(nn.Sequential(
        RFConv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        RFConv2d(16, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        RFConv2d(16, 16, 5, padding=2), nn.BatchNorm2d(16), nn.ReLU(),
    ), seed=0)
    path = tmp_path_factory.mktemp("variants") / "default.onnx"
    export_onnx(model, torch.randn(1, 3, 19, 22), path)
    return path


def _outputs(path, x):
    return ort_session(path).run(None, {"input": x})[0]


@pytest.mark.parametrize("name", sorted(CORRECT) + sorted(PROBES))
def test_variants(default_export, tmp_path, name):
    rewrite = {**CORRECT, **PROBES}[name]
    path = tmp_path / f"{name}.onnx"
    onnx.save(gs.export_onnx(rewrite(gs.import_onnx(onnx.load(default_export)))), path)
    x = np.random.default_rng(0).standard_normal((2, 3, 19, 22), dtype=np.float32)
    want, got = _outputs(default_export, x), _outputs(path, x)
    error = np.abs(got - want).max() / np.abs(want).max()
    if name in CORRECT:
        assert error <= 1e-6
    else:
        assert error > 1e-3  # the probes drop or misplace the rectification on purpose
