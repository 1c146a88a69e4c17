"""Independent brute-force reference for rectified convolution.

Loops explicitly over kernel taps, counts by hand which taps land inside the input, and applies
the factor from the paper (exact counting) or from a literal transcription of the official
rfconv CUDA kernel (rfconv counting). Shares no code with ``exporter``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


class InvalidGeometry(Exception):
    """The geometry has an empty output or an output position that sees only padding."""


def _official_axis(o: int, size: int, k: int, s: int, p: int, d: int) -> tuple[int, int]:
    """(taps, valid) along one axis, transcribed from rfconv's conv_rectify_cuda_frame."""
    kernel = k + 2 * (d - 1)  # function.py: "assuming kernel_size is 3"
    start = o * s - p
    end = min(start + kernel, size + p)
    taps = (kernel - 1) // d + 1
    start, end = max(start, 0), min(end, size)
    if end - start < 1:
        raise InvalidGeometry("official window clipped to nothing")
    return taps, math.trunc(((end - start) - 1) / d) + 1


def rectified_conv(x, weight, bias, stride, padding, dilation, groups,
                   average_mode=False, count_mode="exact", padding_mode="zeros", rectify=None):
    """Rectified conv output ``[N, C_out, Ho, Wo]`` in float64 by explicit loops over taps."""
    x, weight = x.double(), weight.double()
    n, c_in, h, w = x.shape
    c_out, _, kh, kw = weight.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    if ho < 1 or wo < 1:
        raise InvalidGeometry("empty output")
    mode = "constant" if padding_mode == "zeros" else padding_mode
    xp = F.pad(x, (pw, pw, ph, ph), mode=mode)
    out = torch.zeros(n, c_out, ho, wo, dtype=torch.float64)
    valid = torch.zeros(ho, wo, dtype=torch.int64)
    in_g, out_g = c_in // groups, c_out // groups
    for i in range(kh):
        for j in range(kw):
            rows = [oh * sh + i * dh for oh in range(ho)]  # padded coordinates
            cols = [ow * sw + j * dw for ow in range(wo)]
            patch = xp[:, :, rows][:, :, :, cols]
            for g in range(groups):
                out[:, g * out_g:(g + 1) * out_g] += torch.einsum(
                    "nchw,oc->nohw", patch[:, g * in_g:(g + 1) * in_g],
                    weight[g * out_g:(g + 1) * out_g, :, i, j],
                )
            for a, r in enumerate(rows):
                for b, cc in enumerate(cols):
                    valid[a, b] += int(0 <= r - ph < h and 0 <= cc - pw < w)
    if bias is not None:
        out += bias.double().view(1, -1, 1, 1)
    if (valid == 0).any():
        raise InvalidGeometry("a position sees only padding")
    if rectify is None:
        rectify = average_mode or ph > 0 or pw > 0
    if not rectify:
        return out
    factor = torch.empty(ho, wo, dtype=torch.float64)
    for a in range(ho):
        for b in range(wo):
            if count_mode == "exact":
                taps, v = kh * kw, int(valid[a, b])
            else:
                th, vh = _official_axis(a, h, kh, sh, ph, dh)
                tw, vw = _official_axis(b, w, kw, sw, pw, dw)
                taps, v = th * tw, vh * vw
            factor[a, b] = (1.0 if average_mode else taps) / v
    return out * factor
