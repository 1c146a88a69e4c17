"""Serving load: the KServe v2 server with dynamic batching vs in-process ONNX Runtime at batch 8.

The model (RF-ResNet-50 with seeded weights at 112x112 by default) is exported once to ONNX with
a dynamic batch. The server runs in its own process (``rfconv-deploy serve``) on loopback; client
threads, each with its own ``tritonclient.http`` client, send single-image binary requests. The
baseline calls ONNX Runtime in this process on batches of 8. Server and baseline blocks alternate,
each pair giving one throughput ratio. Target: server throughput >= 0.8x in-process.
Run: ``python -m benchmarks.serving_load`` (``--help`` for sizes).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from benchmarks.harness import export_registry_model, percentile

TARGET_RATIO = 0.8
START_TIMEOUT_S = 300.0
REQUEST_TIMEOUT_S = 120.0


def process_cpu_s(pid: int | None = None) -> float | None:
    """CPU seconds (user + system) used so far by process ``pid`` (this one when None); None off Linux."""
    if pid is None:
        return time.process_time()
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ServerProcess:
    """``rfconv-deploy serve`` in a child process; ``url`` (HTTP) and ``grpc_url`` once it listens;
    SIGTERM on close. ``extra`` flags are passed on."""

    def __init__(self, model: Path, max_batch: int, max_delay_ms: float, extra: tuple[str, ...] = ()):
        root = Path(__file__).resolve().parents[1]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
        command = [sys.executable, "-m", "exporter.cli", "serve", str(model), "--name", "bench", "--port", "0",
                   "--grpc-port", "0", "--max-batch", str(max_batch), "--max-delay-ms", str(max_delay_ms), *extra]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        env=env)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        self.banner = []
        deadline = time.monotonic() + START_TIMEOUT_S
        while not any("listening on http://" in line for line in self.banner):
            try:
                self.banner.append(self.lines.get(timeout=max(0.1, deadline - time.monotonic())))
            except queue.Empty:
                self.close()
                raise RuntimeError(f"the server did not start: {''.join(self.banner)}") from None
        self.url = self.banner[-1].split("http://")[1].split()[0]
        self.grpc_url = self.banner[-1].split("grpc://")[1].split()[0]

    def _pump(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(30)


def in_process_block(model, images: np.ndarray, batch: int) -> dict:
    """Run ``images`` through ``model`` in batches of ``batch``: per-call latencies and images/s."""
    latencies = []
    cpu, start = process_cpu_s(), time.perf_counter()
    for first in range(0, len(images) - batch + 1, batch):
        t0 = time.perf_counter()
        model.run({"input": images[first:first + batch]})
        latencies.append(time.perf_counter() - t0)
    wall = time.perf_counter() - start
    count = len(latencies) * batch
    return {"latencies": latencies, "throughput": count / wall, "cpu_per_image": (process_cpu_s() - cpu) / count}


def server_block(url: str, images: np.ndarray, clients: int, server_pid: int) -> dict:
    """Send each image as one request from ``clients`` threads: per-request latencies and images/s.

    Also the CPU time per image of the server process and of this (client) process.
    """
    import tritonclient.http as triton_http

    local = threading.local()

    def send(index: int):
        if not hasattr(local, "client"):
            local.client = triton_http.InferenceServerClient(url, network_timeout=REQUEST_TIMEOUT_S)
        tensor = triton_http.InferInput("input", [1, *images.shape[1:]], "FP32")
        tensor.set_data_from_numpy(images[index:index + 1])
        t0 = time.perf_counter()
        result = local.client.infer("bench", [tensor])
        return time.perf_counter() - t0, result.as_numpy("logits")

    server_cpu, client_cpu, start = process_cpu_s(server_pid), process_cpu_s(), time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        answers = list(pool.map(send, range(len(images)), timeout=REQUEST_TIMEOUT_S * 2))
    wall = time.perf_counter() - start
    server_used = process_cpu_s(server_pid)
    return {"latencies": [a[0] for a in answers], "throughput": len(images) / wall,
            "cpu_per_image": None if server_cpu is None else (server_used - server_cpu) / len(images),
            "client_cpu_per_image": (process_cpu_s() - client_cpu) / len(images),
            "logits": np.concatenate([a[1] for a in answers])}


def run(model_name: str, size: int, requests: int, clients: int, blocks: int, batch: int,
        max_delay_ms: float) -> dict:
    from exporter.serving.session import OrtModel

    workdir = tempfile.TemporaryDirectory(prefix="rfconv-serving-bench-")
    path = Path(workdir.name) / f"{model_name}.onnx"
    export_registry_model(model_name, size, path, output_names=["logits"])
    images = np.random.default_rng(0).standard_normal((requests, 3, size, size)).astype(np.float32)
    local_model = OrtModel(path)
    server = ServerProcess(path, batch, max_delay_ms)
    try:
        warm = min(len(images), 2 * batch)
        in_process_block(local_model, images[:warm], batch)
        check = server_block(server.url, images[:warm], clients, server.process.pid)["logits"]
        expected = local_model.run({"input": images[:warm]})["logits"]
        max_error = float(np.abs(check - expected).max())
        local, served = [], []
        for block in range(blocks):
            order = ("local", "server") if block % 2 == 0 else ("server", "local")
            for which in order:
                if which == "local":
                    local.append(in_process_block(local_model, images, batch))
                else:
                    served.append(server_block(server.url, images, clients, server.process.pid))
    finally:
        server.close()
        workdir.cleanup()
    ratios = [s["throughput"] / b["throughput"] for s, b in zip(served, local, strict=True)]
    local_lat = [t for b in local for t in b["latencies"]]
    server_lat = [t for b in served for t in b["latencies"]]

    def median_ms(blocks_run, key):
        values = [b[key] for b in blocks_run if b[key] is not None]
        return statistics.median(values) * 1e3 if values else None

    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared)",
        "model": model_name, "size": size, "requests_per_block": requests, "clients": clients,
        "blocks": blocks, "batch": batch, "max_delay_ms": max_delay_ms,
        "providers": local_model.providers,
        "max_abs_error_vs_in_process": max_error,
        "in_process": {"p50_ms": percentile(local_lat, 50) * 1e3, "p99_ms": percentile(local_lat, 99) * 1e3,
                       "images_per_s": statistics.median(b["throughput"] for b in local),
                       "cpu_ms_per_image": median_ms(local, "cpu_per_image")},
        "server": {"p50_ms": percentile(server_lat, 50) * 1e3, "p99_ms": percentile(server_lat, 99) * 1e3,
                   "images_per_s": statistics.median(s["throughput"] for s in served),
                   "cpu_ms_per_image": median_ms(served, "cpu_per_image"),
                   "client_cpu_ms_per_image": median_ms(served, "client_cpu_per_image")},
        "ratios": ratios,
        "ratio": statistics.median(ratios),
        "target": TARGET_RATIO,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50", help="registry model (default: resnet50)")
    parser.add_argument("--size", type=int, default=112, help="image height and width (default: 112)")
    parser.add_argument("--requests", type=int, default=400, help="single-image requests per block (default: 400)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent client threads (default: 16)")
    parser.add_argument("--blocks", type=int, default=3, help="server/in-process block pairs (default: 3)")
    parser.add_argument("--batch", type=int, default=8, help="in-process batch and server --max-batch (default: 8)")
    parser.add_argument("--max-delay-ms", type=float, default=2.0, help="server batching window (default: 2)")
    parser.add_argument("--json", help="also write the result here")
    args = parser.parse_args(argv)
    r = run(args.model, args.size, args.requests, args.clients, args.blocks, args.batch, args.max_delay_ms)
    print(f"Serving load: {r['model']} {r['size']}x{r['size']}, {r['requests_per_block']} requests x "
          f"{r['blocks']} blocks, {r['clients']} clients, providers {', '.join(r['providers'])} ({r['machine']})")
    print(f"  in-process ORT, batch {r['batch']:<3}   p50 {r['in_process']['p50_ms']:8.1f} ms/batch  "
          f"p99 {r['in_process']['p99_ms']:8.1f} ms/batch  {r['in_process']['images_per_s']:8.1f} images/s")
    print(f"  server, batching <= {r['batch']:<3} p50 {r['server']['p50_ms']:8.1f} ms/request "
          f"p99 {r['server']['p99_ms']:8.1f} ms/request {r['server']['images_per_s']:8.1f} images/s")
    if r["server"]["cpu_ms_per_image"] is not None:
        print(f"  CPU per image: in-process {r['in_process']['cpu_ms_per_image']:.1f} ms, server process "
              f"{r['server']['cpu_ms_per_image']:.1f} ms, clients {r['server']['client_cpu_ms_per_image']:.1f} ms")
    spread = ", ".join(f"{x:.2f}" for x in r["ratios"])
    verdict = "meets" if r["ratio"] >= TARGET_RATIO else "misses"
    print(f"  server/in-process throughput = {r['ratio']:.2f} (blocks: {spread}); {verdict} the "
          f">= {TARGET_RATIO} target; max |server - in-process| = {r['max_abs_error_vs_in_process']:.2e}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(r, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
