"""KServe v2 server for one ONNX model (``rfconv-deploy serve``): HTTP (aiohttp) and gRPC (:mod:`.grpc_server`).

HTTP endpoints (those ``tritonclient.http`` calls; ``/versions/{v}`` forms are accepted too)::

    GET  /v2                            server metadata
    GET  /v2/health/live                200 while the process serves
    GET  /v2/health/ready               200 while the model is loaded and takes requests, 503 while stopping
                                        (overload is answered per request, never here)
    GET  /v2/models/{name}              model metadata
    GET  /v2/models/{name}/ready        model readiness
    GET  /v2/models/{name}/config       Triton's ModelConfig as JSON (the config.pbtxt ``triton`` writes)
    GET  /v2/models/{name}/stats        Triton's ModelStatistics as JSON (``/v2/models/stats``: every model)
    POST /v2/models/{name}/infer        inference, JSON or binary tensor data
    GET  /metrics                       Prometheus text format, Triton's metric names (:mod:`.metrics`)

The gRPC front end (``GRPCInferenceService``, default port 8001) runs on the same event loop
and serves the same :class:`~.service.InferenceService`.

Every error is answered as ``{"error": "..."}`` with its 4xx/5xx status (503s carry
``Retry-After``). Bounded work per connection: request headers must arrive within
``header_timeout_s`` (which is also the keep-alive idle limit) and a body within
``body_timeout_s``; at most ``max_connections`` are open at once (the next one is answered 503
and closed); a body is read raw, at most ``max_body_mb``, and decompressed with the same bound
off the event loop; a connection whose body was not read to its end is closed after the answer.
A client that disconnects cancels its request (dropped from the queue if it has not run) and
costs one rate-limited log line, never a traceback; so does a malformed request (400 from the
HTTP parser). Memory: an infer request reserves its ``Content-Length`` in the service's memory
budget (:mod:`.budget`) before its body is read (a chunked body, chunk by chunk), then its decoded
tensors and its answer, and holds it all until the answer is written; 503 + ``Retry-After`` when
it does not fit.

Shutdown: the listening socket closes, readiness goes false, queued requests run for up to
``shutdown_grace_s`` and the rest are answered 503, then connections still open after the grace
period (and ``SHUTDOWN_WRITE_S`` to write those 503s) are cut; what was dropped is logged in one
line, and what the cut leaves behind (aiohttp's cancelled waiters) in at most one more.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from exporter import __version__
from exporter.backends import ort
from exporter.backends.availability import GPU_PROVIDERS, TENSORRT_EP
from exporter.backends.ort import ProviderUnavailable
from exporter.serving.batcher import Overloaded
from exporter.serving.budget import Reservation
from exporter.serving.logs import ConnectionLog, RateLimitedLog, TracebackLog
from exporter.serving.model_io import graph_summary
from exporter.serving.protocol import (
    BINARY_EXTENSION,
    HEADER_LENGTH,
    RequestError,
    content_encoding,
    error_body,
    message_json,
    too_large,
)
from exporter.serving.service import InferenceService, ServeConfig
from exporter.serving.session import (
    OrtModel,
    existing_file,
    leading_dims_dynamic,
    missing_profile_note,
    served_profiles,
    warm_up_shapes,
)
from exporter.shapes import InputProfile

log = logging.getLogger(__name__)

SERVER_NAME = "rfconv-deploy"
DRAINING = web.AppKey("draining", list)
SHUTDOWN_WRITE_S = 0.5  # past the grace period, time to write the 503s of the requests it dropped
LINGER_S = 5.0  # longest wait for the rest of a refused body (nginx's lingering_time, shorter)
LINGER_BODIES = 4  # and at most this many --max-body-mb of it
RESERVATION = web.RequestKey("reservation", Reservation)  # the request's share of the memory budget
EXTENSIONS = [BINARY_EXTENSION, "model_configuration", "statistics"]  # binary data: HTTP only


def _json(payload: dict, status: int = 200) -> web.Response:
    return web.Response(body=json.dumps(payload).encode(), status=status, content_type="application/json")


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=error_body(message), status=status, content_type="application/json", headers=headers)


def _errors_as_json(disconnects: RateLimitedLog, failures: TracebackLog, linger_bytes: int = 0):
    """Middleware: every failure becomes a KServe ``{"error": ...}`` body, so clients can show the reason;
    a client that left mid-request is one rate-limited log line, a server-side failure one
    traceback per kind per interval (:class:`~.logs.TracebackLog`).

    An answer given before the body was read (413, 503 at admission, 400) is written, then at most
    ``linger_bytes`` more of the body are read and dropped within :data:`LINGER_S` before the
    connection closes: a client that sends its whole body before reading (``http.client``,
    ``requests``) then reads the answer instead of a connection reset. A body slower than its
    timeout (408) or announced beyond ``linger_bytes`` is not waited for."""

    @web.middleware
    async def middleware(request: web.Request, handler) -> web.StreamResponse:
        try:
            return await answer(request, handler)
        finally:  # whatever happened (the client left, the write failed): the request holds nothing more
            reservation = request.get(RESERVATION)
            if reservation is not None:
                reservation.release()

    async def answer(request: web.Request, handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except RequestError as err:
            response = _error(err.status, err.message, err.headers)
        except web.HTTPException as err:
            if err.status < 400:
                raise
            allow = {"Allow": err.headers["Allow"]} if "Allow" in err.headers else None
            response = _error(err.status, f"{err.reason}: {request.method} {request.path}", allow)
        except (ConnectionError, web.RequestPayloadError) as err:
            disconnects.note(f"{request.method} {request.path}: {type(err).__name__}: {err}")
            response = _error(400, f"the request body was cut off: {err}")
        except asyncio.CancelledError:  # the client left (handler cancellation): its request is dropped
            disconnects.note(f"{request.method} {request.path}: cancelled")
            raise
        except Exception as err:  # noqa: BLE001 - a model failure must answer 500, not kill the connection
            failures.failed(f"request {request.method} {request.path}", err)
            response = _error(500, f"inference failed: {type(err).__name__}: {err}")
        linger = False
        if not request.content.at_eof():
            response.force_close()  # the rest of the body is not kept: the connection closes after the answer
            announced = request.content_length
            linger = response.status != 408 and (announced is None or announced <= linger_bytes)
        if linger or request.get(RESERVATION) is not None:  # a reservation is held until the answer is
            try:                                               # written: a client that never reads it keeps it
                await response.prepare(request)
                await response.write_eof()
            except ConnectionError as err:  # the client left before its answer was written
                disconnects.note(f"{request.method} {request.path}: answer not delivered: {err}")
                return response
        if linger:
            await _drop_rest_of_body(request, linger_bytes)
        return response

    return middleware


async def _drop_rest_of_body(request: web.Request, limit: int) -> None:
    """Read and drop what is left of the request body: at most ``limit`` bytes within :data:`LINGER_S`."""
    dropped = 0
    try:
        async with asyncio.timeout(LINGER_S):
            while dropped <= limit and (chunk := await request.content.readany()):
                dropped += len(chunk)
    except (TimeoutError, ConnectionError, web.RequestPayloadError):
        pass  # the client is slow or gone: the connection closes as it would have


async def read_body(request: web.Request, limit: int, timeout_s: float,
                    reservation: Reservation | None = None) -> bytes:
    """The request body as sent (still compressed), at most ``limit`` bytes, within ``timeout_s`` seconds.

    413 as soon as more than ``limit`` bytes arrived (or were announced), 408 when the body is
    slower than ``timeout_s``; nothing read so far is kept once the error is raised. A body
    without ``Content-Length`` grows ``reservation`` chunk by chunk (503 once the memory budget is
    full); one with it must have been reserved whole before this is called.
    """
    if request.content_length is not None and request.content_length > limit:
        raise too_large("the request body", limit, "--max-body-mb")
    chunks: list[bytes] = []
    size = 0
    counted = reservation is not None and request.content_length is None
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.content.iter_any():
                size += len(chunk)
                if size > limit:
                    break
                if counted:
                    reservation.grow(len(chunk), "the request body")
                chunks.append(chunk)
    except TimeoutError:
        size = -1
    if size > limit or size < 0:
        chunks.clear()
        if size < 0:
            raise RequestError(f"the request body did not arrive within {timeout_s:g} s (--body-timeout-s)", 408)
        raise too_large("the request body", limit, "--max-body-mb")
    return b"".join(chunks)


def build_app(service: InferenceService, disconnects: RateLimitedLog | None = None) -> web.Application:
    """The aiohttp application serving ``service``.

    Its shutdown starts draining the service (:meth:`~.service.InferenceService.drain`, awaitable
    in ``app[DRAINING]``); whoever runs it closes the service once every front end has stopped.
    """
    config = service.config
    disconnects = disconnects or RateLimitedLog("client disconnected mid-request", logger=log)

    async def server_metadata(request):
        return _json({"name": SERVER_NAME, "version": __version__, "extensions": EXTENSIONS})

    async def live(request):
        return _json({"live": True})

    async def ready(request):
        return _json({"ready": service.ready}, 200 if service.ready else 503)

    async def model_metadata(request):
        service.check_model(request.match_info["name"], request.match_info.get("version"))
        return _json(service.metadata())

    async def model_ready(request):
        service.check_model(request.match_info["name"], request.match_info.get("version"))
        return _json({"name": config.name, "ready": service.ready}, 200 if service.ready else 503)

    async def model_config(request):
        service.check_model(request.match_info["name"], request.match_info.get("version"))
        return _json(message_json(service.model_config()))

    async def model_stats(request):
        if "name" in request.match_info:  # /v2/models/stats: every model, this one
            service.check_model(request.match_info["name"], request.match_info.get("version"))
        return _json({"model_stats": [message_json(service.statistics())]})

    async def metrics(request):
        from exporter.serving.metrics import CONTENT_TYPE, exposition

        return web.Response(body=exposition(service.metrics_registry), headers={"Content-Type": CONTENT_TYPE})

    async def infer(request):
        service.check_model(request.match_info["name"], request.match_info.get("version"))
        encoding = content_encoding(request.headers.get("Content-Encoding"))
        service.check_admission()
        announced = request.content_length if request.content_length is not None else 0
        if announced > config.max_body_bytes:
            raise too_large("the request body", config.max_body_bytes, "--max-body-mb")
        if encoding == "identity" and announced:  # JSON the decode queue would refuse: refused unread
            service.check_decode_room(request.headers.get(HEADER_LENGTH), announced)
        request[RESERVATION] = reservation = service.budget.reserve(announced, "the request body")
        body = await read_body(request, config.max_body_bytes, config.body_timeout_s, reservation)
        service.check_admission()
        payload, header_length = await service.infer(body, encoding, request.headers.get(HEADER_LENGTH), reservation)
        reservation.grow(len(payload), None)
        if header_length is None:
            return web.Response(body=payload, content_type="application/json")
        return web.Response(
            body=payload, headers={HEADER_LENGTH: str(header_length)}, content_type="application/octet-stream"
        )

    async def drain(app):  # runs alongside aiohttp's wait for in-flight handlers, both bounded by the grace
        app[DRAINING].append(asyncio.get_running_loop().run_in_executor(None, service.drain))

    # Bodies are read in read_body (raw, bounded); aiohttp's own limit applies to request.read() only.
    middleware = _errors_as_json(disconnects, service.failures, linger_bytes=LINGER_BODIES * config.max_body_bytes)
    app = web.Application(client_max_size=config.max_body_bytes + 1, middlewares=[middleware])
    app[DRAINING] = []
    model = "/v2/models/{name}"
    versioned = "/v2/models/{name}/versions/{version}"
    app.add_routes([
        web.get("/v2", server_metadata),
        web.get("/v2/health/live", live),
        web.get("/v2/health/ready", ready),
        web.get("/v2/models/stats", model_stats),  # before /v2/models/{name}, which would take it too
        *(web.get(prefix, model_metadata) for prefix in (model, versioned)),
        *(web.get(prefix + "/ready", model_ready) for prefix in (model, versioned)),
        *(web.get(prefix + "/config", model_config) for prefix in (model, versioned)),
        *(web.get(prefix + "/stats", model_stats) for prefix in (model, versioned)),
        *(web.post(prefix + "/infer", infer) for prefix in (model, versioned)),
        web.get("/metrics", metrics),
    ])
    app.on_shutdown.append(drain)
    return app


_TOO_MANY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
    b"Connection: close\r\nContent-Length: %d\r\n\r\n%s"
)


@dataclass
class ConnectionCounts:
    """HTTP connections this server has seen: ``opened`` (admitted), ``closed`` (of those admitted,
    by either side) and ``refused`` (over ``--max-connections``). Written on the event loop only."""

    opened: int = 0
    closed: int = 0
    refused: int = 0


def _limit_connections(server: web.Server, limit: int, counts: ConnectionCounts) -> None:
    """Answer connection ``limit + 1`` and later with 503 and close them, until some close;
    count every connection in ``counts``."""
    admit, lost = server.connection_made, server.connection_lost
    body = error_body(f"this server has {limit} connections open, its limit (--max-connections); retry later")

    def connection_made(handler, transport) -> None:
        if len(server.connections) >= limit:
            counts.refused += 1
            transport.write(_TOO_MANY % (len(body), body))
            transport.close()
            return
        counts.opened += 1
        admit(handler, transport)

    def connection_lost(handler, exc) -> None:
        if handler in server.connections:
            counts.closed += 1
        lost(handler, exc)

    server.connection_made = connection_made
    server.connection_lost = connection_lost


def _loop_exception_handler(failures: TracebackLog):
    """The event loop's handler for errors nobody awaited: one line for what a shutdown or a client
    that left leaves behind (aiohttp's cancelled handler waiters, dropped requests' futures), one
    traceback per kind per interval for anything else."""
    aftermath = RateLimitedLog("left over after a cancelled request or the shutdown", logger=log)

    def handler(loop, context) -> None:
        err = context.get("exception")
        if err is None:
            log.warning("event loop: %s", context.get("message"))
        elif isinstance(err, (asyncio.InvalidStateError, asyncio.CancelledError, ConnectionError, RequestError,
                              Overloaded)):
            aftermath.note(f"{context.get('message', 'error')}: {type(err).__name__}: {err}")
        else:
            failures.failed(f"event loop: {context.get('message', 'error')}", err)

    return handler


def bind(host: str, port: int, flag: str = "--port") -> socket.socket:
    """A listening TCP socket on ``host:port`` (``port=0`` picks a free one); OSError naming ``flag``
    (the option that sets the port) when it cannot be bound."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        return socket.create_server((host, port), family=family)
    except OSError as err:
        raise OSError(f"cannot listen on {host}:{port} ({err.strerror or err}); pick another {flag} "
                      "(0 = any free one)") from err


