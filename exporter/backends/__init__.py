"""Step 3b: the execution backends an exported file runs on.

* :mod:`.availability` which backends this machine has, and the ONNX Runtime provider table
  (light: no torch, no onnxruntime at import).
* :mod:`.ort`          ONNX Runtime sessions (no CPU fallback, providers verified), provider
  choice and the TensorRT EP's options: the one home for them (light: no torch, no polygraphy).
* :mod:`.runners`      the one backend factory, :func:`.runners.make_runner`: Polygraphy runners for
  PyTorch, ONNX Runtime (CPU, CUDA, TensorRT EP), TensorRT and ``onnx.reference``.
"""
