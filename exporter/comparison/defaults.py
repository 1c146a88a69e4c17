"""Default backends and tolerances of a comparison (light: imports nothing, read by the CLI too)."""

DEFAULT_TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2}
"""Default rtol by precision (the default atol is rtol times each output's largest |reference|)."""
DEFAULT_BACKENDS = ("torch", "ort-cpu", "ort-cuda", "ort-trt", "trt")
"""``onnx-ref`` is opt-in: exact but slow (seconds per image for a ResNet-50)."""


def tolerance_precision(file_precision: str) -> str:
    """The key of :data:`DEFAULT_TOLERANCE` for a file's precision: a file with any fp16 Conv is
    held to the fp16 tolerance (``"mixed"`` included)."""
    return "fp32" if file_precision == "fp32" else "fp16"
