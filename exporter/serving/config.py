"""What ``rfconv-deploy serve`` can be asked for: :class:`ServeConfig` (light: standard library only).

The command line builds ``serve``'s options from these fields (:func:`exporter.cli.args.add_config_arguments`),
so each default and help text is written here once.
"""

from __future__ import annotations

from dataclasses import dataclass

from exporter.config import option

SERVE_PROVIDERS = ("auto", "tensorrt", "cuda", "cpu", "openvino")
"""``serve --provider`` choices: ONNX Runtime's providers (``exporter.backends.ort.PROVIDER_ALIASES``),
``auto``, and ``openvino`` (OpenVINO's CPU plugin, :mod:`exporter.serving.openvino`)."""
OPENVINO_PROVIDER = "OpenVINO CPU"
"""What an OpenVINO-served model lists as its provider (banner, ``/config``'s ``execution_provider``)."""


@dataclass(frozen=True)
class ServeConfig:
    """Serving options of one model.

    Model ``name`` in URLs; batches of up to ``max_batch`` rows and ``max_batch_pixels`` pixels
    (rows x H x W) gathered for at most ``max_delay_ms`` milliseconds; NaN/Inf inputs refused when
    ``reject_non_finite``; request bodies of at most ``max_body_mb`` MiB on the wire and after
    decompression, their JSON part at most ``max_json_mb`` MiB.

    Admission: at most ``max_queue`` rows wait for a run (requests, for a model whose batch
    dimension is fixed) and none waits longer than ``max_queue_delay_ms``; past either the answer
    is 503 with ``Retry-After``. Connections: at most ``max_connections`` at once; request headers
    must arrive within ``header_timeout_s`` (also the keep-alive idle limit) and a body within
    ``body_timeout_s`` seconds. Memory: at most ``max_inflight_mb`` MiB of bodies, decoded tensors
    and unsent answers at once (:mod:`.budget`; 0 derives it from the machine). On shutdown queued
    requests run for up to ``shutdown_grace_s``
    seconds; the rest are answered 503. Raises ``ValueError`` naming the field for a value out of
    range.
    """

    name: str
    max_batch: int = option(8, help="most rows run at once")
    max_delay_ms: float = option(2.0, help="longest a request waits for others to batch with, ms")
    reject_non_finite: bool = option(False, help="answer 400 to inputs with NaN or Inf")
    max_body_mb: float = option(64.0, help="largest request body (and gRPC message), MiB, on the wire and "
                                           "decompressed")
    max_json_mb: float = option(4.0, help="largest JSON part of a request, MiB; larger tensors go as binary data")
    max_queue: int = option(64, help="most rows waiting for a run; beyond it 503 + Retry-After")
    max_queue_delay_ms: float = option(10_000.0, help="longest a request waits for its run before 503 + "
                                                      "Retry-After, ms")
    max_batch_pixels: int = option(1 << 21, help="most pixels (rows x H x W) in one run and one request; the queue "
                                                 "holds --max-queue / --max-batch runs' worth (8 images of 512x512)")
    max_connections: int = option(256, help="most open HTTP connections, the next is answered 503 and closed; also "
                                            "the most gRPC calls at once, beyond it RESOURCE_EXHAUSTED")
    header_timeout_s: float = option(10.0, help="seconds for a request's headers to arrive, and keep-alive idle "
                                                "limit")
    body_timeout_s: float = option(60.0, help="seconds for a request's body to arrive, else 408")
    max_inflight_mb: float = option(0.0, help="most MiB of request bodies, decoded tensors and unsent answers held "
                                              "at once, HTTP and gRPC together; beyond it 503 / RESOURCE_EXHAUSTED "
                                              "+ Retry-After. 0: a quarter of the machine's memory")
    shutdown_grace_s: float = option(10.0, help="on SIGTERM, seconds queued requests may still run; the rest get "
                                                "503")

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
        if self.max_inflight_mb < 0:
            raise ValueError(f"max_inflight_mb must be >= 0 (0: a quarter of the machine's memory), "
                             f"got {self.max_inflight_mb}")
        if self.max_inflight_mb and self.max_inflight_mb < self.max_body_mb:
            raise ValueError(f"max_inflight_mb={self.max_inflight_mb:g} must be at least max_body_mb="
                             f"{self.max_body_mb:g}, or no body of the largest size could ever be taken")
        if self.shutdown_grace_s < 0:
            raise ValueError(f"shutdown_grace_s must be >= 0, got {self.shutdown_grace_s}")

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)

    @property
    def max_inflight_bytes(self) -> int:
        """The memory budget in bytes (``max_inflight_mb``, or a quarter of the machine's memory for 0)."""
        if self.max_inflight_mb:
            return int(self.max_inflight_mb * 1024 * 1024)
        from exporter.serving.budget import default_budget_bytes

        return default_budget_bytes()

    @property
    def max_json_bytes(self) -> int:
        return int(self.max_json_mb * 1024 * 1024)
