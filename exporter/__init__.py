"""rfconv-deploy: take rectified-convolution CNNs from PyTorch to ONNX, TensorRT and serving."""

from .convert import from_official, rectify_model
from .layers import RFConv2d
from .scale import rectify_scale

__all__ = ["RFConv2d", "from_official", "rectify_model", "rectify_scale"]
__version__ = "0.1.0"
