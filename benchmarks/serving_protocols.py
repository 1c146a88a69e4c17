"""Serving protocols: gRPC vs HTTP binary vs HTTP JSON throughput against in-process ONNX Runtime.

The model (RF-ResNet-50, seeded weights, 112x112 by default) is exported once; one
``rfconv-deploy serve`` process (:class:`benchmarks.serving_load.ServerProcess`) serves it over
HTTP and gRPC at once. For each request size (1 and 8 images), client threads send every image
of the block with ``tritonclient.grpc`` (raw tensor contents), ``tritonclient.http`` with binary
tensor data, and ``tritonclient.http`` with JSON data (inputs and outputs); the baseline runs the
same images through ONNX Runtime in this process, at the same batch. In every block the four
candidates run in a rotated order (interleaved), and each ratio is server / in-process of the
same block. Answers are checked against in-process ONNX Runtime before timing.
Run: ``python -m benchmarks.serving_protocols`` (``--help`` for sizes).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from benchmarks.harness import export_registry_model, percentile
from benchmarks.serving_load import REQUEST_TIMEOUT_S, ServerProcess, in_process_block

PROTOCOLS = ("grpc", "http-binary", "http-json")
CANDIDATES = ("in-process", *PROTOCOLS)
MAX_JSON_MB = 64  # a JSON request of 8 images of 112x112 is about 8 MB


def _client(protocol: str, url: str, grpc_url: str):
    if protocol == "grpc":
        import tritonclient.grpc as triton_grpc

        return triton_grpc, triton_grpc.InferenceServerClient(grpc_url)
    import tritonclient.http as triton_http

    return triton_http, triton_http.InferenceServerClient(url, network_timeout=REQUEST_TIMEOUT_S)


def protocol_block(protocol: str, url: str, grpc_url: str, images: np.ndarray, batch: int, clients: int) -> dict:
    """Send ``images`` in requests of ``batch`` from ``clients`` threads: latencies, images/s, outputs."""
    local = threading.local()
    binary = protocol != "http-json"

    def send(first: int):
        if not hasattr(local, "client"):
            local.module, local.client = _client(protocol, url, grpc_url)
        module, x = local.module, images[first:first + batch]
        tensor = module.InferInput("input", list(x.shape), "FP32")
        if protocol == "grpc":
            tensor.set_data_from_numpy(x)
            outputs = [module.InferRequestedOutput("logits")]
        else:
            tensor.set_data_from_numpy(x, binary_data=binary)
            outputs = [module.InferRequestedOutput("logits", binary_data=binary)]
        t0 = time.perf_counter()
        result = local.client.infer("bench", [tensor], outputs=outputs)
        return time.perf_counter() - t0, result.as_numpy("logits")

    starts = range(0, len(images) - batch + 1, batch)
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        answers = list(pool.map(send, starts, timeout=REQUEST_TIMEOUT_S * 4))
    wall = time.perf_counter() - start
    return {"latencies": [a[0] for a in answers], "throughput": len(starts) * batch / wall,
            "logits": np.concatenate([a[1] for a in answers])}


def run(model_name: str, size: int, images_per_block: int, clients: int, blocks: int, batches: tuple[int, ...],
        max_delay_ms: float) -> dict:
    from exporter.serving.session import OrtModel

    workdir = tempfile.TemporaryDirectory(prefix="rfconv-protocols-bench-")
    path = Path(workdir.name) / f"{model_name}.onnx"
    export_registry_model(model_name, size, path, output_names=["logits"])
    images = np.random.default_rng(0).standard_normal((images_per_block, 3, size, size)).astype(np.float32)
    local_model = OrtModel(path)
    server = ServerProcess(path, max(batches), max_delay_ms, extra=("--max-json-mb", str(MAX_JSON_MB)))
    results: dict = {b: {c: [] for c in CANDIDATES} for b in batches}
    max_error = {}
    try:
        warm = images[:2 * max(batches)]
        expected = local_model.run({"input": warm})["logits"]
        for protocol in PROTOCOLS:
            for batch in batches:
                got = protocol_block(protocol, server.url, server.grpc_url, warm, batch, clients)["logits"]
                max_error[f"{protocol} batch {batch}"] = float(np.abs(got - expected[:len(got)]).max())
        for block in range(blocks):
            for batch in batches:
                order = CANDIDATES[block % 4:] + CANDIDATES[:block % 4]
                for candidate in order:
                    if candidate == "in-process":
                        results[batch][candidate].append(in_process_block(local_model, images, batch))
                    else:
                        results[batch][candidate].append(
                            protocol_block(candidate, server.url, server.grpc_url, images, batch, clients))
    finally:
        server.close()
        workdir.cleanup()
    table = {}
    for batch in batches:
        local = results[batch]["in-process"]
        rows = {"in-process": {"images_per_s": statistics.median(b["throughput"] for b in local),
                               "p50_ms": percentile([t for b in local for t in b["latencies"]], 50) * 1e3}}
        for protocol in PROTOCOLS:
            served = results[batch][protocol]
            ratios = [s["throughput"] / b["throughput"] for s, b in zip(served, local, strict=True)]
            latencies = [t for s in served for t in s["latencies"]]
            rows[protocol] = {"images_per_s": statistics.median(s["throughput"] for s in served),
                              "p50_ms": percentile(latencies, 50) * 1e3, "p99_ms": percentile(latencies, 99) * 1e3,
                              "ratio": statistics.median(ratios), "ratios": ratios}
        table[batch] = rows
    return {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared)", "model": model_name, "size": size,
            "images_per_block": images_per_block, "clients": clients, "blocks": blocks, "max_batch": max(batches),
            "max_delay_ms": max_delay_ms, "providers": local_model.providers,
            "max_abs_error_vs_in_process": max_error, "results": table}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50", help="registry model (default: resnet50)")
    parser.add_argument("--size", type=int, default=112, help="image height and width (default: 112)")
    parser.add_argument("--images", type=int, default=128, help="images per block and candidate (default: 128)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent client threads (default: 8)")
    parser.add_argument("--blocks", type=int, default=4, help="interleaved blocks (default: 4)")
    parser.add_argument("--batches", default="1,8", help="images per request, comma-separated (default: 1,8)")
    parser.add_argument("--max-delay-ms", type=float, default=2.0, help="server batching window (default: 2)")
    parser.add_argument("--json", help="also write the result here")
    args = parser.parse_args(argv)
    batches = tuple(int(b) for b in args.batches.split(","))
    r = run(args.model, args.size, args.images, args.clients, args.blocks, batches, args.max_delay_ms)
    print(f"Serving protocols: {r['model']} {r['size']}x{r['size']}, {r['images_per_block']} images x "
          f"{r['blocks']} interleaved blocks, {r['clients']} clients, server --max-batch {r['max_batch']}, "
          f"providers {', '.join(r['providers'])} ({r['machine']})")
    for batch, rows in r["results"].items():
        base = rows["in-process"]
        print(f"  requests of {batch}: in-process ORT batch {batch}: {base['images_per_s']:7.1f} images/s")
        for protocol in PROTOCOLS:
            row = rows[protocol]
            spread = ", ".join(f"{x:.2f}" for x in row["ratios"])
            print(f"    {protocol:<12} {row['images_per_s']:7.1f} images/s  p50 {row['p50_ms']:7.1f} ms  "
                  f"p99 {row['p99_ms']:7.1f} ms  / in-process {row['ratio']:.2f} (blocks {spread})")
    worst = max(r["max_abs_error_vs_in_process"].values())
    print(f"  max |server - in-process| over every protocol and batch: {worst:.2e}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(r, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
