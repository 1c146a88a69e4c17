"""TensorRT plugin support for rectified convolution: library loading and the plugin-mode op."""
