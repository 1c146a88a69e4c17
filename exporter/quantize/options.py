"""What a quantization can be asked for, and the defaults (light: imports nothing, read by the CLI).

Measured on RF-ResNet-50 and the plain ResNet-50 (benchmarks/README.md, "INT8"; 64 random
calibration samples, logits cosine to fp32 on 32 inputs): percentile 99.999 0.9854 / 0.9927,
entropy 0.9846 / 0.9915, min-max 0.9846 / 0.9922 (16 samples: percentile 99.99 0.9750 / 0.9926,
99.9 0.9402 / 0.9880). Percentile 99.999 is the closest for both, so it is the default. Rectified
models gain from more samples than the default 16 (RF-ResNet-50: 0.9830 with 16, 0.9854 with 64,
no more with 256; the plain model the same with 16): give ``--samples 64`` for a deployment.
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
