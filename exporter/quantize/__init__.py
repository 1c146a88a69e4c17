"""Step 2b: INT8 quantization of an exported file into explicit Q/DQ (TensorRT 11 and ONNX Runtime).

Reads the fp32 ONNX file that :mod:`exporter.onnx` wrote and writes a QuantizeLinear /
DequantizeLinear file, built on ONNX Runtime's ``quantize_static`` (QDQ format).

* :mod:`.options`     what a quantization can be asked for (methods, activation types, defaults): light, for the CLI.
* :mod:`.calibration` calibration inputs (seeded random, a folder of images, an ``.npz``) and the
  ONNX Runtime data reader that reports progress.
* :mod:`.placement`   where Q/DQ go around rectified convs and which nodes stay fp32; the
  one-consumer Q/DQ pairs that let ONNX Runtime fuse every conv.
* :mod:`.rules`       the static check of TensorRT's Q/DQ rules, run on every written file.
* :mod:`.quantize`    :func:`quantize_onnx`: calibrate, quantize, place, check, write.

Imports :mod:`exporter.onnx` (earlier step) only.
"""
