"""Serving under abuse: well-behaved clients next to hostile ones, against ``rfconv-deploy serve``.

The server runs in its own process on loopback with the tiny rectified CNN of the serving tests
(dynamic batch, height and width). ``clients`` well-behaved threads send requests of 1 to 8
16x16 images, half JSON and half binary, on keep-alive connections; a 503 is retried after a
short pause. Every 200 is checked afterwards against in-process ONNX Runtime on the same file.
With ``abuse`` on, these run alongside:

* abandoning clients: a batch-8 request, then the connection is closed before the answer;
* oversized bodies: 4 MiB chunked uploads against a 1 MiB limit;
* gzip bombs: 256 MiB of zeros compressed to about 250 KiB;
* slow-loris connections: headers that never end, and bodies shorter than announced;
* huge images: 1x3x512x512 (over the pixel bound) and 1x3x192x192 (under it) requests;
* shape overflow: JSON inputs of shape ``[0, 3, 2**62, 4]`` and ``[0, 2**64]`` (400, no traceback);
* malformed header blocks (400 from the HTTP parser, one log line);
* held bodies: connections announcing a body of ``--max-body-mb`` that send a tenth of it and stop,
  against the memory budget (``--max-inflight-mb``);
* a JSON flood: JSON bodies near ``--max-json-mb`` that are decoded, then refused.

Meanwhile ``/v2/health/ready`` is polled every 50 ms (each answer must be 200: overload never
turns readiness off) from a separate process (so that the
clients' own interpreter lock does not count against the server), and the server's RSS every 200 ms. At the
end the server gets SIGTERM and the time to exit is measured. All traffic is bounded by
``duration_s`` and stays on 127.0.0.1. ``python -m benchmarks.serving_abuse`` runs it without
and with the abusers; the chaos test (``tests/serving/test_serving_chaos.py``) calls :func:`run`.
"""

from __future__ import annotations

import argparse
import functools
import gzip
import http.client
import json
import os
import platform
import queue
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

START_TIMEOUT_S = 120.0
REQUEST_TIMEOUT_S = 30.0
RETRY_GRACE_S = 20.0  # a request started before the end may retry this long after it
SERVER_FLAGS = (
    "--max-batch", "8", "--max-delay-ms", "2", "--max-queue", "64", "--max-queue-delay-ms", "3000",
    "--max-body-mb", "1", "--max-json-mb", "1", "--max-batch-pixels", str(8 * 128 * 128),
    "--header-timeout-s", "2", "--body-timeout-s", "2", "--max-connections", "400", "--shutdown-grace-s", "5",
    "--provider", "cpu",  # the CPU run whatever ONNX Runtime package is installed (no provider warnings)
    "--max-inflight-mb", "64",
)
GRACE_S = 5.0
INFER = "/v2/models/chaos/infer"
IMAGE = (3, 16, 16)


