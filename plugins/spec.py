"""The ``RFConvRectify`` node contract shared by the graph pass, the ORT reference and the plugin.

A plugin-mode graph holds ``RFConvRectify(conv_out, conv_in[, bias]) -> out`` nodes in domain
``rfconv`` with the attributes below; TensorRT's ONNX parser finds the plugin by op type plus the
``plugin_version`` / ``plugin_namespace`` attributes (it ignores the node's domain) and passes the
other attributes to the plugin creator as fields (ints -> kINT32, string -> kCHAR).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

PLUGIN_NAME = "RFConvRectify"
PLUGIN_VERSION = "1"
PLUGIN_NAMESPACE = "rfconv"
PLUGIN_DOMAIN = "rfconv"
ACTIVATIONS = ("none", "relu")
PAIR_ATTRIBUTES = ("kernel", "stride", "padding", "dilation")


@dataclass(frozen=True)
class RectifySpec:
    """What one ``RFConvRectify`` node computes: conv geometry (height, width pairs, pixels), mode, activation."""

    kernel: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    average_mode: bool = False
    count_mode: str = "exact"
    activation: str = "none"

    def __post_init__(self):
        from exporter.model.scale import COUNT_MODES  # with torch: the rule's one definition lives there

        for name in PAIR_ATTRIBUTES:
            value = getattr(self, name)
            if len(value) != 2 or not all(isinstance(v, int) for v in value):
                raise ValueError(f"RFConvRectify: {name}={value!r} must be two ints (height, width)")
        if min(self.kernel + self.stride + self.dilation) < 1 or min(self.padding) < 0:
            raise ValueError(f"RFConvRectify: kernel/stride/dilation must be >= 1 and padding >= 0, got {self}")
        if self.count_mode not in COUNT_MODES:
            raise ValueError(f"RFConvRectify: count_mode={self.count_mode!r} is not one of {COUNT_MODES}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"RFConvRectify: activation={self.activation!r} is not one of {ACTIVATIONS}")

    def node_attributes(self) -> dict:
        """ONNX attributes of the node, plugin lookup attributes included."""
        attrs = {name: list(getattr(self, name)) for name in PAIR_ATTRIBUTES}
        attrs.update(average_mode=int(self.average_mode), count_mode=self.count_mode, activation=self.activation,
                     plugin_version=PLUGIN_VERSION, plugin_namespace=PLUGIN_NAMESPACE)
        return attrs

    @classmethod
    def from_node_attributes(cls, attrs: dict) -> RectifySpec:
        """The spec from a node's attributes (as onnx.helper.get_attribute_value or graphsurgeon give them)."""
        def text(value):
            return value.decode() if isinstance(value, bytes) else str(value)

        if "kernel" not in attrs:
            raise ValueError("RFConvRectify node has no 'kernel' attribute")
        fields = {name: tuple(int(v) for v in attrs[name]) for name in PAIR_ATTRIBUTES if name in attrs}
        return cls(**fields, average_mode=bool(attrs.get("average_mode", 0)),
                   count_mode=text(attrs.get("count_mode", "exact")), activation=text(attrs.get("activation", "none")))

    def scale(self, in_hw, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The factor ``[Ho, Wo]`` (``dtype``, default float32) for a conv input of ``in_hw`` pixels
        (see exporter.model.scale.rectify_scale)."""
        import torch

        from exporter.model.scale import rectify_scale

        dtype = torch.float32 if dtype is None else dtype
        return rectify_scale(in_hw, self.kernel, self.stride, self.padding, self.dilation, self.average_mode,
                             self.count_mode, dtype=dtype)
