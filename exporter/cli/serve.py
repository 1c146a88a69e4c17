"""``rfconv-deploy serve``: one ONNX model over KServe v2 HTTP and gRPC (:mod:`exporter.serving.server`).

Never imports torch: serving an ONNX file needs ONNX Runtime, aiohttp, grpcio and tritonclient's stubs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from exporter.cli.args import shape_range_arguments


def port(text: str) -> int:
    """An argparse ``type`` for a TCP port, 0 (pick a free one) to 65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port must be an integer, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0 to 65535, got {value}")
    return value


def register(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "serve", help="serve an ONNX model over KServe v2 HTTP and gRPC (Triton-compatible), with dynamic batching"
    )
    p.add_argument("model", help="path of the .onnx model")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=port, default=8000, help="HTTP port (default: 8000; 0 picks a free one)")
    p.add_argument("--grpc-port", type=port, default=8001,
                   help="gRPC port, GRPCInferenceService (default: 8001; 0 picks a free one)")
    p.add_argument("--no-grpc", dest="grpc", action="store_false", help="serve HTTP only")
    p.add_argument("--name", help="model name in the URLs (default: the file's stem)")
    p.add_argument("--max-batch", type=int, default=8, help="most rows run at once (default: 8)")
    p.add_argument("--max-delay-ms", type=float, default=2.0,
                   help="longest a request waits for others to batch with (default: 2 ms)")
    p.add_argument("--reject-non-finite", action="store_true", help="answer 400 to inputs with NaN or Inf")
    p.add_argument("--max-body-mb", type=float, default=64.0,
                   help="largest request body (and gRPC message), MiB, on the wire and decompressed (default: 64)")
    p.add_argument("--max-json-mb", type=float, default=4.0,
                   help="largest JSON part of a request, MiB; larger tensors go as binary data (default: 4)")
    p.add_argument("--max-queue", type=int, default=64,
                   help="most rows waiting for a run; beyond it 503 + Retry-After (default: 64)")
    p.add_argument("--max-queue-delay-ms", type=float, default=10_000.0,
                   help="longest a request waits for its run before 503 + Retry-After (default: 10000 ms)")
    p.add_argument("--max-batch-pixels", type=int, default=1 << 21,
                   help="most pixels (rows x H x W) in one run and one request; the queue holds "
                        "--max-queue / --max-batch runs' worth (default: 2097152, 8 images of 512x512)")
    p.add_argument("--max-connections", type=int, default=256,
                   help="most open HTTP connections, the next is answered 503 and closed; also the most "
                        "gRPC calls at once, beyond it RESOURCE_EXHAUSTED (default: 256)")
    p.add_argument("--header-timeout-s", type=float, default=10.0,
                   help="seconds for a request's headers to arrive, and keep-alive idle limit (default: 10)")
    p.add_argument("--body-timeout-s", type=float, default=60.0,
                   help="seconds for a request's body to arrive, else 408 (default: 60)")
    p.add_argument("--shutdown-grace-s", type=float, default=10.0,
                   help="on SIGTERM, seconds queued requests may still run; the rest get 503 (default: 10)")
    p.add_argument("--provider", default="auto", choices=["auto", "tensorrt", "cuda", "cpu"],
                   help="ONNX Runtime execution provider (default: auto = TensorRT EP, CUDA EP, CPU, best available)")
    shape_range_arguments(p, "the shapes this server accepts (others get 400), and with the TensorRT EP the "
                             "engine's range, so that no new input size builds an engine while serving. The "
                             "batch (first dim) must run from 1 to at least --max-batch. Default: any shape "
                             "the model takes.")
    return p


CONFIG_FIELDS = (
    "max_batch", "max_delay_ms", "reject_non_finite", "max_body_mb", "max_json_mb", "max_queue",
    "max_queue_delay_ms", "max_batch_pixels", "max_connections", "header_timeout_s", "body_timeout_s",
    "shutdown_grace_s",
)


def run(args: argparse.Namespace) -> int:
    from exporter.serving.server import load_service, serve_forever
    from exporter.serving.service import ServeConfig

    options = {field: getattr(args, field) for field in CONFIG_FIELDS}
    config = ServeConfig(name=args.name or Path(args.model).stem, **options)
    service = load_service(args.model, config, args.provider, min_shapes=args.min_shapes, opt_shapes=args.opt_shapes,
                           max_shapes=args.max_shapes)
    print(f"serving model '{config.name}' from {args.model}: {service.describe()}", flush=True)
    serve_forever(service, args.host, args.port, args.grpc_port if args.grpc else None)
    return 0