HEALTH_PROBE = """
import http.client, json, sys, time
host, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
end, latencies, not_ready, conn = time.monotonic() + seconds, [], 0, None
while time.monotonic() < end:
    start = time.perf_counter()
    try:
        conn = conn or http.client.HTTPConnection(host, port, timeout=10)
        conn.request("GET", "/v2/health/ready")
        response = conn.getresponse()
        response.read()
        not_ready += response.status != 200
        latencies.append(time.perf_counter() - start)
    except (OSError, http.client.HTTPException):
        latencies.append(float("inf"))
        conn = None
    time.sleep(0.05)
print(json.dumps({"latencies": latencies, "not_ready": not_ready}))
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))] if ordered else float("nan")


def rss_mib(pid: int) -> float | None:
    """Resident memory of process ``pid`` and its descendants (the server's JSON decoding workers)
    in MiB (None when the process cannot be read)."""

    def own(pid: int) -> float:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def children(pid: int) -> list[int]:
        found = []
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(child) for child in (task / "children").read_text().split()]
        return found

    try:
        total, pending = own(pid), children(pid)
    except OSError:
        return None
    while pending:
        child = pending.pop()
        try:
            total += own(child)
            pending += children(child)
        except OSError:
            pass  # it exited meanwhile
    return total


def server_flags(image: tuple[int, int, int]) -> tuple[str, ...]:
    """:data:`SERVER_FLAGS`, with the body and pixel bounds of batches of 8 ``image``-sized inputs
    (and a budget to match) for images larger than :data:`IMAGE`."""
    if image == IMAGE:
        return SERVER_FLAGS
    pixels = 8 * image[1] * image[2]
    body_mb = max(1, -(-8 * int(np.prod(image)) * 4 // (1 << 20)) + 1)
    sized = {"--max-batch-pixels": str(pixels), "--max-body-mb": str(body_mb), "--max-json-mb": "4",
             "--max-inflight-mb": str(max(64, 16 * body_mb))}
    flags = list(SERVER_FLAGS)
    for flag, value in sized.items():
        flags[flags.index(flag) + 1] = value
    return tuple(flags)


class Server:
    """``rfconv-deploy serve MODEL --name chaos`` with :func:`server_flags` in a child process."""

    def __init__(self, model: Path, flags: tuple[str, ...] = SERVER_FLAGS):
        self.flags = flags
        root = Path(__file__).resolve().parents[2]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
        command = [sys.executable, "-m", "exporter.cli", "serve", str(model), "--name", "chaos", "--port", "0",
                   "--no-grpc", *flags]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        env=env)
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not any("listening on http://" in line for line in self.output):
            try:
                self.output.append(self.lines.get(timeout=max(0.1, deadline - time.monotonic())))
            except queue.Empty:
                self.process.kill()
                raise RuntimeError(f"the server did not start: {''.join(self.output)}") from None
        self.host, port = self.output[-1].split("http://")[1].split()[0].rsplit(":", 1)
        self.port = int(port)

    def flag_mib(self, flag: str) -> float:
        """The value of a MiB flag the server was started with."""
        return float(self.flags[self.flags.index(flag) + 1])

    def _pump(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line)

    def stop(self) -> tuple[int | None, float]:
        """SIGTERM; the exit code (None if it had to be killed) and seconds to exit."""
        start = time.perf_counter()
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(GRACE_S * 3)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(30)
            code = None
        took = time.perf_counter() - start
        while not self.lines.empty():
            self.output.append(self.lines.get())
        return code, took


@dataclass
class Tally:
    """What the well-behaved clients saw: answers to check, latencies, 503s, failures."""

    answers: list = field(default_factory=list)  # (x, logits)
    latencies: list = field(default_factory=list)  # seconds from first try to the 200, retries included
    retried: int = 0
    rejections: list = field(default_factory=list)  # seconds from sending a try to its 503
    lost: list = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _encode(x: np.ndarray, binary: bool, request_id: str) -> tuple[bytes, dict]:
    if not binary:
        body = {"id": request_id, "inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32",
                                              "data": x.ravel().tolist()}]}
        return json.dumps(body).encode(), {"Content-Type": "application/json"}
    raw = x.astype("<f4").tobytes()
    header = json.dumps({"id": request_id, "inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32",
                                                       "parameters": {"binary_data_size": len(raw)}}],
                         "outputs": [{"name": "logits", "parameters": {"binary_data": True}}]}).encode()
    return header + raw, {"Inference-Header-Content-Length": str(len(header))}


def _decode(headers: dict, body: bytes) -> tuple[str, np.ndarray]:
    split = int(headers.get("Inference-Header-Content-Length", len(body)))
    header = json.loads(body[:split])
    (out,) = header["outputs"]
    if "data" in out:
        values = np.asarray(out["data"], np.float32)
    else:
        values = np.frombuffer(body[split:split + out["parameters"]["binary_data_size"]], "<f4")
    return header["id"], values.reshape(out["shape"])


def well_behaved(server: Server, seed: int, end: float, tally: Tally, image: tuple[int, int, int] = IMAGE,
                 max_rows: int = 8) -> None:
    """Requests of 1 to ``max_rows`` images, JSON or binary (binary only for images larger than
    :data:`IMAGE`), until ``end``; each retried on 503 until it gets its 200."""
    rng = np.random.default_rng(seed)
    conn = None
    count = 0
    while time.monotonic() < end:
        rows = int(rng.integers(1, max_rows + 1))
        x = rng.standard_normal((rows, *image)).astype(np.float32)
        request_id = f"c{seed}-{count}"
        count += 1
        body, headers = _encode(x, image != IMAGE or bool(rng.integers(2)), request_id)
        start, give_up = time.monotonic(), max(end, time.monotonic()) + RETRY_GRACE_S
        while True:
            if time.monotonic() > give_up:
                with tally.lock:
                    tally.lost.append((request_id, "no 200 before the retry deadline"))
                break
            sent = time.monotonic()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(server.host, server.port, timeout=REQUEST_TIMEOUT_S)
                conn.request("POST", INFER, body=body, headers=headers)
                response = conn.getresponse()
                answer, status = response.read(), response.status
                got_headers = dict(response.getheaders())
                if response.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException):
                if conn is not None:
                    conn.close()
                conn = None
                with tally.lock:
                    tally.retried += 1
                time.sleep(0.05)
                continue
            if status == 503:
                with tally.lock:
                    tally.retried += 1
                    tally.rejections.append(time.monotonic() - sent)
                time.sleep(0.05 + 0.1 * random.random())
                continue
            with tally.lock:
                if status != 200:
                    tally.lost.append((request_id, f"status {status}: {answer[:200]!r}"))
                else:
                    answered_id, logits = _decode(got_headers, answer)
                    if answered_id != request_id:
                        tally.lost.append((request_id, f"answered as {answered_id}"))
                    tally.answers.append((x, logits))
                    tally.latencies.append(time.monotonic() - start)
            break
    if conn is not None:
        conn.close()


def _send_and_leave(server: Server, data: bytes) -> None:
    try:
        with socket.create_connection((server.host, server.port), timeout=5) as sock:
            sock.sendall(data)
    except OSError:
        pass


def _send_and_read(server: Server, data: bytes) -> str:
    """Send ``data`` on a new connection and read until the server closes it; the answer's status
    code (``"reset"`` if the connection was reset first, ``"none"`` if nothing came back)."""
    answer, ending = b"", "none"
    try:
        with socket.create_connection((server.host, server.port), timeout=10) as sock:
            sock.sendall(data)
            while chunk := sock.recv(65536):
                answer = answer or chunk[:16]
    except OSError:
        ending = "reset"
    return answer.split(b" ")[1].decode() if answer.count(b" ") else ending


def _post_bytes(body: bytes, headers: dict) -> bytes:
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    # Connection: close, so that a reading abuser is answered and goes again at once (on a kept-alive
    # connection it waited for --header-timeout-s after each answer, a much gentler attack)
    return (f"POST {INFER} HTTP/1.1\r\nHost: x\r\n{head}Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            .encode() + body)


@functools.cache
def _gzip_bomb() -> bytes:
    """256 MiB of zeros, gzipped, as a request (seconds to build: built once, before a run's clock starts)."""
    return _post_bytes(gzip.compress(b"\0" * (256 << 20), 9), {"Content-Encoding": "gzip"})


def _json_flood_body(limit_mib: float) -> bytes:
    """A JSON body just under ``limit_mib`` (so it is read and decoded, not refused by its size)
    whose data does not match its shape (so it ends in a 400)."""
    head, tail = b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3, 16, 16], "data": [', b"]}]}"
    values = (int(limit_mib * (1 << 20)) - len(head) - len(tail) - 64) // len(b"0.123456789,")
    body = head + b",".join([b"0.123456789"] * values) + tail
    assert len(body) <= limit_mib * (1 << 20)
    return body


ATTACKS = ("abandon", "oversize", "gzip-bomb", "huge-image", "short-body", "slow-loris", "shape-overflow",
           "malformed", "held-bodies", "json-flood")  # the attack classes, in the module docstring's order


def abusers(server: Server, end: float, attacks: tuple[str, ...] = ATTACKS,
            flood_clients: int = 3, seen: dict | None = None, flood_waits: bool = True) -> list[threading.Thread]:
    """The hostile clients of the module docstring of the classes named in ``attacks`` (of
    :data:`ATTACKS`), each a thread looping until ``end``; the JSON flood has ``flood_clients``,
    which wait the ``Retry-After`` of a 503 (1 s) when ``flood_waits``, else send again at once.
    ``seen`` counts the answers the reading ones got, by ``"class status"``."""
    seen = {} if seen is None else seen
    lock = threading.Lock()

    def read(name: str, data: bytes) -> str:
        status = _send_and_read(server, data)
        with lock:
            seen[f"{name} {status}"] = seen.get(f"{name} {status}", 0) + 1
        return status

    def flood_once():
        if read("json-flood", flood) == "503" and flood_waits:
            time.sleep(1.0)  # the server's Retry-After

    rng = np.random.default_rng(99)
    abandon = _post_bytes(*_encode(rng.standard_normal((8, *IMAGE)).astype(np.float32), True, "gone"))
    bomb = _gzip_bomb()
    huge = _post_bytes(*_encode(np.zeros((1, 3, 512, 512), np.float32), True, "huge"))
    large = _post_bytes(*_encode(np.zeros((1, 3, 192, 192), np.float32), True, "large"))
    chunk = b"%x\r\n%s\r\n" % (1 << 20, b" " * (1 << 20))
    oversize = f"POST {INFER} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode() + chunk * 4

    def loop(action, pause: float):
        def body():
            while time.monotonic() < end:
                action()
                time.sleep(pause)
        return body

    def slow_loris():
        held = []
        while time.monotonic() < end:
            try:
                sock = socket.create_connection((server.host, server.port), timeout=5)
                sock.sendall(f"POST {INFER} HTTP/1.1\r\nHost: x\r\nContent-Le".encode())
                held.append(sock)
            except OSError:
                pass
            if len(held) > 40:
                held.pop(0).close()
            time.sleep(0.1)
        for sock in held:
            sock.close()

    short_body = _post_bytes(b"{" * 100, {})[:-90]
    overflow = [_post_bytes(json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": shape,
                                                    "data": []}]}).encode(), {})
                for shape in ([0, 3, 2**62, 4], [0, 2**64])]
    malformed = b"POST " + INFER.encode() + b" HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n"
    flood = _post_bytes(_json_flood_body(server.flag_mib("--max-json-mb")), {})

    def held_bodies():
        held = []
        while time.monotonic() < end:
            try:
                sock = socket.create_connection((server.host, server.port), timeout=5)
                sock.sendall(f"POST {INFER} HTTP/1.1\r\nHost: x\r\nContent-Length: {1 << 20}\r\n\r\n".encode()
                             + b" " * (1 << 17))
                held.append(sock)
            except OSError:
                pass
            if len(held) > 100:
                held.pop(0).close()
            time.sleep(0.02)
        for sock in held:
            sock.close()

    classes = {
        "abandon": [loop(lambda: _send_and_leave(server, abandon), 0.02)] * 2,
        "oversize": [loop(lambda: read("oversize", oversize), 0.2)],
        "gzip-bomb": [loop(lambda: read("gzip-bomb", bomb), 0.5)],
        "huge-image": [loop(lambda: read("huge-image", huge), 0.3), loop(lambda: read("large-image", large), 0.3)],
        "short-body": [loop(lambda: _send_and_leave(server, short_body), 0.1)],
        "slow-loris": [slow_loris],
        "shape-overflow": [loop(lambda: [read("shape-overflow", body) for body in overflow], 0.1)],
        "malformed": [loop(lambda: read("malformed", malformed), 0.1)],
        "held-bodies": [held_bodies],
        "json-flood": [loop(flood_once, 0.0)] * flood_clients,
    }
    assert set(classes) == set(ATTACKS)
    actions = [action for name in attacks for action in classes[name]]
    return [threading.Thread(target=action, daemon=True) for action in actions]


