"""Small models for the export tests, and helpers to run exported files.

``small_rf_net`` covers the layer settings the exporter must handle: bias and no bias, stride 2
with rounding, dilation, average mode, the official counting rule with a window that differs
from the exact count, two layers of identical geometry (one shared scale), a plain conv with
BatchNorm, and rectified convs with and without a BatchNorm after them.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from exporter import RFConv2d


def randomize_batchnorm(model: nn.Module, seed: int) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in model.modules():
            if isinstance(bn, nn.BatchNorm2d):
                n = bn.num_features
                bn.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                bn.bias.copy_(torch.randn(n, generator=gen) * 0.3)
                bn.running_mean.copy_(torch.randn(n, generator=gen) * 0.5)
                bn.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
    return model.eval()


def small_rf_net(seed: int = 0) -> nn.Sequential:
    """A 16-channel CNN with 7 rectified convs of 6 distinct geometries. Input ``[N, 3, H, W]``, H, W >= 16."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        RFConv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        RFConv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),  # same geometry
        RFConv2d(16, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 16, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        RFConv2d(16, 16, (3, 5), padding=(1, 2), groups=4), nn.ReLU(),  # no BatchNorm after it
        RFConv2d(16, 16, 5, padding=1, dilation=2, count_mode="rfconv"), nn.BatchNorm2d(16), nn.ReLU(),
        RFConv2d(16, 16, 3, padding=1, average_mode=True), nn.BatchNorm2d(16), nn.ReLU(),
        RFConv2d(16, 8, 3, stride=2, padding=2, dilation=2),
    )
    return randomize_batchnorm(model, seed)


def plain_net() -> nn.Sequential:
    """A CNN without any rectified conv (1x1 convs only)."""
    torch.manual_seed(0)
    return randomize_batchnorm(nn.Sequential(nn.Conv2d(3, 8, 1), nn.BatchNorm2d(8), nn.ReLU()), 0)


def tiny_factory() -> nn.Module:
    """For ``package.module:factory`` specs in CLI tests."""
    return small_rf_net(1)


def rectified_layers(model: nn.Module, x: torch.Tensor) -> list[tuple[RFConv2d, tuple[int, int]]]:
    """Rectifying layers of ``model`` with their input (H, W) for input ``x``, in call order."""
    seen = []
    hooks = [
        m.register_forward_pre_hook(lambda mod, args: seen.append((mod, tuple(args[0].shape[-2:]))))
        for m in model.modules() if isinstance(m, RFConv2d) and m.rectify
    ]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return seen


def ort_session(path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def rel_err(out: np.ndarray, ref: np.ndarray) -> float:
    """Largest absolute error relative to the largest reference magnitude."""
    return float(np.abs(out.astype(np.float64) - ref).max() / np.abs(ref).max())


def torch_out(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    """The model's (first) output in float64; dense models return ``{"out": ...}``."""
    with torch.no_grad():
        out = model(x)
    return (next(iter(out.values())) if isinstance(out, dict) else out).double().numpy()


class ImageAndGain(nn.Module):
    """Two inputs: an image ``[N, 3, H, W]`` and a per-channel gain ``[N, 8]`` applied after the first
    rectified conv. Output ``[N, 4, ceil(H/2), ceil(W/2)]``."""

    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.stem = RFConv2d(3, 8, 3, padding=1)
        self.head = RFConv2d(8, 4, 3, stride=2, padding=1)

    def forward(self, image: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.stem(image) * gain[:, :, None, None]))


class ImageAndDepth(nn.Module):
    """Two images of one size: RGB ``[N, 3, H, W]`` and depth ``[N, 1, H, W]``, each through its own
    rectified conv, summed. Output ``[N, 8, H, W]``."""

    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.rgb = RFConv2d(3, 8, 3, padding=1)
        self.depth = RFConv2d(1, 8, 5, padding=2)

    def forward(self, rgb: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.rgb(rgb) + self.depth(depth))


def two_input_factory() -> nn.Module:
    """For ``package.module:factory`` specs in CLI tests: :class:`ImageAndGain`."""
    return ImageAndGain(1)
