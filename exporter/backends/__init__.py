"""Step 3b: the execution backends an exported file runs on.

* :mod:`.availability` which backends this machine has, and the ONNX Runtime provider table
  (light: no torch, no onnxruntime at import).
* :mod:`.runners`      the one backend factory, :func:`.runners.make_runner`: Polygraphy runners for
  PyTorch, ONNX Runtime (CPU, CUDA, TensorRT EP), TensorRT and ``onnx.reference``.
"""
