"""Small rectified models for the comparison tests (factories for ``--model tests.helpers.compare_models:NAME``)."""

from torch import nn

from exporter import RFConv2d
from exporter.model.registry import calibrate_batchnorm

INPUT_HW = 16
DAMAGED_MODULE = "3"  # the stride-2 conv: its scale constant is not shared with any other layer
DAMAGED_LAYER = 1  # ... which is the second rectified conv in the graph


def tiny_rf() -> nn.Module:
    """Three rectified convs of distinct geometries with calibrated BatchNorm, and a 10-way classifier."""
    model = nn.Sequential(
        RFConv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        RFConv2d(8, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        RFConv2d(8, 16, 5, padding=2), nn.BatchNorm2d(16), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    )
    return calibrate_batchnorm(model, seed=0, input_hw=INPUT_HW)
