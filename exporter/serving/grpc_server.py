"""KServe v2 / Triton ``GRPCInferenceService`` (grpc.aio) for the same service as the HTTP server.

The servicer is Triton's generated one (``tritonclient.grpc.service_pb2_grpc``), so the wire
protocol is exactly what ``tritonclient.grpc`` speaks; implemented: ServerLive, ServerReady,
ServerMetadata, ModelReady, ModelMetadata, ModelConfig, ModelStatistics, ModelInfer and
ModelStreamInfer (the rest answer UNIMPLEMENTED, as the generated base class does). It runs on
the HTTP server's event loop and calls the same :class:`~.service.InferenceService`: one model,
one batcher, one admission control, one set of statistics.

Errors: every :class:`~.protocol.RequestError` is answered with the gRPC status that
:data:`STATUS_CODES` gives its HTTP status, and the same message. Over the stream, a failed
request gets a ``ModelStreamInferResponse`` with ``error_message`` and the stream goes on (as in
Triton). Bounds: a message is at most ``--max-body-mb`` (gRPC answers RESOURCE_EXHAUSTED above it,
also for a compressed message that inflates past it), at most ``--max-connections`` calls run at
once (RESOURCE_EXHAUSTED beyond), and one stream has at most ``--max-queue`` requests read and not
yet answered on the wire. Each request holds its message, decoded tensors and answer in the
service's memory budget until the answer is sent (RESOURCE_EXHAUSTED with ``retry-after``
trailing metadata when it does not fit).
A call whose client leaves, or whose deadline passes, is cancelled: its request leaves the queue.
"""

from __future__ import annotations

import asyncio
import logging
import socket

import grpc
from google.protobuf.message import DecodeError
from tritonclient.grpc import service_pb2_grpc

from exporter import __version__
from exporter.serving.grpc_protocol import decode_infer_request, encode_infer_response
from exporter.serving.protocol import RETRY_AFTER_S, RequestError
from exporter.serving.service import MODEL_VERSION, InferenceService
from exporter.serving.stats import service_pb2

log = logging.getLogger(__name__)


# HTTP status of a RequestError -> gRPC status: the one mapping between the two front ends' errors.
STATUS_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    405: grpc.StatusCode.UNIMPLEMENTED,
    408: grpc.StatusCode.DEADLINE_EXCEEDED,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    500: grpc.StatusCode.INTERNAL,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


def status_code(http_status: int) -> grpc.StatusCode:
    """The gRPC status for an HTTP status (INTERNAL for one the table does not name)."""
    return STATUS_CODES.get(http_status, grpc.StatusCode.INTERNAL)


class _Undecodable:
    """What a request that is not the method's protobuf message decodes to (answered INVALID_ARGUMENT)."""

    def __init__(self, method: str, error: DecodeError):
        self.message = f"the request to {method.rsplit('/', 1)[-1]} is not a valid protobuf message: {error}"


class _RefuseUndecodable(grpc.aio.ServerInterceptor):
    """grpc answers a request its deserializer cannot parse with UNKNOWN; this makes it the client
    error it is: INVALID_ARGUMENT (unary calls) or an ``error_message`` on the stream."""

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        parse, method = handler.request_deserializer, handler_call_details.method

        def deserialize(data: bytes):
            try:
                return parse(data)
            except DecodeError as err:
                return _Undecodable(method, err)

        if handler.unary_unary is None:
            return handler._replace(request_deserializer=deserialize)  # the stream handler checks
        inner = handler.unary_unary

        async def unary(request, context):
            if isinstance(request, _Undecodable):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
            return await inner(request, context)

        return handler._replace(request_deserializer=deserialize, unary_unary=unary)


class _Refused(Exception):
    def __init__(self, code, message: str, retry: bool = False):
        super().__init__(message)
        self.code, self.message, self.retry = code, message, retry


