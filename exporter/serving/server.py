"""KServe v2 HTTP server (aiohttp) for one ONNX model (``rfconv-deploy serve``).

Endpoints (those ``tritonclient.http`` calls; ``/versions/{v}`` forms are accepted too)::

    GET  /v2                            server metadata
    GET  /v2/health/live                200 while the process serves
    GET  /v2/health/ready               200 while the model takes requests, 503 while stopping
    GET  /v2/models/{name}              model metadata
    GET  /v2/models/{name}/ready        model readiness
    POST /v2/models/{name}/infer        inference, JSON or binary tensor data

Every error is answered as ``{"error": "..."}`` with its 4xx/5xx status. Shutdown is graceful: the
listening socket closes first, requests in flight (including those waiting in the batcher) finish,
then the batcher stops.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import socket
import threading
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from exporter import __version__
from exporter.backends.availability import TENSORRT_EP
from exporter.serving.model_io import onnx_io
from exporter.serving.protocol import BINARY_EXTENSION, HEADER_LENGTH, RequestError, error_body
from exporter.serving.service import InferenceService, ServeConfig
from exporter.serving.session import OrtModel, select_providers, tensorrt_ep_options

log = logging.getLogger(__name__)

SERVER_NAME = "rfconv-deploy"
SHUTDOWN_TIMEOUT_S = 30.0


def _json(payload: dict, status: int = 200) -> web.Response:
    return web.Response(body=json.dumps(payload).encode(), status=status, content_type="application/json")


def _error(status: int, message: str) -> web.Response:
    return web.Response(body=error_body(message), status=status, content_type="application/json")


@web.middleware
async def _errors_as_json(request: web.Request, handler) -> web.StreamResponse:
    """Turn every failure into a KServe ``{"error": ...}`` body, so clients can show the reason."""
    try:
        return await handler(request)
    except RequestError as err:
        return _error(err.status, err.message)
    except web.HTTPException as err:
        if err.status < 400:
            raise
        return _error(err.status, f"{err.reason}: {request.method} {request.path}")
    except Exception as err:  # noqa: BLE001 - a model failure must answer 500, not kill the connection
        log.exception("request %s %s failed", request.method, request.path)
        return _error(500, f"inference failed: {type(err).__name__}: {err}")


async def _read_body(request: web.Request, limit: int) -> bytes:
    """The request body, decompressed by aiohttp when ``Content-Encoding`` is gzip or deflate."""
    too_big = RequestError(
        f"request body is larger than this server's limit of {limit} bytes (--max-body-mb)", 413
    )
    if request.content_length is not None and request.content_length > limit:
        raise too_big
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise too_big from None
    if len(body) > limit:
        raise too_big
    return body


def build_app(service: InferenceService) -> web.Application:
    """The aiohttp application serving ``service``; closing the app closes the service."""
    limit = service.config.max_body_bytes

    async def server_metadata(request):
        return _json({"name": SERVER_NAME, "version": __version__, "extensions": [BINARY_EXTENSION]})

    async def live(request):
        return _json({"live": True})

    async def ready(request):
        return _json({"ready": service.ready}, 200 if service.ready else 503)

    async def model_metadata(request):
        service.check_model(request.match_info["name"], request.match_info.get("version"))
        return _json(service.metadata())

    async def model_ready(request):
        service.check_model(request.match_info["name"], request.match_info.get("version"))
        return _json({"name": service.config.name, "ready": service.ready}, 200 if service.ready else 503)

    async def infer(request):
        service.check_model(request.match_info["name"], request.match_info.get("version"))
        body = await _read_body(request, limit)
        payload, header_length = await service.infer(body, request.headers.get(HEADER_LENGTH))
        if header_length is None:
            return web.Response(body=payload, content_type="application/json")
        return web.Response(
            body=payload, headers={HEADER_LENGTH: str(header_length)}, content_type="application/octet-stream"
        )

    async def stop_accepting(app):
        service.ready = False

    async def close_service(app):
        await asyncio.get_running_loop().run_in_executor(None, service.close)

    # The body limit is enforced in _read_body with a clearer message; aiohttp's own is the backstop.
    app = web.Application(client_max_size=limit + 1, middlewares=[_errors_as_json])
    model = "/v2/models/{name}"
    versioned = "/v2/models/{name}/versions/{version}"
    app.add_routes([
        web.get("/v2", server_metadata),
        web.get("/v2/health/live", live),
        web.get("/v2/health/ready", ready),
        *(web.get(prefix, model_metadata) for prefix in (model, versioned)),
        *(web.get(prefix + "/ready", model_ready) for prefix in (model, versioned)),
        *(web.post(prefix + "/infer", infer) for prefix in (model, versioned)),
    ])
    app.on_shutdown.append(stop_accepting)
    app.on_cleanup.append(close_service)
    return app


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``port=0`` picks a free one)."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    return socket.create_server((host, port), family=family)


async def serve_until(
    service: InferenceService,
    sock: socket.socket,
    stop: asyncio.Event,
    on_started: Callable[[], None] | None = None,
    shutdown_timeout: float = SHUTDOWN_TIMEOUT_S,
) -> None:
    """Serve on ``sock`` until ``stop`` is set, then shut down gracefully (closes ``service``)."""
    runner = web.AppRunner(
        build_app(service), handle_signals=False, access_log=None, shutdown_timeout=shutdown_timeout
    )
    await runner.setup()
    try:
        await web.SockSite(runner, sock).start()
        if on_started is not None:
            on_started()
        await stop.wait()
    finally:
        await runner.cleanup()


class BackgroundServer:
    """A server on its own thread and event loop, for tests, benchmarks and embedding.

    ``with BackgroundServer(service) as server: ... server.url ...``; leaving the block (or
    :meth:`stop`) shuts down gracefully: in-flight requests are answered first.
    """

    def __init__(self, service: InferenceService, host: str = "127.0.0.1", port: int = 0):
        self.service = service
        self._sock = bind(host, port)
        self.host, self.port = self._sock.getsockname()[:2]
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="rfconv-serve", daemon=True)

    @property
    def url(self) -> str:
        """``host:port`` as ``tritonclient.http.InferenceServerClient`` takes it."""
        return f"{self.host}:{self.port}"

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            serving = serve_until(self.service, self._sock, self._stop, self._started.set)
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

    def stop(self, timeout: float = SHUTDOWN_TIMEOUT_S + 5) -> None:
        """Stop listening, finish in-flight requests, close the service; wait for all of it."""
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(timeout)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def load_service(model_path: str | Path, config: ServeConfig, provider: str = "auto") -> InferenceService:
    """Load the ONNX model with the best providers and wrap it in a service.

    The TensorRT EP, when used, gets an optimization profile for batches of 1 to ``config.max_batch``;
    only then is the file's graph read before the session (the profile must exist when the session
    is made), so a CPU or CUDA server parses the model once and never imports ``onnx``.
    """
    providers = select_providers(provider)
    if TENSORRT_EP in providers:
        inputs, _ = onnx_io(model_path)
        providers = select_providers(provider, tensorrt_options=tensorrt_ep_options(inputs, config.max_batch))
    return InferenceService(OrtModel(model_path, providers), config)


def serve_forever(service: InferenceService, host: str, port: int) -> None:
    """Serve until SIGINT or SIGTERM, then shut down gracefully. Prints where it listens."""
    sock = bind(host, port)
    bound_host, bound_port = sock.getsockname()[:2]

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await serve_until(service, sock, stop, lambda: print(
            f"listening on http://{bound_host}:{bound_port} (Ctrl-C or SIGTERM stops after in-flight "
            "requests finish)", flush=True,
        ))
        print("stopped: in-flight requests finished", flush=True)

    asyncio.run(main())
