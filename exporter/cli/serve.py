"""``rfconv-deploy serve``: one ONNX model over KServe v2 HTTP (:mod:`exporter.serving.server`).

Never imports torch: serving an ONNX file needs ONNX Runtime and aiohttp only.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "serve", help="serve an ONNX model over KServe v2 HTTP (Triton-compatible), with dynamic batching"
    )
    p.add_argument("model", help="path of the .onnx model")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000; 0 picks a free one)")
    p.add_argument("--name", help="model name in the URLs (default: the file's stem)")
    p.add_argument("--max-batch", type=int, default=8, help="most rows run at once (default: 8)")
    p.add_argument("--max-delay-ms", type=float, default=2.0,
                   help="longest a request waits for others to batch with (default: 2 ms)")
    p.add_argument("--reject-non-finite", action="store_true", help="answer 400 to inputs with NaN or Inf")
    p.add_argument("--max-body-mb", type=float, default=64.0, help="largest request body, MiB (default: 64)")
    p.add_argument("--provider", default="auto", choices=["auto", "tensorrt", "cuda", "cpu"],
                   help="ONNX Runtime execution provider (default: auto = TensorRT EP, CUDA EP, CPU, best available)")
    return p


def run(args: argparse.Namespace) -> int:
    from exporter.serving.server import load_service, serve_forever
    from exporter.serving.service import ServeConfig

    config = ServeConfig(
        name=args.name or Path(args.model).stem,
        max_batch=args.max_batch,
        max_delay_ms=args.max_delay_ms,
        reject_non_finite=args.reject_non_finite,
        max_body_mb=args.max_body_mb,
    )
    service = load_service(args.model, config, args.provider)
    print(f"serving model '{config.name}' from {args.model}: {service.describe()}", flush=True)
    serve_forever(service, args.host, args.port)
    return 0