def run(model: Path, clients: int, duration_s: float, abuse: bool | tuple[str, ...],
        image: tuple[int, int, int] = IMAGE, max_rows: int = 8, flood_clients: int = 3,
        flood_waits: bool = True) -> dict:
    """One chaos run on ``model`` (inputs of ``image`` = C, H, W): ``clients`` well-behaved clients
    sending 1 to ``max_rows`` images each, beside the abusers of every class (``abuse=True``), of
    the classes named (a tuple of :data:`ATTACKS`) or of none (``False``). Returns the numbers the
    test asserts on and the benchmark prints."""
    from exporter.backends.ort import CPU_EP, create_session

    attacks = ATTACKS if abuse is True else tuple(abuse or ())
    unknown = sorted(set(attacks) - set(ATTACKS))
    if unknown:
        raise ValueError(f"unknown attack class(es) {unknown}: choose from {', '.join(ATTACKS)}")
    flags = server_flags(image)
    if "gzip-bomb" in attacks:
        _gzip_bomb()
    server = Server(model, flags)
    tally = Tally()
    rss: list[float] = []
    end = time.monotonic() + duration_s
    stop_monitors = threading.Event()
    probe = subprocess.Popen([sys.executable, "-c", HEALTH_PROBE, server.host, str(server.port), str(duration_s)],
                             stdout=subprocess.PIPE, text=True)

    def monitor_rss():
        while not stop_monitors.is_set():
            if (value := rss_mib(server.process.pid)) is not None:
                rss.append(value)
            time.sleep(0.2)

    idle_rss = rss_mib(server.process.pid)
    monitors = [threading.Thread(target=monitor_rss, daemon=True)]
    workers = [threading.Thread(target=well_behaved, args=(server, seed, end, tally, image, max_rows), daemon=True)
               for seed in range(clients)]
    abuse_answers: dict[str, int] = {}
    hostile = abusers(server, end, attacks, flood_clients, abuse_answers, flood_waits) if attacks else []
    started = time.monotonic()
    for thread in monitors + workers + hostile:
        thread.start()
    for thread in workers:
        thread.join(duration_s + RETRY_GRACE_S + REQUEST_TIMEOUT_S)
    elapsed = time.monotonic() - started
    for thread in hostile:
        thread.join(30)
    stop_monitors.set()
    for thread in monitors:
        thread.join(15)
    probed = json.loads(probe.communicate(timeout=duration_s + 30)[0])
    health = probed["latencies"]
    code, exit_s = server.stop()

    session = create_session(model, [CPU_EP])
    wrong = sum(
        not np.allclose(logits, session.run(["logits"], {"input": x})[0], rtol=1e-4, atol=1e-5)
        for x, logits in tally.answers
    )
    images = sum(len(x) for x, _ in tally.answers)
    budget_mib = float(flags[flags.index("--max-inflight-mb") + 1])
    alive = [t.name for t in workers if t.is_alive()]
    return {
        "clients": clients, "max_rows": max_rows, "duration_s": duration_s, "abuse": bool(attacks),
        "attacks": list(attacks), "budget_mib": budget_mib,
        "requests_ok": len(tally.answers), "images": images, "images_per_s": images / elapsed,
        "wrong": wrong, "lost": len(tally.lost) + len(alive), "lost_examples": tally.lost[:5],
        "retries": tally.retried, "rejections": len(tally.rejections),
        "abuse_answers": dict(sorted(abuse_answers.items())),
        "reject_p50_ms": percentile(tally.rejections, 50) * 1e3,
        "reject_p99_ms": percentile(tally.rejections, 99) * 1e3,
        "p50_ms": percentile(tally.latencies, 50) * 1e3, "p99_ms": percentile(tally.latencies, 99) * 1e3,
        "health_p50_ms": percentile(health, 50) * 1e3,
        "health_p99_ms": percentile(health, 99) * 1e3, "health_max_ms": max(health, default=0.0) * 1e3,
        "health_checks": len(health), "health_not_ready": probed["not_ready"],
        "idle_rss_mib": idle_rss, "max_rss_mib": max(rss, default=float("nan")),
        "exit_code": code, "exit_s": exit_s, "grace_s": GRACE_S,
        "server_log_lines": len(server.output), "server_tracebacks": sum("Traceback" in line for line in server.output),
        "server_tail": "".join(server.output[-5:]),
    }


