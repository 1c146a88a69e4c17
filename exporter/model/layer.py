"""``RFConv2d``: rectified convolution as a drop-in ``torch.nn.Conv2d``.

The layer runs the ordinary convolution (bias included) and multiplies the result by the
per-position factor from :mod:`exporter.model.scale`. The constructor and the state-dict keys are
those of the official ``rfconv.RFConv2d``, so checkpoints load both ways.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.utils import _pair

from exporter.model.scale import COUNT_MODES, axes_from, cached_scale, traced_scale


def _tracing() -> bool:
    """True while torch.export / torch.compile / torch.jit trace the model into a graph."""
    return torch.compiler.is_compiling() or torch.jit.is_tracing()


class RFConv2d(nn.Conv2d):
    """Rectified 2-D convolution (Zhang, NeurIPS 2020).

    Input ``[N, C_in, H, W]``, output ``[N, C_out, Ho, Wo]``, any float dtype, any memory format.
    ``y = factor[Ho, Wo] * conv2d(x, weight, bias)`` with ``factor = taps / valid`` (sum mode) or
    ``1 / valid`` (``average_mode=True``). Rectification is active when ``average_mode`` is set
    or any padding is > 0; otherwise the layer is a plain ``Conv2d``. ``count_mode`` picks the
    counting rule: ``"exact"`` (default) or ``"rfconv"`` (bit-compatible with the official op).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        average_mode: bool = False,
        count_mode: str = "exact",
        device=None,
        dtype=None,
    ):
        if count_mode not in COUNT_MODES:
            raise ValueError(f"RFConv2d: count_mode={count_mode!r} is not one of {COUNT_MODES}")
        if isinstance(padding, str):
            raise ValueError(
                f"RFConv2d: padding={padding!r} is not supported; give the padding in pixels "
                "(an int or a (height, width) pair)"
            )
        super().__init__(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding,
            dilation=dilation, groups=groups, bias=bias, padding_mode=padding_mode,
            device=device, dtype=dtype,
        )
        # Attribute names follow the official class so that code inspecting it keeps working.
        self.rectify = bool(average_mode) or any(p > 0 for p in _pair(self.padding))
        self.average = bool(average_mode)
        self.count_mode = count_mode
        self._axes = axes_from(self.kernel_size, self.stride, self.padding, self.dilation)

    @property
    def average_mode(self) -> bool:
        return self.average

    def scale_for(self, x: torch.Tensor) -> torch.Tensor:
        """Factor ``[Ho, Wo]`` for input ``x``, in ``x``'s dtype and device.

        Eagerly it comes from a cache keyed by (input size, geometry, dtype, device); while a
        graph is traced for export it is built from ops on the input's shape instead.
        """
        if _tracing():
            return traced_scale(x, self._axes, self.average, self.count_mode)
        in_hw = (int(x.shape[-2]), int(x.shape[-1]))
        return cached_scale(in_hw, self._axes, self.average, self.count_mode, x.dtype, x.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self._conv_forward(x, self.weight, self.bias)
        if not self.rectify:
            return y
        if _tracing():
            return y * traced_scale(x, self._axes, self.average, self.count_mode)
        # y is a fresh tensor that the conv's backward does not keep, so scaling it in place is
        # safe for autograd and saves a full-size allocation and copy.
        return y.mul_(self.scale_for(x))

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, rectify={self.rectify}, average_mode={self.average}, "
            f"count_mode={self.count_mode!r}"
        )
