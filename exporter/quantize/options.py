"""What a quantization can be asked for, and the defaults (light: imports nothing, read by the CLI).

Measured on RF-ResNet-50 and the plain ResNet-50 (benchmarks/README.md, "INT8"): percentile
calibration kept the logits closest to fp32 for both (cosine 0.9876 / 0.9926 with 16 samples,
against 0.9855 / 0.9915 for min-max and 0.9826 / 0.9932 for entropy with 8), so it is the default.
"""

METHODS = ("minmax", "entropy", "percentile")
"""Calibration methods (ONNX Runtime's ``CalibrationMethod`` MinMax, Entropy, Percentile)."""
DEFAULT_METHOD = "percentile"
PERCENTILE = 99.999
"""Percentile calibration keeps this share of each activation's histogram (ONNX Runtime's default)."""

ACTIVATIONS = ("int8", "uint8")
"""``int8``: symmetric int8 activations (zero point 0), what TensorRT reads (the default);
``uint8``: asymmetric uint8 activations, an ONNX Runtime CPU variant (U8S8 kernels, ReLU folded
into the quantization range) that TensorRT cannot build. Weights are int8, symmetric and
per output channel either way."""
DEFAULT_ACTIVATIONS = "int8"

DEFAULT_SAMPLES = 16
"""Calibration samples (batch 1 each) unless given."""
CALIBRATION_SOURCES = "random, a folder of images or an .npz file"
