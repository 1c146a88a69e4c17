"""Serving rectified-conv models: a KServe v2 HTTP and gRPC server on ONNX Runtime, Triton repositories
and KServe manifests.

One job per module:

* :mod:`.datatypes`   KServe v2 / ONNX / Triton type names and their numpy dtypes.
* :mod:`.protocol`    HTTP: decode infer requests and encode responses (JSON and the binary tensor extension).
* :mod:`.grpc_protocol` gRPC: ``ModelInferRequest`` in, ``ModelInferResponse`` out (Triton's protobufs).
* :mod:`.model_io`    an ONNX file's inputs and outputs, read from the graph without a session.
* :mod:`.session`     the ONNX Runtime session: provider choice (TensorRT EP, CUDA EP, CPU), IO binding.
* :mod:`.validate`    check a decoded request against the model's inputs before it is queued.
* :mod:`.batcher`     dynamic batching: stack requests within a window, run once, split back.
* :mod:`.budget`      one server-wide memory budget for what clients make the server hold.
* :mod:`.logs`        bounded logging of what clients can trigger: rate-limited lines, one traceback per kind.
* :mod:`.stats`       request accounting, as Triton's ``ModelStatistics``.
* :mod:`.metrics`     the statistics as Prometheus metrics with Triton's names, one registry per service.
* :mod:`.service`     the model behind both front ends: metadata, config, statistics, readiness, decode, batch.
* :mod:`.server`      the aiohttp application, both front ends' lifecycle, and ``rfconv-deploy serve``.
* :mod:`.grpc_server` the ``GRPCInferenceService`` (grpc.aio, Triton's stubs) on the same event loop.
* :mod:`.triton_repo` Triton model repositories built with Triton's protobuf, ``rfconv-deploy triton``.
* :mod:`.kserve`      KServe InferenceService manifests for a repository, ``rfconv-deploy triton --kserve``.
"""
