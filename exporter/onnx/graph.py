"""Small onnx-graphsurgeon helpers the graph passes and the quantizer share: who reads a tensor,
and a ``Conv``'s geometry.

:func:`conv_geometry` reads an attribute dict, so it serves graphsurgeon nodes (``node.attrs``)
and ONNX protos (``{a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}``) alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import onnx_graphsurgeon as gs


def sole_consumer(tensor: gs.Tensor, graph: gs.Graph | None = None) -> gs.Node | None:
    """The only node reading ``tensor``, or None when several (or none) read it, or, given the
    ``graph``, when ``tensor`` is also one of its outputs (a rewrite would then lose it)."""
    if len(tensor.outputs) != 1:
        return None
    if graph is not None and any(t is tensor for t in graph.outputs):
        return None
    return tensor.outputs[0]


@dataclass(frozen=True)
class ConvGeometry:
    """A 2-D ``Conv``'s geometry as (height, width) pairs in pixels; ``pads`` is ONNX's
    ``(top, left, bottom, right)``."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    pads: tuple[int, int, int, int]
    dilation: tuple[int, int]
    auto_pad: str

    @property
    def symmetric_padding(self) -> tuple[int, int] | None:
        """``(pad_h, pad_w)`` when explicit padding is the same on both sides, else None."""
        top, left, bottom, right = self.pads
        if self.auto_pad != "NOTSET" or (top, left) != (bottom, right):
            return None
        return top, left


def conv_geometry(attrs: Mapping, weight_shape: Sequence | None = None) -> ConvGeometry | None:
    """The :class:`ConvGeometry` of a ``Conv`` from its attributes (the kernel from
    ``weight_shape[2:]`` when ``kernel_shape`` is absent); None when it is not 2-D or the kernel
    is unknown."""
    kernel = attrs.get("kernel_shape") or (tuple(weight_shape[2:]) if weight_shape is not None else ())
    if len(kernel) != 2 or not all(isinstance(k, int) for k in kernel):
        return None
    auto_pad = attrs.get("auto_pad", "NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else str(auto_pad)
    pads = tuple(int(p) for p in attrs.get("pads", (0, 0, 0, 0)))
    return ConvGeometry(kernel=(int(kernel[0]), int(kernel[1])),
                        stride=tuple(int(s) for s in attrs.get("strides", (1, 1))),
                        pads=pads if len(pads) == 4 else (0, 0, 0, 0),
                        dilation=tuple(int(d) for d in attrs.get("dilations", (1, 1))),
                        auto_pad=auto_pad)
