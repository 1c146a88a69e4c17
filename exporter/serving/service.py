"""The model behind the KServe v2 endpoints: metadata, readiness, and decode -> check -> batch -> encode.

Independent of the HTTP framework: the server hands it bodies and header values and gets back
bodies, or a :class:`~.protocol.RequestError` carrying the 4xx status to answer with.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from exporter.serving.batcher import DynamicBatcher
from exporter.serving.protocol import RequestError, decode_request, encode_response, parse_header_length
from exporter.serving.session import OrtModel
from exporter.serving.validate import check_inputs, resolve_outputs

MODEL_VERSION = "1"
PLATFORM = "onnxruntime_onnx"


@dataclass(frozen=True)
class ServeConfig:
    """Serving options: model ``name`` in URLs; batches of up to ``max_batch`` rows gathered for
    at most ``max_delay_ms`` milliseconds; NaN/Inf inputs refused when ``reject_non_finite``;
    request bodies of at most ``max_body_mb`` MiB."""

    name: str
    max_batch: int = 8
    max_delay_ms: float = 2.0
    reject_non_finite: bool = False
    max_body_mb: float = 64.0

    def __post_init__(self):
        if not self.name or "/" in self.name:
            raise ValueError(f"model name {self.name!r} must be non-empty and contain no '/'")
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {self.max_batch}")
        if self.max_delay_ms < 0:
            raise ValueError(f"max_delay_ms must be >= 0, got {self.max_delay_ms}")
        if self.max_body_mb <= 0:
            raise ValueError(f"max_body_mb must be > 0, got {self.max_body_mb}")

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)


class InferenceService:
    """One ONNX model served under ``config.name``, version ``"1"``, through a dynamic batcher."""

    def __init__(self, model: OrtModel, config: ServeConfig):
        self.model = model
        self.config = config
        self.batcher = DynamicBatcher(
            model.run,
            max_batch=config.max_batch if model.batchable else 1,
            max_delay_s=config.max_delay_ms / 1000.0,
            stack=model.batchable,
        )
        self.ready = True
        self.in_flight = 0  # requests accepted and not yet answered (event-loop thread only)

    def describe(self) -> str:
        """One line for the start banner: providers and batching."""
        if self.model.batchable:
            batching = f"batches of up to {self.config.max_batch} rows within {self.config.max_delay_ms:g} ms"
        else:
            batching = "no batching (the model's batch dimension is fixed): one run per request"
        return f"providers {', '.join(self.model.providers)}; {batching}"

    def check_model(self, name: str, version: str | None = None) -> None:
        """RequestError 404 unless ``name`` (and ``version``, when given) is what this server serves."""
        if name != self.config.name:
            raise RequestError(f"unknown model '{name}'; this server serves '{self.config.name}'", 404)
        if version not in (None, "", MODEL_VERSION):
            raise RequestError(
                f"model '{name}' has no version '{version}'; it has version {MODEL_VERSION}", 404
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

    async def infer(self, body: bytes, header_length: str | None) -> tuple[bytes, int | None]:
        """Answer one infer request body: response body and its JSON header length (None: all JSON)."""
        self.in_flight += 1
        try:
            return await self._infer(body, header_length)
        finally:
            self.in_flight -= 1

    async def _infer(self, body: bytes, header_length: str | None) -> tuple[bytes, int | None]:
        request = decode_request(body, parse_header_length(header_length, len(body)))
        feeds = check_inputs(
            request.inputs,
            self.model.inputs,
            max_batch=self.config.max_batch,
            batchable=self.model.batchable,
            reject_non_finite=self.config.reject_non_finite,
        )
        requested = resolve_outputs(request.outputs, self.model.outputs, request.binary_output)
        try:
            future = self.batcher.submit(feeds)
        except RuntimeError as err:
            raise RequestError(str(err), 503) from None
        outputs = await asyncio.wrap_future(future)
        return encode_response(self.config.name, MODEL_VERSION, request.id, outputs, requested)

    def close(self) -> None:
        """Stop taking requests; requests already queued still run."""
        self.ready = False
        self.batcher.close()
