"""The rectification factor: how much each output position of a padded conv is rescaled.

For an output position ``(h, w)`` the factor is ``taps / valid[h, w]`` (sum mode) or
``1 / valid[h, w]`` (average mode), where ``taps = kh * kw`` and ``valid[h, w]`` counts the
kernel taps, with stride and dilation, that land inside the un-padded input. The factor is
separable: ``valid[h, w] = valid_h[h] * valid_w[w]``, so it is computed per axis.

Two counting rules exist:

* ``count_mode="exact"`` counts taps exactly for any kernel size and dilation (paper, eq. 5).
* ``count_mode="rfconv"`` reproduces the official ``rfconv`` CUDA op, which models the kernel as
  an extent of ``k + 2 * (d - 1)`` pixels (exact only for ``k == 3``), counts
  ``taps = (extent - 1) // d + 1`` and ``valid = (len - 1) // d + 1`` where ``len`` is the length
  of the window ``[start, start + extent)`` clipped to ``[0, size)``.

This module is the single source of the factor: the layer, the exporter and the plugin tests
all call it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.nn.modules.utils import _pair

COUNT_MODES = ("exact", "rfconv")


@dataclass(frozen=True)
class AxisGeometry:
    """Conv geometry along one spatial axis (all values in pixels)."""

    kernel: int
    stride: int
    padding: int
    dilation: int

    def output_size(self, size: int) -> int:
        """Number of conv output positions for an input of ``size`` pixels."""
        return (size + 2 * self.padding - self.dilation * (self.kernel - 1) - 1) // self.stride + 1

    def taps(self, count_mode: str) -> int:
        """Kernel taps along this axis as the counting rule sees them."""
        if count_mode == "exact":
            return self.kernel
        extent = self.kernel + 2 * (self.dilation - 1)
        return (extent - 1) // self.dilation + 1

    def valid_counts(self, size: int, count_mode: str) -> torch.Tensor:
        """Taps inside the input for every output position: int64 tensor ``[output_size]``.

        Entries can be zero or negative when the geometry is invalid; :func:`_axis_valid`
        rejects those. (While tracing, :func:`traced_scale` computes the same counts with
        graph-friendly ops instead.)
        """
        k, s, p, d = self.kernel, self.stride, self.padding, self.dilation
        start = torch.arange(self.output_size(size), dtype=torch.int64) * s - p
        if count_mode == "exact":
            # taps i in [0, k) with 0 <= start + i*d <= size - 1
            first = torch.clamp(torch.div(-start + d - 1, d, rounding_mode="floor"), min=0)
            last = torch.clamp(torch.div(size - 1 - start, d, rounding_mode="floor"), max=k - 1)
            return last - first + 1
        extent = k + 2 * (d - 1)
        clipped = torch.clamp(start + extent, max=size) - torch.clamp(start, min=0)
        # the official op uses C integer division (truncation); clipped >= 1 wherever it is valid
        return torch.div(clipped - 1, d, rounding_mode="trunc") + 1


def _check_mode(count_mode: str) -> None:
    if count_mode not in COUNT_MODES:
        raise ValueError(f"count_mode={count_mode!r} is not supported; use one of {COUNT_MODES}")


def _axis_valid(axis: AxisGeometry, size: int, count_mode: str, name: str) -> torch.Tensor:
    """Valid tap counts along one axis, with the geometry checked: int64 ``[output_size]``."""
    for field in ("kernel", "stride", "dilation"):
        if getattr(axis, field) < 1:
            raise ValueError(f"{field}={getattr(axis, field)} along {name} must be >= 1")
    if axis.padding < 0:
        raise ValueError(f"padding={axis.padding} along {name} must be >= 0")
    if size < 1:
        raise ValueError(f"input {name}={size} must be >= 1")
    out = axis.output_size(size)
    if out < 1:
        raise ValueError(
            f"input {name}={size} is too small for kernel_size={axis.kernel}, "
            f"dilation={axis.dilation}, padding={axis.padding}: the conv output would be empty"
        )
    exact = axis.valid_counts(size, "exact")
    if bool((exact < 1).any()):
        position = int(torch.nonzero(exact < 1)[0])
        raise ValueError(
            f"padding={axis.padding} along {name} is too large for kernel_size={axis.kernel}, "
            f"dilation={axis.dilation}, stride={axis.stride} at input {name}={size}: output "
            f"position {position} sees only padding, so its rectification factor would divide by "
            f"zero; use padding <= dilation*(kernel_size-1)"
        )
    valid = exact if count_mode == "exact" else axis.valid_counts(size, count_mode)
    if bool((valid < 1).any()):
        raise ValueError(
            f"count_mode='rfconv' cannot rectify kernel_size={axis.kernel}, dilation="
            f"{axis.dilation}, padding={axis.padding} at input {name}={size}: its window model "
            f"leaves an output position with no input pixel; use count_mode='exact'"
        )
    return valid


def _numerators(axes, average_mode: bool, count_mode: str) -> tuple[float, float]:
    if average_mode:
        return 1.0, 1.0
    return float(axes[0].taps(count_mode)), float(axes[1].taps(count_mode))


def _counts_rule_is_exact(axis: AxisGeometry, count_mode: str) -> bool:
    """True when ``count_mode`` counts exactly like ``"exact"`` along this axis.

    Without dilation the official window ``k + 2 * (d - 1)`` is the kernel itself. (With
    dilation it differs even for ``k == 3`` on inputs small enough to clip both window ends.)
    """
    return count_mode == "exact" or axis.dilation == 1


def _traced_axis_counts(x: torch.Tensor, axis: AxisGeometry, dim: int, count_mode: str) -> torch.Tensor:
    """Valid taps per output position along spatial ``dim`` (-2 or -1) of ``x``, as graph ops.

    A float32 conv over a ones map of ``x``'s (maybe symbolic) length gives the counts:
    a ones kernel with the layer's stride, padding and dilation counts the taps that land
    inside the input. Shape ``[1, 1, Ho, 1]`` for ``dim=-2``, ``[1, 1, 1, Wo]`` for ``dim=-1``.
    Only float Conv, Pad, Slice, Sub, Div, Floor and Add on a ones map end up in the graph,
    all of which ONNX Runtime and TensorRT run at any size.
    """
    k, s, p, d = axis.kernel, axis.stride, axis.padding, axis.dilation
    size = x.shape[dim]
    along_h = dim == -2
    line = (1, 1, size, 1) if along_h else (1, 1, 1, size)
    ones = torch.ones(line, dtype=torch.float32, device=x.device)

    def conv(inp, taps, pad, dilation):
        shape = (1, 1, taps, 1) if along_h else (1, 1, 1, taps)
        kernel = torch.ones(shape, dtype=torch.float32, device=x.device)
        return F.conv2d(
            inp, kernel, stride=(s, 1) if along_h else (1, s),
            padding=(pad, 0) if along_h else (0, pad),
            dilation=(dilation, 1) if along_h else (1, dilation),
        )

    if _counts_rule_is_exact(axis, count_mode):
        return conv(ones, k, p, d)
    # Official rule: clip the window [start, start + extent) to the input, then count the
    # dilated taps in it. Padding (p, right) keeps exactly Ho windows when right >= 0.
    extent = k + 2 * (d - 1)
    right = p - (k - 3) * (d - 1)
    padded = F.pad(ones, (0, 0, p, max(right, 0)) if along_h else (p, max(right, 0), 0, 0))
    clipped = conv(padded, extent, 0, 1)
    if right < 0:
        out = axis.output_size(size)
        clipped = clipped[..., :out, :] if along_h else clipped[..., :out]
    return torch.floor((clipped - 1) / d) + 1


def traced_scale(
    x: torch.Tensor,
    axes: tuple[AxisGeometry, AxisGeometry],
    average_mode: bool,
    count_mode: str,
) -> torch.Tensor:
    """Factor ``[Ho, Wo]`` in ``x``'s dtype, built from tensor ops on ``x``'s (maybe symbolic) size.

    Used while a graph is traced for export: the ops land in the graph, where a static export
    folds them to a constant and a dynamic export keeps them, correct at every input size.
    The counts come from convs over ones maps (see :func:`_traced_axis_counts`), so the graph
    holds no integer clamps or ranges that TensorRT cannot run. Also callable eagerly, where it
    equals :func:`rectify_scale`. No validity checks are possible on symbolic sizes.
    """
    num_h, num_w = _numerators(axes, average_mode, count_mode)
    valid_h = _traced_axis_counts(x, axes[0], -2, count_mode)
    valid_w = _traced_axis_counts(x, axes[1], -1, count_mode)
    return ((num_h / valid_h) * (num_w / valid_w))[0, 0].to(x.dtype)


@functools.lru_cache(maxsize=512)
def _scale_float64(
    in_hw: tuple[int, int],
    axes: tuple[AxisGeometry, AxisGeometry],
    average_mode: bool,
    count_mode: str,
) -> torch.Tensor:
    """Cached float64 factor table ``[Ho, Wo]`` on the CPU (never handed out to be mutated)."""
    (ah, aw), (h, w) = axes, in_hw
    valid_h = _axis_valid(ah, h, count_mode, "height").to(torch.float64)
    valid_w = _axis_valid(aw, w, count_mode, "width").to(torch.float64)
    num_h, num_w = _numerators(axes, average_mode, count_mode)
    return torch.outer(num_h / valid_h, num_w / valid_w)


def axes_from(kernel_size, stride, padding, dilation) -> tuple[AxisGeometry, AxisGeometry]:
    """(height, width) geometries from int-or-pair conv arguments."""
    k, s, p, d = (_pair(v) for v in (kernel_size, stride, padding, dilation))
    return tuple(AxisGeometry(int(k[i]), int(s[i]), int(p[i]), int(d[i])) for i in range(2))


@functools.lru_cache(maxsize=1024)
def cached_scale(
    in_hw: tuple[int, int],
    axes: tuple[AxisGeometry, AxisGeometry],
    average_mode: bool,
    count_mode: str,
    dtype: torch.dtype,
    device: torch.device,
) -> torch.Tensor:
    """Shared, read-only factor table ``[Ho, Wo]`` in ``dtype`` on ``device``.

    Layers use this so that the factor is computed once per (input size, geometry, dtype,
    device). Callers must not modify the result in place.
    """
    _check_mode(count_mode)
    return _scale_float64(in_hw, axes, bool(average_mode), count_mode).to(device=device, dtype=dtype)


def rectify_scale(
    in_hw,
    kernel_size,
    stride=1,
    padding=0,
    dilation=1,
    average_mode: bool = False,
    count_mode: str = "exact",
    *,
    dtype: torch.dtype = torch.float32,
    device=None,
) -> torch.Tensor:
    """Rectification factor for every output position: a new tensor ``[Ho, Wo]``.

    ``in_hw`` is the conv *input* size ``(H, W)`` in pixels; the other arguments are ints or
    (height, width) pairs as for ``torch.nn.Conv2d``. Sum mode gives ``taps / valid``, average
    mode ``1 / valid`` (see the module docstring for the two counting rules). Raises
    ``ValueError`` naming the setting at fault for geometries with an empty output or with
    positions that see only padding.
    """
    _check_mode(count_mode)
    h, w = _pair(in_hw)
    axes = axes_from(kernel_size, stride, padding, dilation)
    table = _scale_float64((int(h), int(w)), axes, bool(average_mode), count_mode)
    return table.to(device=device, dtype=dtype, copy=True)
