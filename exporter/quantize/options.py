"""What a quantization can be asked for: :class:`QuantizeConfig` and the defaults (light: standard
library only, read by the CLI, which builds ``quantize``'s options from the config's fields).

The defaults (percentile 99.999, 16 samples) are the calibration that kept int8 logits closest to
fp32 on both RF-ResNet-50 and ResNet-50; rectified models gain from more samples (``--samples 64``
for a deployment). The measurements behind them are in benchmarks/README.md, "INT8".
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from exporter.config import option

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


def _rank4_shape(text: str) -> tuple[int, ...]:
    from exporter.shapes import parse_shape

    return parse_shape(text, 4)


_rank4_shape.__name__ = "N,C,H,W shape"  # argparse names the type in "invalid ... value"


@dataclass(frozen=True)
class QuantizeConfig:
    """Settings of one quantization (the keyword arguments of
    :func:`exporter.quantize.quantize.quantize_onnx`): ``samples`` calibration inputs (batch 1)
    from ``calibration`` (``random`` seeded with ``seed``, a folder of images or an ``.npz``),
    ranges by ``method``, ``activations`` int8 or uint8, ``exclude`` nodes left in fp32, and for a
    dynamic-H/W file the ``input_shape`` (N, C, H, W) to calibrate at. Raises ``ValueError``
    naming the field for a value it cannot take."""

    calibration: str = option("random", metavar="random|DIR|FILE.npz",
                              help=f"calibration inputs: {CALIBRATION_SOURCES} (arrays named after the inputs, "
                                   "samples along the first axis); images get ImageNet preprocessing")
    samples: int = option(DEFAULT_SAMPLES, help="calibration samples, batch 1 each (rectified models gain from 64, "
                                                "benchmarks/README.md 'INT8')")
    method: str = option(DEFAULT_METHOD, choices=METHODS, help="activation range calibration")
    activations: str = option(DEFAULT_ACTIVATIONS, choices=ACTIVATIONS,
                              help="int8: symmetric, TensorRT-ready; uint8: asymmetric, an ONNX Runtime CPU variant "
                                   "that TensorRT cannot build")
    exclude: tuple[str, ...] = option((), nargs="+", metavar="LAYER",
                                      help="node names (or a conv's output or weight tensor) to leave in fp32")
    input_shape: tuple[int, ...] | None = option(None, parse=_rank4_shape, metavar="N,C,H,W",
                                                 help="dynamic-H/W files: the size to calibrate at")
    seed: int = option(0, help="seed of the random calibration inputs")

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method={self.method!r} is not one of {', '.join(METHODS)}")
        if self.activations not in ACTIVATIONS:
            raise ValueError(f"activations={self.activations!r} is not one of {', '.join(ACTIVATIONS)}")
        if self.samples < 1:
            raise ValueError(f"samples must be >= 1, got {self.samples}")
        if self.input_shape is not None and len(self.input_shape) != 4:
            raise ValueError(f"input_shape={tuple(self.input_shape)} must be N,C,H,W")
        object.__setattr__(self, "exclude", tuple(self.exclude))

    def quantize_arguments(self) -> dict:
        """The keyword arguments of :func:`exporter.quantize.quantize.quantize_onnx`."""
        return {f.name: getattr(self, f.name) for f in fields(self)}
