"""A small rectified segmentation model (FCN-like) for the dense-prediction tests and examples.

``tiny_segmenter()``: two stride-2 rectified convs, a 1x1 classifier and a bilinear upsampling to
the input size, returning ``{"out": [N, CLASSES, H, W]}`` as torchvision's segmentation models do.
Takes any ``H, W >= 8``. Used as ``tests.helpers.dense_models:tiny_segmenter`` by the examples.
"""

from __future__ import annotations

import torch
from torch import nn

from exporter import RFConv2d

CLASSES = 5


class TinySegmenter(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(
            RFConv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            RFConv2d(8, 8, 3, stride=2, padding=1), nn.ReLU(),
            RFConv2d(8, 8, 3, padding=2, dilation=2), nn.ReLU(),
        )
        self.classifier = nn.Conv2d(8, CLASSES, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.classifier(self.backbone(x))
        return {"out": nn.functional.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)}


def tiny_segmenter(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = TinySegmenter()
    bn = model.backbone[1]
    bn.running_mean.uniform_(-0.5, 0.5)
    bn.running_var.uniform_(0.5, 2.0)
    return model.eval()
