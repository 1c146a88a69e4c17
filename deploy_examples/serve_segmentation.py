"""Segmentation at any input size: export with dynamic H/W, serve with ``rfconv-deploy serve``, query with tritonclient.

    python deploy_examples/serve_segmentation.py [--model fcn_resnet50] [--sizes 224x224,193x257]

Exports the rectified model (registry ``fcn_resnet50`` by default, seeded weights, no download; any
registry name or ``package.module:factory`` returning ``{"out": [N, C, H, W]}``) with dynamic
height and width, so one file takes every size; starts ``rfconv-deploy serve`` on it in a
subprocess (a free port, CPU or the best provider there is); sends one request at each of
``--sizes`` with ``tritonclient.http`` (binary tensor data); checks each answer against the
same file run in-process by ONNX Runtime (relative error at most ``ATOL``) and prints how many of
its per-pixel classes agree with PyTorch. Exits 0 when every size agrees. Requests of different
sizes are never stacked into one run (the server batches requests of one size only), so any mix of
sizes can be sent at once.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from exporter.shapes import parse_shape

READY_TIMEOUT_S = 120.0
ATOL = 1e-4  # max |served - in-process ONNX Runtime|, relative to max |in-process| (the same file, the same runtime)


def _sizes(text: str) -> list[tuple[int, int]]:
    return [tuple(parse_shape(item, rank=2)) for item in text.split(",")]


def export(model_spec: str, path: Path, example_hw: tuple[int, int]):
    """The rectified model in eval mode, exported to ``path`` with dynamic H/W (export proves it at other sizes)."""
    import torch

    from exporter import export_onnx, load_model

    model = load_model(model_spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = export_onnx(model, torch.randn(1, 3, *example_hw), path, dynamic_hw=True, progress=True)
    print(report.summary(), flush=True)
    return model


def start_server(path: Path, name: str) -> tuple[subprocess.Popen, str]:
    """``rfconv-deploy serve PATH --port 0`` in a subprocess; returns it and its ``host:port``."""
    command = [sys.executable, "-m", "exporter.cli", "serve", str(path), "--name", name, "--port", "0",
               "--max-delay-ms", "5"]
    print("$", " ".join(command[2:]), flush=True)
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + READY_TIMEOUT_S
    for line in server.stdout:
        print("  server:", line.rstrip(), flush=True)
        found = re.search(r"listening on http://([^/\s]+)", line)
        if found:
            return server, found.group(1)
        if time.monotonic() > deadline:
            break
    server.kill()
    raise SystemExit(f"rfconv-deploy serve did not start (exit code {server.wait()})")


def query(url: str, name: str, image: np.ndarray) -> np.ndarray:
    """One KServe v2 request through tritonclient; returns output ``out``."""
    import tritonclient.http as triton_http

    client = triton_http.InferenceServerClient(url, network_timeout=300.0)
    try:
        tensor = triton_http.InferInput("input", list(image.shape), "FP32")
        tensor.set_data_from_numpy(image, binary_data=True)
        result = client.infer(name, [tensor], outputs=[triton_http.InferRequestedOutput("out", binary_data=True)])
        return result.as_numpy("out")
    finally:
        client.close()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="fcn_resnet50",
                        help="registry name or package.module:factory of a dense model (default fcn_resnet50)")
    parser.add_argument("--example-size", type=lambda t: tuple(parse_shape(t, rank=2)), default=(224, 224),
                        metavar="HxW", help="size of the export's example input (default 224x224)")
    parser.add_argument("--sizes", type=_sizes, default=[(224, 224), (193, 257)], metavar="HxW,HxW",
                        help="request sizes (default 224x224,193x257)")
    parser.add_argument("--out", type=Path, default=Path("artifacts/segmentation"), help="folder for the ONNX file")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    name = "segmenter"
    path = args.out / f"{name}.onnx"

    import onnxruntime
    import torch

    model = export(args.model, path, args.example_size)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    server, url = start_server(path, name)
    ok = True
    try:
        for h, w in args.sizes:
            image = np.random.default_rng(h * w).standard_normal((1, 3, h, w)).astype(np.float32)
            served = query(url, name, image)
            (local,) = session.run(["out"], {"input": image})
            with torch.no_grad():
                classes = model(torch.from_numpy(image))["out"].argmax(1).numpy()
            error = float(np.abs(served - local).max() / np.abs(local).max())
            agree = float((served.argmax(1) == classes).mean())
            good = served.shape == local.shape and error <= ATOL
            ok &= good
            print(f"{h}x{w}: served {list(served.shape)}, rel err vs in-process ONNX Runtime {error:.1e}, "
                  f"per-pixel classes agree with PyTorch on {agree:.2%} -> {'ok' if good else 'FAILED'}", flush=True)
    finally:
        server.terminate()
        try:
            server.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
