"""What an export can be asked for: its precisions, modes and opsets (light: imports nothing).

One definition, read by :func:`exporter.onnx.export.export_onnx`, by the comparison's
tolerances and by the command line's choices.
"""

PRECISIONS = ("fp32", "fp16")
"""``fp16``: fp16 weights and activations (TensorRT 11 takes its precision from the ONNX types)."""
MODES = ("static", "plugin")
"""``static``: ``Conv -> Mul(scale)``; ``plugin``: ``Conv -> RFConvRectify`` (TensorRT plugin)."""
MIN_OPSET = 18
"""The dynamo exporter's lowest native opset; older ones need lossy conversion."""
DEFAULT_INPUT_SHAPE = (1, 3, 224, 224)
"""The example input of ``rfconv-deploy export`` (N, C, H, W)."""
