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
from exporter.serving.budget import MemoryBudget, Reservation
from exporter.serving.config import OPENVINO_PROVIDER, ServeConfig
from exporter.serving.json_pool import JsonPool, json_workers
from exporter.serving.logs import TracebackLog
from exporter.serving.protocol import (
    InferRequest,
    RequestedOutput,
    RequestError,
    decompress,
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
DECODE_QUEUE_JSON = 2  # JSON parts of --max-json-mb each that may wait for the codec threads at once
SMALL_JSON_BYTES = 64 << 10  # JSON parts this small (a binary request's header) are counted, never refused


class InferenceService:
    """One ONNX model served under ``config.name``, version ``"1"``, through a dynamic batcher.

    Decoding, validation and encoding run on ``DECODE_THREADS`` worker threads, never on the
    caller's event loop (large JSON parts and answers in worker processes, :mod:`.json_pool`, off
    this process's GIL); only admission (:meth:`~.batcher.DynamicBatcher.submit`) runs there. A
    request is refused at admission (503) when the queue is full or when the work ahead of it is
    estimated to take longer than it may wait (``max_queue_delay_ms`` or its own timeout).
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
        self._json = JsonPool(json_workers())  # large JSON parts and answers: off this process's GIL
        self.budget = MemoryBudget(config.max_inflight_bytes)
        self.decode_pending_bytes = 0  # JSON bytes admitted to the codec threads, not yet decoded (event loop)
        self.decode_refused = 0
        self.accepting = True
        self.in_flight = 0  # requests accepted and not yet answered (event-loop thread only)
        self.stats = RequestStats()
        self.failures = TracebackLog()  # server-side failures: one traceback per kind per minute
        self._config_message = None
        self._registry = None

    @property
    def ready(self) -> bool:
        """The model is loaded and the server takes requests (not shutting down). Overload never
        makes it false: it is answered per request (503 with ``Retry-After``) and shown in the
        metrics, so a readiness probe does not pull a busy replica out of its service."""
        return self.accepting

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

    def load_metrics(self) -> list[tuple[str, str, str, float]]:
        """How loaded the server is, as ``(kind, name, documentation, value)`` for ``/metrics``."""
        budget = self.budget
        return [
            ("gauge", "rfconv_inflight_bytes", "Bytes of request bodies, decoded tensors and unsent answers held "
             "(what --max-inflight-mb bounds)", budget.used),
            ("gauge", "rfconv_inflight_limit_bytes", "The memory budget, --max-inflight-mb, in bytes", budget.limit),
            ("counter", "rfconv_inflight_refused", "Requests refused because the memory budget was full",
             budget.refused),
            ("gauge", "rfconv_decode_pending_bytes", "Bytes of JSON admitted to the decode threads, not yet decoded",
             self.decode_pending_bytes),
            ("counter", "rfconv_decode_refused", "Requests refused because the decode queue was full",
             self.decode_refused),
        ]

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
                                         provider=self.model.providers[0], extra=self.load_metrics)
            self._registry = registry_for(collector)
        return self._registry

    async def infer(self, body: bytes, encoding: str, header_length: str | None,
                    reservation: Reservation | None = None) -> tuple[bytes, int | None]:
        """Answer one HTTP infer request body (as sent, ``encoding`` from :func:`~.protocol.content_encoding`):
        response body and its JSON header length (None: all JSON). ``reservation`` (holding the
        body) grows by what the request holds next; the caller releases it once the answer is written."""

        def encode(request: InferRequest, outputs: dict, requested: tuple[RequestedOutput, ...]):
            return self._json.encode(self.config.name, MODEL_VERSION, request.id, outputs, requested)

        json_bytes = len(body)
        if encoding == "identity":  # the JSON part's size is known before decoding: refused here, never queued
            try:
                split = parse_header_length(header_length, len(body))
                json_bytes = len(body) if split is None else split
                if json_bytes > self.config.max_json_bytes:
                    raise too_large("the request's JSON", self.config.max_json_bytes, "--max-json-mb")
            except RequestError as err:
                self.stats.failure(0, failure_reason(err.status))
                raise
        return await self.run(lambda: self._decode_http(body, encoding, header_length), encode, reservation,
                              decode_cost=min(json_bytes, self.config.max_json_bytes))

    async def run(
        self,
        decode: Callable[[], InferRequest],
        encode: Callable[[InferRequest, dict, tuple[RequestedOutput, ...]], Answer],
        reservation: Reservation | None = None,
        decode_cost: int = 0,
    ) -> Answer:
        """One request of any front end: ``decode()`` and ``encode(request, outputs, requested)`` run on
        the codec threads, the checks between them too; admission and batching as described above.

        Memory: the decoded tensors and the computed outputs are added to ``reservation`` (a new one
        when None, released on return): decoded tensors that do not fit :attr:`budget` are 503.
        ``decode_cost`` (bytes of JSON to parse) is admitted to the codec threads' queue only while
        at most ``DECODE_QUEUE_JSON`` JSON parts of ``--max-json-mb`` wait there, else 503 at once;
        the wait for a codec thread counts as queue time in :attr:`stats`.

        Cancelling the call (the client left, or its gRPC deadline passed) before the model ran
        removes the request from the queue. Every outcome is counted in :attr:`stats`.
        """
        own = reservation is None
        reservation = self.budget.reserve(0) if own else reservation
        self.in_flight += 1
        started = time.perf_counter_ns()
        timing = Timing()
        try:
            loop = asyncio.get_running_loop()
            admitted = self._admit_decode(decode_cost)
            decoding = loop.run_in_executor(self._codec, self._check, decode, reservation, time.perf_counter_ns())
            if admitted:  # counted until the codec thread is done with it, even if the client left meanwhile
                decoding.add_done_callback(lambda done, cost=admitted: self._decoded(done, cost))
                admitted = 0
                decoding = asyncio.shield(decoding)
            try:
                feeds, request, requested, decode_wait_ns = await decoding
            finally:
                decoding = None  # the future holds the error, the error this frame: no cycle keeps the body
            try:
                future = self.batcher.submit(feeds, timing, self._wait_limit_ms(request.timeout_us)[0] / 1000.0)
            except Overloaded as err:
                raise overloaded(str(err)) from err
            outputs = await self._outputs(future, request.timeout_us)
            timing.queue_ns += decode_wait_ns
            reservation.grow(sum(array.nbytes for array in outputs.values()), None)  # computed: counted, never refused
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
            if own:
                reservation.release()

    def _decoded(self, done: asyncio.Future, cost: int) -> None:
        self.decode_pending_bytes -= cost
        if not done.cancelled():
            done.exception()  # retrieved here: the caller may have left

    def check_decode_room(self, header_length: str | None, announced: int) -> None:
        """503 (counted) when the JSON part of an uncompressed body of ``announced`` bytes (its
        ``Inference-Header-Content-Length`` is ``header_length``) would not be admitted to the codec
        threads' queue now: asked before the body is read, so that a JSON request the queue would
        refuse costs neither the reading of its body nor a share of the memory budget (event loop
        only). An invalid header is left to the check after reading (400)."""
        try:
            split = parse_header_length(header_length, announced)
        except RequestError:
            return
        cost = min(announced if split is None else split, self.config.max_json_bytes)
        try:
            self._admit_decode(cost, admit=False)
        except RequestError as err:
            self.stats.failure(0, failure_reason(err.status))
            raise

    def _admit_decode(self, cost: int, admit: bool = True) -> int:
        """Admit ``cost`` JSON bytes to the codec threads' queue (event loop only); 503 when full,
        unless ``cost`` is at most ``SMALL_JSON_BYTES`` (binary requests are not held up by JSON)."""
        if cost <= 0:
            return 0
        limit = DECODE_QUEUE_JSON * self.config.max_json_bytes
        if cost > SMALL_JSON_BYTES and self.decode_pending_bytes and self.decode_pending_bytes + cost > limit:
            self.decode_refused += 1
            raise overloaded(f"{self.decode_pending_bytes / 1048576:.1f} MiB of JSON wait to be decoded, this "
                             f"server's limit ({DECODE_QUEUE_JSON} x --max-json-mb); send binary tensor data or "
                             "retry later")
        if admit:
            self.decode_pending_bytes += cost
        return cost

    async def _outputs(self, future: Future, timeout_us: int | None) -> dict:
        """The batcher's answer; 503 when its run did not start within ``max_queue_delay_ms`` or the
        request's own ``timeout_us``, whichever is shorter (then it never runs); a cancelled call
        (the client left) takes the request out of the queue."""
        answer = asyncio.wrap_future(future)
        limit_ms, which = self._wait_limit_ms(timeout_us)
        try:
            done, _ = await asyncio.wait({answer}, timeout=limit_ms / 1000.0)
            if not done and future.cancel():
                raise overloaded(f"the request waited more than {which} {limit_ms:g} in the queue; retry later")
            return await answer
        except asyncio.CancelledError:
            answer.cancel()  # nobody awaits it any more: an answer or error arriving later is dropped, not logged
            future.cancel()
            raise
        except Overloaded as err:
            raise overloaded(str(err)) from err

    def _wait_limit_ms(self, timeout_us: int | None) -> tuple[float, str]:
        """How long a request may wait for its run, ms, and the setting that says so."""
        if timeout_us is not None and timeout_us / 1000.0 < self.config.max_queue_delay_ms:
            return timeout_us / 1000.0, "its parameters.timeout, in ms,"
        return self.config.max_queue_delay_ms, "--max-queue-delay-ms"

    def _decode_http(self, body: bytes, encoding: str, header_length: str | None) -> InferRequest:
        data = decompress(body, encoding, self.config.max_body_bytes)
        split = parse_header_length(header_length, len(data))
        if (len(data) if split is None else split) > self.config.max_json_bytes:
            raise too_large("the request's JSON", self.config.max_json_bytes, "--max-json-mb")
        return self._json.decode(data, split)

    def _check(self, decode: Callable[[], InferRequest], reservation: Reservation, submitted_ns: int):
        waited_ns = time.perf_counter_ns() - submitted_ns
        request = decode()
        reservation.grow(sum(array.nbytes for array in request.inputs.values()), "the decoded request")
        feeds = check_inputs(
            request.inputs,
            self.model.inputs,
            max_batch=self.config.max_batch,
            max_batch_pixels=self.config.max_batch_pixels,
            batchable=self.model.batchable,
            reject_non_finite=self.config.reject_non_finite,
            profiles=self.profiles,
        )
        return feeds, request, resolve_outputs(request.outputs, self.model.outputs, request.binary_output), waited_ns

    def drain(self) -> int:
        """Stop taking requests (readiness false, new ones 503), run the queued ones for up to
        ``shutdown_grace_s`` seconds and answer the rest 503; returns how many were dropped."""
        self.accepting = False
        return self.batcher.close(self.config.shutdown_grace_s)

    def close(self) -> int:
        """:meth:`drain`, then release the codec threads; returns how many requests were dropped."""
        dropped = self.drain()
        self._codec.shutdown(wait=False, cancel_futures=True)
        self._json.close()
        return dropped
