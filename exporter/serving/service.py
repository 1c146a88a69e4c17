"""The model behind the KServe v2 endpoints: metadata, config, statistics, readiness, and
decode -> check -> batch -> encode.

Independent of the front end: the HTTP server (:mod:`.server`) hands it bodies and header values,
the gRPC one (:mod:`.grpc_server`) protobuf messages, through one path (:meth:`InferenceService.run`),
so both share one model, one batcher, one admission control and one set of statistics. Errors
are :class:`~.protocol.RequestError`, carrying the HTTP status that each front end maps.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from exporter.backends.availability import TENSORRT_EP
from exporter.serving.batcher import DynamicBatcher, Overloaded, Timing
from exporter.serving.config import OPENVINO_PROVIDER, ServeConfig
from exporter.serving.protocol import (
    InferRequest,
    RequestedOutput,
    RequestError,
    decode_request,
    decompress,
    encode_response,
    overloaded,
    parse_header_length,
    too_large,
)
from exporter.serving.session import OrtModel
from exporter.serving.stats import RequestStats, failure_reason, statistics_message
from exporter.serving.validate import check_inputs, resolve_outputs
from exporter.shapes import InputProfile

MODEL_VERSION = "1"
PLATFORM = "onnxruntime_onnx"
Answer = TypeVar("Answer")


DECODE_THREADS = 2


class InferenceService:
    """One ONNX model served under ``config.name``, version ``"1"``, through a dynamic batcher.

    Decoding, validation and encoding run on ``DECODE_THREADS`` worker threads, never on the
    caller's event loop; only admission (:meth:`~.batcher.DynamicBatcher.submit`) runs there.
    ``profiles`` (:func:`~.session.served_profiles`) bound the input shapes accepted, ``()`` none;
    with the TensorRT EP they are its optimization profile.
    """

    def __init__(self, model: OrtModel, config: ServeConfig, profiles: tuple[InputProfile, ...] = ()):
        self.model = model
        self.config = config
        self.profiles = profiles
        self.batcher = DynamicBatcher(
            model.run,
            max_batch=config.max_batch if model.batchable else 1,
            max_delay_s=config.max_delay_ms / 1000.0,
            stack=model.batchable,
            max_queue=config.max_queue,
            max_batch_pixels=config.max_batch_pixels,
        )
        self._codec = ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="rfconv-codec")
        self.accepting = True
        self.in_flight = 0  # requests accepted and not yet answered (event-loop thread only)
        self.stats = RequestStats()
        self._config_message = None
        self._registry = None

    @property
    def ready(self) -> bool:
        """Taking requests: not shutting down and the queue not full."""
        return self.accepting and not self.batcher.saturated

    def describe(self) -> str:
        """One line for the start banner: providers, batching and admission bounds."""
        if self.model.batchable:
            batching = f"batches of up to {self.config.max_batch} rows within {self.config.max_delay_ms:g} ms"
        else:
            batching = "no batching (the model's batch dimension is fixed): one run per request"
        shapes = "".join(f"; input '{p.name}' {p.range_text()}" for p in self.profiles if p.dynamic)
        return (
            f"providers {', '.join(self.model.providers)}{' (TF32 on)' if self.model.tf32 else ''}; {batching}; "
            f"queue of {self.config.max_queue} rows, "
            f"{self.config.max_queue_delay_ms:g} ms at most{shapes}"
        )

    def check_model(self, name: str, version: str | None = None) -> None:
        """RequestError 404 unless ``name`` (and ``version``, when given) is what this server serves."""
        if name != self.config.name:
            raise RequestError(f"unknown model '{name}'; this server serves '{self.config.name}'", 404)
        if version not in (None, "", MODEL_VERSION):
            raise RequestError(
                f"model '{name}' has no version '{version}'; it has version {MODEL_VERSION}", 404
            )

    def check_admission(self) -> None:
        """503 with ``Retry-After`` while shutting down or while the queue is full (before the body is
        read); counted as a rejected request."""
        if not self.accepting:
            self.stats.failure(0, "REJECTED")
            raise overloaded("the server is shutting down and takes no new requests")
        if self.batcher.saturated:
            self.stats.failure(0, "REJECTED")
            raise overloaded(
                f"the queue is full (--max-queue {self.config.max_queue} rows, or their share of "
                "--max-batch-pixels); retry later"
            )

    def metadata(self) -> dict:
        """KServe v2 model metadata: name, versions, platform, inputs and outputs."""
        return {
            "name": self.config.name,
            "versions": [MODEL_VERSION],
            "platform": PLATFORM,
            "inputs": [spec.as_metadata() for spec in self.model.inputs],
            "outputs": [spec.as_metadata() for spec in self.model.outputs],
        }

    def model_config(self):
        """Triton's ``ModelConfig`` of what this server serves, built by the function that writes
        ``config.pbtxt`` (:func:`~.model_config.build_config`): tensors, batching, and this server's
        instance kind (CPU or GPU), accelerator with the file's precision, and queue policy
        (``--max-queue``, ``--max-queue-delay-ms``)."""
        if self._config_message is None:
            from exporter.serving.model_config import build_config

            tensorrt, precision = self.model.providers[0] == TENSORRT_EP, "fp32"
            if tensorrt:  # the EP's precision switch (Q/DQ: int8, fp16 weights: fp16); only then is the graph read
                from exporter.serving.model_io import graph_summary

                precision = graph_summary(self.model.path).precision
            on_gpu = self.model.device == "cuda"
            self._config_message = build_config(
                self.config.name, self.model.inputs, self.model.outputs, plan=False,
                max_batch=self.config.max_batch if self.model.batchable else 0,
                max_delay_us=round(self.config.max_delay_ms * 1000),
                accelerator="tensorrt" if tensorrt else "cuda" if on_gpu else
                "openvino" if self.model.providers[0] == OPENVINO_PROVIDER else "cpu",
                queue_policy=(self.config.max_queue, round(self.config.max_queue_delay_ms * 1000)),
                precision=precision, profiles=self.profiles,
            )
            # which provider runs (and TF32), read by clients of /config; Triton ignores unknown parameters
            self._config_message.parameters["execution_provider"].string_value = self.model.providers[0]
            if self.model.tf32 is not None:
                self._config_message.parameters["tf32"].string_value = str(self.model.tf32).lower()
        return self._config_message

    def statistics(self):
        """Triton's ``ModelStatistics`` of this model (see :mod:`.stats`)."""
        return statistics_message(self.config.name, MODEL_VERSION, self.stats.snapshot(), self.batcher.stats())

    @property
    def metrics_registry(self):
        """This service's own Prometheus registry (see :mod:`.metrics`)."""
        if self._registry is None:
            from exporter.serving.metrics import ServingCollector, registry_for

            collector = ServingCollector(self.config.name, MODEL_VERSION, self.stats.snapshot, self.batcher,
                                         provider=self.model.providers[0])
            self._registry = registry_for(collector)
        return self._registry

    async def infer(self, body: bytes, encoding: str, header_length: str | None) -> tuple[bytes, int | None]:
        """Answer one HTTP infer request body (as sent, ``encoding`` from :func:`~.protocol.content_encoding`):
        response body and its JSON header length (None: all JSON)."""

        def encode(request: InferRequest, outputs: dict, requested: tuple[RequestedOutput, ...]):
            return encode_response(self.config.name, MODEL_VERSION, request.id, outputs, requested)

        return await self.run(lambda: self._decode_http(body, encoding, header_length), encode)

    async def run(
        self,
        decode: Callable[[], InferRequest],
        encode: Callable[[InferRequest, dict, tuple[RequestedOutput, ...]], Answer],
    ) -> Answer:
        """One request of any front end: ``decode()`` and ``encode(request, outputs, requested)`` run on
        the codec threads, the checks between them too; admission and batching as described above.

        Cancelling the call (the client left, or its gRPC deadline passed) before the model ran
        removes the request from the queue. Every outcome is counted in :attr:`stats`.
        """
        self.in_flight += 1
        started = time.perf_counter_ns()
        timing = Timing()
        try:
            loop = asyncio.get_running_loop()
            feeds, request, requested = await loop.run_in_executor(self._codec, self._check, decode)
            try:
                future = self.batcher.submit(feeds, timing)
            except Overloaded as err:
                raise overloaded(str(err)) from None
            outputs = await self._outputs(future, request.timeout_us)
            answer = await loop.run_in_executor(self._codec, encode, request, outputs, requested)
        except RequestError as err:
            self.stats.failure(time.perf_counter_ns() - started, failure_reason(err.status))
            raise
        except asyncio.CancelledError:
            self.stats.failure(time.perf_counter_ns() - started, "CANCELED")
            raise
        except Exception:
            self.stats.failure(time.perf_counter_ns() - started, "BACKEND")
            raise
        else:
            rows = next(iter(feeds.values())).shape[0] if self.model.batchable else 1
            self.stats.success(time.perf_counter_ns() - started, rows, timing)
            return answer
        finally:
            self.in_flight -= 1

    async def _outputs(self, future: Future, timeout_us: int | None) -> dict:
        """The batcher's answer; 503 when its run did not start within ``max_queue_delay_ms`` or the
        request's own ``timeout_us``, whichever is shorter (then it never runs); a cancelled call
        (the client left) takes the request out of the queue."""
        answer = asyncio.wrap_future(future)
        limit_ms, which = self.config.max_queue_delay_ms, "--max-queue-delay-ms"
        if timeout_us is not None and timeout_us / 1000.0 < limit_ms:
            limit_ms, which = timeout_us / 1000.0, "its parameters.timeout, in ms,"
        try:
            done, _ = await asyncio.wait({answer}, timeout=limit_ms / 1000.0)
            if not done and future.cancel():
                raise overloaded(f"the request waited more than {which} {limit_ms:g} in the queue; retry later")
            return await answer
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Overloaded as err:
            raise overloaded(str(err)) from None

    def _decode_http(self, body: bytes, encoding: str, header_length: str | None) -> InferRequest:
        data = decompress(body, encoding, self.config.max_body_bytes)
        split = parse_header_length(header_length, len(data))
        if (len(data) if split is None else split) > self.config.max_json_bytes:
            raise too_large("the request's JSON", self.config.max_json_bytes, "--max-json-mb")
        return decode_request(data, split)

    def _check(self, decode: Callable[[], InferRequest]):
        request = decode()
        feeds = check_inputs(
            request.inputs,
            self.model.inputs,
            max_batch=self.config.max_batch,
            max_batch_pixels=self.config.max_batch_pixels,
            batchable=self.model.batchable,
            reject_non_finite=self.config.reject_non_finite,
            profiles=self.profiles,
        )
        return feeds, request, resolve_outputs(request.outputs, self.model.outputs, request.binary_output)

    def drain(self) -> int:
        """Stop taking requests (readiness false, new ones 503), run the queued ones for up to
        ``shutdown_grace_s`` seconds and answer the rest 503; returns how many were dropped."""
        self.accepting = False
        return self.batcher.close(self.config.shutdown_grace_s)

    def close(self) -> int:
        """:meth:`drain`, then release the codec threads; returns how many requests were dropped."""
        dropped = self.drain()
        self._codec.shutdown(wait=False, cancel_futures=True)
        return dropped
