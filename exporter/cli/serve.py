"""``rfconv-deploy serve``: one ONNX model over KServe v2 HTTP and gRPC (:mod:`exporter.serving.server`).

Never imports torch: serving an ONNX file needs ONNX Runtime, aiohttp, grpcio and tritonclient's stubs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from exporter.cli.args import add_config_arguments, config_from_args, shape_range_arguments
from exporter.serving.config import SERVE_PROVIDERS, ServeConfig


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
    add_config_arguments(p, ServeConfig)
    p.add_argument("--provider", default="auto", choices=SERVE_PROVIDERS,
                   help="ONNX Runtime execution provider: the one named runs, or serve fails at start saying why "
                        "(tensorrt = TensorRT EP, then CUDA EP and CPU for the nodes it rejects); default: auto = "
                        "the best of TensorRT EP, CUDA EP, CPU that loads, with a warning for a GPU one that does "
                        "not; openvino = OpenVINO's CPU plugin instead of ONNX Runtime (fp32; pip install "
                        "'rfconv-deploy[openvino]')")
    p.add_argument("--trt-cache", metavar="DIR",
                   help="folder for the TensorRT EP's engine and timing caches, one subfolder per file contents "
                        "(default: $XDG_CACHE_HOME/rfconv-deploy/ort-trt, else ~/.cache/rfconv-deploy/ort-trt)")
    shape_range_arguments(p, "the shapes this server accepts (others get 400), and with the TensorRT EP the "
                             "engine's range, so that no new input size builds an engine while serving. The "
                             "batch (first dim) must run from 1 to at least --max-batch. Default: any shape "
                             "the model takes.")
    return p


def run(args: argparse.Namespace) -> int:
    from exporter.serving.server import check_ports, load_service, serve_forever

    check_ports(args.port, args.grpc_port if args.grpc else None)  # before the model loads
    config = config_from_args(ServeConfig, args, name=args.name or Path(args.model).stem)
    service = load_service(args.model, config, args.provider, min_shapes=args.min_shapes, opt_shapes=args.opt_shapes,
                           max_shapes=args.max_shapes, trt_cache=args.trt_cache,
                           report=lambda line: print(line, flush=True))
    print(f"serving model '{config.name}' from {args.model}: {service.describe()}", flush=True)
    serve_forever(service, args.host, args.port, args.grpc_port if args.grpc else None)
    return 0
