"""The model behind the KServe v2 endpoints: metadata, readiness, and decode -> check -> batch -> encode.

Independent of the HTTP framework: the server hands it bodies and header values and gets back
bodies, or a :class:`~.protocol.RequestError` carrying the 4xx status to answer with.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from exporter.serving.batcher import DynamicBatcher, Overloaded
from exporter.serving.protocol import (
    RequestError,
    decode_request,
    decompress,
    encode_response,
    overloaded,
    parse_header_length,
    too_large,
)
from exporter.serving.session import OrtModel
from exporter.serving.validate import check_inputs, resolve_outputs

MODEL_VERSION = "1"
PLATFORM = "onnxruntime_onnx"


@dataclass(frozen=True)
class ServeConfig:
    """Serving options.

    Model ``name`` in URLs; batches of up to ``max_batch`` rows and ``max_batch_pixels`` pixels
    (rows x H x W) gathered for at most ``max_delay_ms`` milliseconds; NaN/Inf inputs refused when
    ``reject_non_finite``; request bodies of at most ``max_body_mb`` MiB on the wire and after
    decompression, their JSON part at most ``max_json_mb`` MiB (JSON decoding holds the
    interpreter, about 20 ms per MiB; large tensors go as binary data).

    Admission: at most ``max_queue`` rows wait for a run (requests, for a model whose batch
    dimension is fixed) and none waits longer than
    ``max_queue_delay_ms``; past either the answer is 503 with ``Retry-After``. Connections:
    at most ``max_connections`` at once; request headers must arrive within ``header_timeout_s``
    (also the keep-alive idle limit) and a body within ``body_timeout_s`` seconds. On shutdown
    queued requests run for up to ``shutdown_grace_s`` seconds; the rest are answered 503.
    """

    name: str
    max_batch: int = 8
    max_delay_ms: float = 2.0
    reject_non_finite: bool = False
    max_body_mb: float = 64.0
    max_json_mb: float = 4.0
    max_queue: int = 64
    max_queue_delay_ms: float = 10_000.0
    max_batch_pixels: int = 1 << 21  # 8 images of 512 x 512
    max_connections: int = 256
    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    shutdown_grace_s: float = 10.0

    def __post_init__(self):
        if not self.name or "/" in self.name:
            raise ValueError(f"model name {self.name!r} must be non-empty and contain no '/'")
        at_least_one = ("max_batch", "max_queue", "max_batch_pixels", "max_connections")
        for field in at_least_one:
            if getattr(self, field) < 1:
                raise ValueError(f"{field} must be at least 1, got {getattr(self, field)}")
        if self.max_queue < self.max_batch:
            raise ValueError(f"max_queue={self.max_queue} must be at least max_batch={self.max_batch}")
        if self.max_delay_ms < 0:
            raise ValueError(f"max_delay_ms must be >= 0, got {self.max_delay_ms}")
        positive = ("max_body_mb", "max_json_mb", "max_queue_delay_ms", "header_timeout_s", "body_timeout_s")
        for field in positive:
            if not getattr(self, field) > 0:
                raise ValueError(f"{field} must be > 0, got {getattr(self, field)}")
        if self.shutdown_grace_s < 0:
            raise ValueError(f"shutdown_grace_s must be >= 0, got {self.shutdown_grace_s}")

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)

    @property
    def max_json_bytes(self) -> int:
        return int(self.max_json_mb * 1024 * 1024)


DECODE_THREADS = 2


class InferenceService:
    """One ONNX model served under ``config.name``, version ``"1"``, through a dynamic batcher.

    Decoding, validation and encoding run on ``DECODE_THREADS`` worker threads, never on the
    caller's event loop; only admission (:meth:`~.batcher.DynamicBatcher.submit`) runs there.
    """

    def __init__(self, model: OrtModel, config: ServeConfig):
        self.model = model
        self.config = config
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
        return (
            f"providers {', '.join(self.model.providers)}; {batching}; queue of {self.config.max_queue} rows, "
            f"{self.config.max_queue_delay_ms:g} ms at most"
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
        """503 with ``Retry-After`` while shutting down or while the queue is full (before the body is read)."""
        if not self.accepting:
            raise overloaded("the server is shutting down and takes no new requests")
        if self.batcher.saturated:
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

    async def infer(self, body: bytes, encoding: str, header_length: str | None) -> tuple[bytes, int | None]:
        """Answer one infer request body (as sent, ``encoding`` from :func:`~.protocol.content_encoding`):
        response body and its JSON header length (None: all JSON).

        Cancelling the call (the client left) before the model ran removes the request from the queue.
        """
        self.in_flight += 1
        try:
            loop = asyncio.get_running_loop()
            feeds, request, requested = await loop.run_in_executor(
                self._codec, self._decode, body, encoding, header_length
            )
            try:
                future = self.batcher.submit(feeds)
            except Overloaded as err:
                raise overloaded(str(err)) from None
            outputs = await self._outputs(future, request.timeout_us)
            return await loop.run_in_executor(
                self._codec, encode_response, self.config.name, MODEL_VERSION, request.id, outputs, requested
            )
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

    def _decode(self, body: bytes, encoding: str, header_length: str | None):
        data = decompress(body, encoding, self.config.max_body_bytes)
        split = parse_header_length(header_length, len(data))
        if (len(data) if split is None else split) > self.config.max_json_bytes:
            raise too_large("the request's JSON", self.config.max_json_bytes, "--max-json-mb")
        request = decode_request(data, split)
        feeds = check_inputs(
            request.inputs,
            self.model.inputs,
            max_batch=self.config.max_batch,
            max_batch_pixels=self.config.max_batch_pixels,
            batchable=self.model.batchable,
            reject_non_finite=self.config.reject_non_finite,
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
