"""The input sizes a dynamic-H/W file is checked at (light: standard library only).

One rule, read by the export's own check (:mod:`exporter.onnx.verify`) and by ``compare``
(:func:`exporter.comparison.defaults.check_sizes` re-exports :func:`check_sizes`):

* by default, per axis, the largest odd size below the example's (odd inputs make the first
  stride-2 layer round, and a smaller map moves every border) and the smallest size above it
  that is ``1 mod 2**ROUNDING_DEPTH``, so that each of the first :data:`ROUNDING_DEPTH` stride-2
  stages halves an odd size and rounds;
* with ``size_multiple=N`` (a model that takes only multiples of N: a UNet whose stride-2 downs
  and transposed-conv ups meet at skip joins, an HRNet), the next multiple of N above the example
  and the multiple of N nearest twice the example (at least one step above the first).

A size must lie above ``above`` (a bound torch.export kept, which the check must pass beyond):
the default rule's smaller size then becomes the next odd size above it. Sizes are pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

ROUNDING_DEPTH = 5
"""Stride-2 stages the larger check size rounds at (ResNet-style networks have five)."""


def _smaller_odd(size: int) -> int:
    return size - 1 if size % 2 == 0 else size - 2


def _larger_rounding(size: int) -> int:
    step = 2 ** ROUNDING_DEPTH
    return (size // step + 1) * step + 1


def axis_sizes(size: int, size_multiple: int | None = None, above: int | None = None) -> tuple[int, int]:
    """The two sizes other than ``size`` (the example's, pixels) one axis is checked at, as the
    module docstring says; both exceed ``above`` when it is given. Raises ValueError for a
    ``size_multiple`` below 1."""
    floor = size if above is None else max(size, int(above))
    if size_multiple is not None:
        step = int(size_multiple)
        if step < 1:
            raise ValueError(f"size_multiple must be at least 1, got {size_multiple}")
        near = (floor // step + 1) * step
        return near, max(near + step, round(2 * size / step) * step)
    smaller = _smaller_odd(size)
    if above is not None and smaller <= above:
        smaller = floor + 1 + floor % 2
    return smaller, max(_larger_rounding(size), _larger_rounding(floor))


def check_sizes(hw: Sequence[int], size_multiple: int | None = None) -> list[tuple[int, int]]:
    """The input sizes ``(H, W)`` in pixels at which a dynamic-H/W file is checked: ``hw`` itself
    (the export size, or the one asked for), then the two other sizes of :func:`axis_sizes` on
    each axis. Example: ``(224, 224)`` -> ``[(224, 224), (223, 223), (257, 257)]``; with
    ``size_multiple=32``, ``[(224, 224), (256, 256), (448, 448)]``."""
    h, w = (int(v) for v in hw)
    (h1, h2), (w1, w2) = axis_sizes(h, size_multiple), axis_sizes(w, size_multiple)
    return [(h, w), (h1, w1), (h2, w2)]


def parse_check_sizes(text: str) -> tuple[tuple[int, int], ...]:
    """``"96x96,128x160"`` -> ``((96, 96), (128, 160))``; ValueError naming the bad item."""
    sizes = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        parts = item.lower().split("x")
        try:
            h, w = (int(p) for p in parts)
        except ValueError as err:
            raise ValueError(f"check size {item!r} is not HxW (e.g. 96x128)") from err
        if h < 1 or w < 1:
            raise ValueError(f"check size {item!r} must be positive")
        sizes.append((h, w))
    if not sizes:
        raise ValueError(f"no check sizes in {text!r}; give HxW[,HxW...], e.g. 96x96,160x128")
    return tuple(sizes)
