"""Default backends and tolerances of a comparison (light: imports nothing, read by the CLI too)."""

DEFAULT_TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2, "bf16": 5e-2}
"""Default rtol by precision (the default atol is rtol times each output's largest |reference|)."""
DEFAULT_BACKENDS = ("torch", "ort-cpu", "ort-cuda", "ort-trt", "trt")
"""``onnx-ref`` is opt-in: exact but slow (seconds per image for a ResNet-50)."""


def tolerance_precision(file_precision: str) -> str:
    """The key of :data:`DEFAULT_TOLERANCE` for a file's precision: a file with any fp16 Conv is
    held to the fp16 tolerance (``"mixed"`` included); an int8 file computes in fp32 between its
    Q/DQ pairs (its own verdict is :data:`INT8_VERDICT`)."""
    return "fp32" if file_precision in ("fp32", "int8") else "fp16"

VERDICTS = ("noise-floor", "tolerance", "int8")
"""``noise-floor`` (default): each backend's error against PyTorch in float64 must stay within
:data:`NOISE_FLOOR_MULTIPLE` times the floor *and* within the tolerance; ``tolerance``: the
tolerance alone, against the first backend that ran (the only check before noise floors);
``int8``: the INT8 verdict against fp32 PyTorch (:data:`INT8_VERDICT`), which an int8 file gets
instead of the noise floor (int8 rounding is far above any float noise floor)."""

INT8_VERDICT = {"min_cosine": 0.98, "max_scaled_error": 0.35, "min_top1": 0.9, "top1_margin": 0.05,
                "ring_ratio": 3.0, "ring_slack": 0.05}
"""The INT8 verdict, per output (and per rectified layer) of each backend against fp32 PyTorch:

* ``min_cosine``: cosine similarity over all elements at least this;
* ``max_scaled_error``: every element within this fraction of the output's largest |reference|
  (``|a - b| <= 0.35 * max|ref|``);
* ``min_top1`` (classifier outputs ``[N, classes]``): the argmax agrees on at least this share of
  the *decided* rows, those whose reference top-1 leads the runner-up by ``top1_margin`` times
  ``max|ref|`` or more (a row closer than that is a tie at int8 resolution; it is counted in the
  report's ``top1_agreement`` but not judged);
* per rectified layer (int8 error grows with depth, in plain and rectified networks alike, so
  the output bounds cannot hold there): the border ring's largest error relative to the ring's
  largest |reference| at most ``ring_ratio`` times the interior's relative error plus
  ``ring_slack``. Int8 rounding treats ring and interior alike; a wrong factor or tap count
  moves the ring only. Each layer's cosine and errors are reported.
"""

NOISE_FLOOR_MULTIPLE = 16.0
"""K: a backend fails when its largest error against float64 exceeds K times the noise floor
(what fp32, or fp16, PyTorch itself is off by)."""

FLOOR_EPS = {"fp32": 2.0 ** -23, "fp16": 2.0 ** -10, "bf16": 2.0 ** -7}
"""Machine epsilon by floor precision: the floor is never below ``eps * max|reference|``."""

from exporter.onnx.sizes import ROUNDING_DEPTH, check_sizes  # noqa: E402,F401 - the one rule of check sizes
