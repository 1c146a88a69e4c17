"""TensorRT plugin support for rectified convolution: library loading and the plugin-mode op.

``load_library()`` registers the RFConvRectify plugin with TensorRT; :mod:`plugins.spec` holds the
node contract, :mod:`plugins.ort_reference` runs plugin-mode graphs on ONNX Runtime, and
:mod:`plugins.torch_kernel` exposes the CUDA kernel to PyTorch (GPU only).
"""

from .library import find_library, load_library
from .spec import PLUGIN_DOMAIN, PLUGIN_NAME, PLUGIN_NAMESPACE, PLUGIN_VERSION, RectifySpec

__all__ = ["PLUGIN_DOMAIN", "PLUGIN_NAME", "PLUGIN_NAMESPACE", "PLUGIN_VERSION", "RectifySpec", "find_library",
           "load_library"]