def check_ports(port: int, grpc_port: int | None) -> None:
    """ValueError when HTTP and gRPC are asked for the same port (0, any free one, excepted)."""
    if grpc_port is not None and port and grpc_port == port:
        raise ValueError(f"--port and --grpc-port are both {port}; give gRPC another --grpc-port "
                         "(or turn it off with --no-grpc)")


async def serve_until(
    service: InferenceService,
    sock: socket.socket,
    stop: asyncio.Event,
    on_started: Callable[[int | None], None] | None = None,
    grpc_port: int | None = None,
    connections: ConnectionCounts | None = None,
) -> str:
    """Serve HTTP on ``sock`` and, unless ``grpc_port`` is None, gRPC on that port of the same host
    (0 picks a free one), until ``stop`` is set; then shut both down within ``shutdown_grace_s`` and
    close ``service``. ``on_started(bound_grpc_port)`` runs once both listen; ``connections``, when
    given, counts the HTTP connections. Returns one line saying what the shutdown dropped."""
    config = service.config
    app = build_app(service)
    loop = asyncio.get_running_loop()
    previous_handler = loop.get_exception_handler()
    loop.set_exception_handler(_loop_exception_handler(service.failures))
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=None,
        # the 503s of requests dropped at the end of the grace period are written before handlers are cut
        shutdown_timeout=config.shutdown_grace_s + SHUTDOWN_WRITE_S,
        handler_cancellation=True,  # a client that leaves cancels its request
        keepalive_timeout=config.header_timeout_s,  # also closes connections whose headers never complete
        lingering_time=0,  # never drain an unread body: close the connection instead
        auto_decompress=False,  # read_body takes the raw bytes; decompression is bounded, off the loop
        logger=ConnectionLog(service.failures, log),  # malformed requests: one line, never a traceback
    )
    grpc_server = None
    await runner.setup()
    _limit_connections(runner.server, config.max_connections, connections or ConnectionCounts())
    try:
        await web.SockSite(runner, sock).start()
        bound = None
        if grpc_port is not None:
            from exporter.serving.grpc_server import start_grpc_server

            grpc_server, bound = await start_grpc_server(
                service, sock.getsockname()[0], grpc_port, extensions=EXTENSIONS, server_name=SERVER_NAME
            )
        if on_started is not None:
            on_started(bound)
        await stop.wait()
    finally:
        started = time.monotonic()
        stopping = [runner.cleanup()]
        if grpc_server is not None:  # stops taking calls at once, lets running ones finish within the grace
            stopping.append(grpc_server.stop(config.shutdown_grace_s))
        await asyncio.gather(*stopping)
        await asyncio.gather(*app[DRAINING])
        cut = service.in_flight
        await loop.run_in_executor(None, service.close)
        loop.set_exception_handler(previous_handler)
    summary = (
        f"stopped in {time.monotonic() - started:.1f} s: {service.batcher.dropped} queued requests dropped "
        f"(answered 503), {cut} requests cut off at the {config.shutdown_grace_s:g} s grace period"
    )
    log.info(summary)
    return summary


