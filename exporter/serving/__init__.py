"""Serving rectified-conv models: a KServe v2 HTTP server on ONNX Runtime, and Triton repositories.

One job per module:

* :mod:`.datatypes`   KServe v2 / ONNX / Triton type names and their numpy dtypes.
* :mod:`.protocol`    decode infer requests and encode responses (JSON and the binary tensor extension).
* :mod:`.model_io`    an ONNX file's inputs and outputs, read from the graph without a session.
* :mod:`.session`     the ONNX Runtime session: provider choice (TensorRT EP, CUDA EP, CPU), IO binding.
* :mod:`.validate`    check a decoded request against the model's inputs before it is queued.
* :mod:`.batcher`     dynamic batching: stack requests within a window, run once, split back.
* :mod:`.service`     the model behind the endpoints: metadata, readiness, decode, validate, batch.
* :mod:`.server`      the aiohttp application, its lifecycle, and ``rfconv-deploy serve``.
* :mod:`.triton_repo` Triton model repositories built with Triton's protobuf, ``rfconv-deploy triton``.
"""