def _label(r: dict) -> str:
    if not r["attacks"]:
        return "no abusers"
    return "all abusers" if tuple(r["attacks"]) == ATTACKS else "+ " + ", ".join(r["attacks"])


def _line(r: dict) -> str:
    bound = r["idle_rss_mib"] + r["budget_mib"] + 300
    return (f"  {_label(r):18} {r['images_per_s']:7.1f} images/s, "
            f"p50 {r['p50_ms']:6.1f} ms, p99 {r['p99_ms']:7.1f} ms (per request, retries included), "
            f"{r['requests_ok']} ok, {r['wrong']} wrong, {r['lost']} lost; {r['rejections']} rejected "
            f"(503 p99 {r['reject_p99_ms']:.0f} ms); ready p99 {r['health_p99_ms']:.1f} ms, "
            f"{r['health_not_ready']} not ready; RSS max {r['max_rss_mib']:.0f} MiB "
            f"(bound idle + budget + 300 = {bound:.0f}); SIGTERM exit {r['exit_code']} in {r['exit_s']:.1f} s"
            + ("; abusers' answers: " + ", ".join(f"{k} x{v}" for k, v in r["abuse_answers"].items())
               if r["abuse_answers"] else ""))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=64, help="well-behaved client threads (default: 64)")
    parser.add_argument("--max-rows", type=int, default=8,
                        help="images per well-behaved request: 1 to this (default: 8)")
    parser.add_argument("--duration-s", type=float, default=20.0, help="seconds per run (default: 20)")
    parser.add_argument("--per-attack", action="store_true",
                        help="one run per attack class besides the runs without and with all abusers")
    parser.add_argument("--flood-clients", type=int, default=3, help="JSON flood client threads (default: 3)")
    parser.add_argument("--flood-ignores-retry-after", action="store_true",
                        help="the JSON flood sends again at once after a 503 (a bandwidth flood) instead of "
                             "waiting its Retry-After")
    parser.add_argument("--attacks", help="comma-separated attack classes to run alone, one run each "
                                          f"(of {', '.join(ATTACKS)}), instead of --per-attack's all")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--model", type=Path, help="an ONNX file with input 'input' and output 'logits' to serve "
                                                   "instead of the tiny RF-CNN, e.g. an exported RF-ResNet-50")
    parser.add_argument("--image", default="3,16,16", help="C,H,W of the clients' images (default: 3,16,16; "
                                                           "3,224,224 for RF-ResNet-50)")
    args = parser.parse_args(argv)
    image = tuple(int(v) for v in args.image.split(","))
    if args.model is None:
        from tests.helpers.serving_models import tiny_models

        model, name = tiny_models().dynamic_hw, "tiny RF-CNN"
    else:
        model, name = args.model, args.model.name
    alone = args.attacks.split(",") if args.attacks else ATTACKS if args.per_attack else ()
    runs: list = [False, *((attack,) for attack in alone), True]
    print(f"Serving under abuse: {name} {image[1]}x{image[2]}, batches of 1-{args.max_rows}, {args.clients} clients, "
          f"{args.duration_s:g} s per run, {len(runs)} runs ({platform.machine()}, {os.cpu_count()} CPUs, shared)",
          flush=True)
    results = []
    for abuse in runs:
        results.append(run(model, args.clients, args.duration_s, abuse, image, args.max_rows, args.flood_clients,
                           not args.flood_ignores_retry_after))
        print(_line(results[-1]), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0 if all(r["wrong"] == 0 and r["lost"] == 0 and r["exit_code"] == 0 for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