def make_servicer(service: InferenceService, extensions: list[str], server_name: str):
    """A ``GRPCInferenceServiceServicer`` answering for ``service``."""
    pb = service_pb2()

    class Servicer(service_pb2_grpc.GRPCInferenceServiceServicer):
        async def _answer(self, context, call):
            """``call()``, or the call aborted with the status of its error."""
            try:
                return call()
            except RequestError as err:
                await context.abort(status_code(err.status), err.message)

        async def ServerLive(self, request, context):
            return pb.ServerLiveResponse(live=True)

        async def ServerReady(self, request, context):
            return pb.ServerReadyResponse(ready=service.ready)

        async def ServerMetadata(self, request, context):
            return pb.ServerMetadataResponse(name=server_name, version=__version__, extensions=extensions)

        async def ModelReady(self, request, context):
            await self._answer(context, lambda: service.check_model(request.name, request.version))
            return pb.ModelReadyResponse(ready=service.ready)

        async def ModelMetadata(self, request, context):
            await self._answer(context, lambda: service.check_model(request.name, request.version))
            metadata = service.metadata()
            response = pb.ModelMetadataResponse(name=metadata["name"], versions=metadata["versions"],
                                                platform=metadata["platform"])
            for field in ("inputs", "outputs"):
                for tensor in metadata[field]:
                    getattr(response, field).add(**tensor)
            return response

        async def ModelConfig(self, request, context):
            await self._answer(context, lambda: service.check_model(request.name, request.version))
            return pb.ModelConfigResponse(config=service.model_config())

        async def ModelStatistics(self, request, context):
            if request.name:  # an empty name asks for every model: this one
                await self._answer(context, lambda: service.check_model(request.name, request.version))
            return pb.ModelStatisticsResponse(model_stats=[service.statistics()])

        async def _infer(self, request, reservation):
            """The ``ModelInferResponse`` for ``request``; :class:`_Refused` with the status of its error.
            ``reservation`` (the caller releases it once the answer is written) holds the message
            and what the service adds to it."""
            if isinstance(request, _Undecodable):
                raise _Refused(grpc.StatusCode.INVALID_ARGUMENT, request.message)
            try:
                service.check_model(request.model_name, request.model_version)
                service.check_admission()
                reservation.grow(request.ByteSize(), "the request message")

                def decode():
                    return decode_infer_request(request, service.model.inputs, service.config.max_json_bytes)

                def encode(decoded, outputs, requested):
                    return encode_infer_response(service.config.name, MODEL_VERSION, decoded.id, outputs, requested)

                return await service.run(decode, encode, reservation)
            except RequestError as err:
                code = getattr(grpc.StatusCode, err.grpc_code) if err.grpc_code else status_code(err.status)
                raise _Refused(code, err.message, "Retry-After" in err.headers) from err
            except Exception as err:  # noqa: BLE001 - a model failure is INTERNAL, never a dead stream
                service.failures.failed(f"gRPC infer for model '{request.model_name}'", err)
                raise _Refused(grpc.StatusCode.INTERNAL, f"inference failed: {type(err).__name__}: {err}") from err

        async def ModelInfer(self, request, context):
            with service.budget.reserve() as reservation:
                try:
                    return await self._infer(request, reservation)
                except _Refused as refused:
                    if refused.retry:
                        context.set_trailing_metadata((("retry-after", str(RETRY_AFTER_S)),))
                    await context.abort(refused.code, refused.message)

        async def ModelStreamInfer(self, request_iterator, context):
            """Answers in the order they are computed. The stream's window: at most ``max_queue``
            requests read and not yet answered on the wire; a slot is freed once its answer is
            written, so a client that never reads its answers stops the reading of its requests."""
            answers: asyncio.Queue = asyncio.Queue()
            window = asyncio.Semaphore(service.config.max_queue)
            tasks: set[asyncio.Task] = set()

            async def answer(request):
                reservation = service.budget.reserve()
                try:
                    try:
                        item = pb.ModelStreamInferResponse(infer_response=await self._infer(request, reservation))
                    except _Refused as refused:
                        item = pb.ModelStreamInferResponse(error_message=refused.message)
                except BaseException:
                    reservation.release()
                    window.release()
                    raise
                answers.put_nowait((item, reservation))  # its slot and memory are freed once written

            async def read():
                try:
                    async for request in request_iterator:
                        await window.acquire()
                        task = asyncio.create_task(answer(request))
                        tasks.add(task)
                        task.add_done_callback(tasks.discard)
                    if tasks:
                        await asyncio.wait(set(tasks))
                finally:
                    answers.put_nowait(None)

            reader = asyncio.create_task(read())
            try:
                while (entry := await answers.get()) is not None:
                    item, reservation = entry
                    try:
                        yield item
                    finally:
                        reservation.release()
                    window.release()
            finally:
                for task in (reader, *tasks):
                    task.cancel()
                while not answers.empty():  # computed, never written: their memory is free now
                    entry = answers.get_nowait()
                    if entry is not None:
                        entry[1].release()

    return Servicer()


def grpc_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def start_grpc_server(service: InferenceService, host: str, port: int, *, extensions: list[str],
                            server_name: str):
    """A started ``grpc.aio`` server on this event loop; returns (server, bound port). ``port=0``
    picks a free one; OSError saying what to do when the port cannot be bound."""
    hint = "pick another --grpc-port (0 = any free one) or turn gRPC off with --no-grpc"
    if port:  # checked first: grpc itself logs its own line before failing
        try:
            family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
            socket.create_server((host, port), family=family).close()
        except OSError as err:
            raise OSError(f"cannot listen for gRPC on {grpc_address(host, port)} ({err.strerror or err}); "
                          f"{hint}") from err
    limit = service.config.max_body_bytes
    server = grpc.aio.server(
        options=[("grpc.max_receive_message_length", limit), ("grpc.so_reuseport", 0)],
        maximum_concurrent_rpcs=service.config.max_connections,
        interceptors=[_RefuseUndecodable()],
    )
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
        make_servicer(service, extensions, server_name), server
    )
    try:
        bound = server.add_insecure_port(grpc_address(host, port))
    except RuntimeError as err:
        bound, cause = 0, err
    else:
        cause = None
    if not bound:
        await server.stop(None)
        raise OSError(f"cannot listen for gRPC on {grpc_address(host, port)} ({cause or 'in use?'}); {hint}")
    await server.start()
    return server, bound