class BackgroundServer:
    """A server on its own thread and event loop, for tests, benchmarks and embedding.

    ``with BackgroundServer(service) as server: ... server.url ...``; leaving the block (or
    :meth:`stop`) shuts down gracefully: in-flight requests are answered first.
    """

    def __init__(self, service: InferenceService, host: str = "127.0.0.1", port: int = 0,
                 grpc_port: int | None = None):
        self.service = service
        self._sock = bind(host, port)
        self.host, self.port = self._sock.getsockname()[:2]
        self._grpc_port = grpc_port
        self.grpc_port: int | None = None  # bound once started (grpc_port=0 picks one); None: no gRPC
        self.connections = ConnectionCounts()  # HTTP connections opened, closed and refused so far
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="rfconv-serve", daemon=True)

    @property
    def url(self) -> str:
        """``host:port`` as ``tritonclient.http.InferenceServerClient`` takes it."""
        return f"{self.host}:{self.port}"

    @property
    def grpc_url(self) -> str:
        """``host:port`` as ``tritonclient.grpc.InferenceServerClient`` takes it."""
        if self.grpc_port is None:
            raise RuntimeError("this server was started without gRPC (grpc_port=None)")
        return f"{self.host}:{self.grpc_port}"

    def _on_started(self, grpc_port: int | None) -> None:
        self.grpc_port = grpc_port
        self._started.set()

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            serving = serve_until(self.service, self._sock, self._stop, self._on_started, self._grpc_port,
                                  self.connections)
            self._loop.run_until_complete(serving)
        except BaseException as err:  # noqa: BLE001 - handed to the thread that called start()
            self._error = err
        finally:
            self._started.set()
            self._loop.close()

    def start(self, timeout: float = 30.0) -> BackgroundServer:
        self._thread.start()
        if not self._started.wait(timeout) or self._error is not None:
            raise RuntimeError(f"the server did not start: {self._error}")
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Stop listening, finish in-flight requests, close the service; wait for all of it."""
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(timeout if timeout is not None else 2 * self.service.config.shutdown_grace_s + 30)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def load_service(model_path: str | Path, config: ServeConfig, provider: str = "auto", *,
                 min_shapes: str | None = None, opt_shapes: str | None = None,
                 max_shapes: str | None = None, trt_cache: str | Path | None = None,
                 warm_up: bool = True, report: Callable[[str], None] | None = None) -> InferenceService:
    """Load the ONNX model on ``provider`` and wrap it in a service (:func:`load_model`; ``"openvino"``:
    :func:`exporter.serving.openvino.load_openvino_model`, OpenVINO's CPU plugin), warmed up
    (:func:`~.session.warm_up_shapes`: every served batch size and the corners of the shape range,
    each run logged with its time) so that engine builds and algorithm searches happen before
    the server reports ready.

    ``min_shapes``/``opt_shapes``/``max_shapes`` (strings as for :func:`exporter.shapes.parse_shapes`)
    bound the input shapes the server accepts (:func:`~.session.served_profiles`; others get 400).
    ``report`` gets the GPU warm-up lines (default: the module log, INFO; on the CPU EP the one
    warm-up run goes to the debug log); the start banner (:meth:`~.service.InferenceService.describe`)
    names the providers, and warnings go to the module logs.
    """
    report = report or log.info
    if provider == "openvino":  # OpenVINO's CPU plugin: no ONNX Runtime provider choice, no TensorRT EP options
        if trt_cache is not None:
            raise ValueError("trt_cache is for the TensorRT EP; provider openvino runs no TensorRT")
        from exporter.serving.openvino import load_openvino_model

        model, profiles = load_openvino_model(model_path, config.max_batch, min_shapes=min_shapes,
                                              opt_shapes=opt_shapes, max_shapes=max_shapes)
        log.info("%s runs on %s", model_path, model.providers[0])
    else:
        model, profiles = load_model(model_path, config, provider, min_shapes=min_shapes, opt_shapes=opt_shapes,
                                     max_shapes=max_shapes, trt_cache=trt_cache)
        log.info("%s runs on ONNX Runtime's %s (session providers: %s)%s", model_path, model.providers[0],
                 ", ".join(model.providers), "; TF32 on" if model.tf32 else "")
    if warm_up:
        shapes = warm_up_shapes(model.inputs, profiles, config.max_batch, model.batchable)
        if model.device == "cpu":  # no per-shape engine or algorithm search: one run proves the session
            model.warm_up(shapes[:1], log.debug)
        else:
            if not shapes:
                log.warning("%s: dynamic H/W and no shape range: nothing to warm up at, the first request of each "
                            "size pays the engine build or algorithm search", model_path)
            model.warm_up(shapes, report)
    return InferenceService(model, config, profiles)


def load_model(model_path: str | Path, config: ServeConfig, provider: str = "auto", *,
               min_shapes: str | None = None, opt_shapes: str | None = None, max_shapes: str | None = None,
               trt_cache: str | Path | None = None) -> tuple[OrtModel, tuple[InputProfile, ...]]:
    """The ONNX Runtime model behind a server, and its served shape range.

    ``provider`` ``tensorrt``/``cuda``/``cpu`` is the provider the model runs on, or
    :class:`~exporter.backends.ort.ProviderUnavailable` (a RuntimeError: one line naming the
    provider and ONNX Runtime's reason, e.g. the CUDA library it could not load). ``auto`` takes
    the best provider that loads and logs a warning naming each GPU provider that is installed but
    did not load, with the reason. The TensorRT EP gets its options from
    :func:`exporter.backends.ort.tensorrt_ep_options` (the served range as its optimization profile,
    or without one batches of 1 to ``config.max_batch``; the file's precision; engine and timing
    caches under ``trt_cache``, default :func:`exporter.backends.ort.default_cache_root`, in a
    folder keyed by the file's contents). Only with shapes, a GPU provider, or the TensorRT EP is
    the file's graph read (for the profile and precision; on the CUDA EP to tell a Q/DQ file's
    fp32 convs), so a plain CPU server parses the model once and never imports ``onnx``.
    """
    existing_file(model_path, "ONNX model")  # a missing file is the one problem reported, before providers
    available = ort.available_providers()
    if provider == "auto":
        names, left_out = ort.auto_providers(available)
        for name, reason in left_out.items():
            ort.log.warning("%s is installed but does not load: %s; --provider auto goes on without it", name, reason)
    else:
        names = ort.provider_names(ort.select_providers(provider, available))
    summary, profiles = None, ()
    if TENSORRT_EP in names or any((min_shapes, opt_shapes, max_shapes)):
        summary = graph_summary(model_path)
        batchable = leading_dims_dynamic(summary.inputs + summary.outputs)
        profiles = served_profiles(summary.inputs, config.max_batch, batchable, min_shapes, opt_shapes, max_shapes)
    while True:
        providers = list(names)
        if TENSORRT_EP in names:
            cache = ort.model_cache_dir(trt_cache or ort.default_cache_root(), model_path)
            options = ort.tensorrt_ep_options(summary.inputs, config.max_batch, profiles, precision=summary.precision,
                                              cache_dir=cache, custom_ops=summary.custom_ops)
            providers = [(name, options) if name == TENSORRT_EP else name for name in names]
            note = missing_profile_note(summary.inputs, profiles)
            if note:
                log.warning("%s: %s", model_path, note)
        try:
            model = OrtModel(model_path, providers, required=names if provider != "auto" else names[:1])
        except ProviderUnavailable as err:
            if provider != "auto" or names[0] not in GPU_PROVIDERS:
                raise
            ort.log.warning("%s; --provider auto goes on without it", err)
            names = names[1:]
            continue
        break
    for name, reason in ort.unloaded_gpu_providers(model.session, available).items():
        if name in names:
            ort.log.warning("%s is installed but ONNX Runtime did not load it: %s", name, reason)
    precision = summary.precision if summary is not None else None
    if precision is None and model.providers[0] == ort.CUDA_EP:
        precision = graph_summary(model_path).precision
    for note in ort.provider_notes(model.providers, precision, model.tf32):
        ort.log.warning("%s: %s", model_path, note)
    return model, profiles


def serve_forever(service: InferenceService, host: str, port: int, grpc_port: int | None = None) -> None:
    """Serve until SIGINT or SIGTERM, then shut down gracefully. Prints where it listens.

    ``grpc_port`` None serves HTTP only. ValueError for one port asked for both, OSError naming the
    flag for a port that cannot be bound."""
    check_ports(port, grpc_port)
    sock = bind(host, port)
    bound_host, bound_port = sock.getsockname()[:2]

    def started(bound_grpc: int | None) -> None:
        grpc = "" if bound_grpc is None else f" and grpc://{bound_host}:{bound_grpc}"
        print(f"listening on http://{bound_host}:{bound_port}{grpc} (Ctrl-C or SIGTERM stops after in-flight "
              f"requests finish, {service.config.shutdown_grace_s:g} s at most)", flush=True)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        print(await serve_until(service, sock, stop, started, grpc_port), flush=True)

    asyncio.run(main())
