"""The JSON worker processes of ``serve`` (:mod:`exporter.serving.json_pool`): same results as in
the calling thread, client errors keep their status, a dead worker is a server error once and the
pool comes back, nothing starts after close."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest

from exporter.serving.json_pool import JsonPool
from exporter.serving.protocol import RequestedOutput, RequestError, decode_request, encode_response


def _body(values: list[float], shape: list[int]) -> bytes:
    return json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": shape, "data": values}]}).encode()


@pytest.fixture
def pool():
    pool = JsonPool(1, off_process_bytes=1, off_process_values=1)  # everything goes to the worker
    yield pool
    pool.close()


def test_worker_results_equal_the_calling_threads(pool):
    body = _body([0.5, -1.25, 3.0, 1e-3], [2, 2])
    there, here = pool.decode(body, None), decode_request(body, None)
    np.testing.assert_array_equal(there.inputs["x"], here.inputs["x"])
    assert there.inputs["x"].dtype == np.float32
    outputs = {"y": np.arange(6, dtype=np.float32).reshape(2, 3)}
    requested = (RequestedOutput("y", False),)
    assert pool.encode("m", "1", "id", outputs, requested) == encode_response("m", "1", "id", outputs, requested)
    assert pool.pids() and os.getpid() not in pool.pids()


def test_a_client_error_in_the_worker_keeps_its_status_and_message(pool):
    with pytest.raises(RequestError, match="has 3 values but shape") as caught:
        pool.decode(_body([1.0, 2.0, 3.0], [2, 2]), None)
    assert caught.value.status == 400


def test_a_dead_worker_is_one_server_error_then_the_pool_is_back(pool):
    body = _body([1.0, 2.0], [1, 2])
    pool.decode(body, None)
    (pid,) = pool.pids()
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(RuntimeError, match="worker process died"):  # its only worker is gone
        pool.decode(body, None)
    np.testing.assert_array_equal(pool.decode(body, None).inputs["x"], [[1.0, 2.0]])
    assert pid not in pool.pids()


def test_nothing_starts_after_close():
    pool = JsonPool(1, off_process_bytes=1)
    pool.close()
    with pytest.raises(RuntimeError, match="shutting down"):
        pool.decode(_body([1.0], [1, 1]), None)


def test_without_worker_processes_everything_runs_in_the_calling_thread(monkeypatch, caplog):
    """A container without ``/dev/shm`` cannot make the pool's semaphores: the pool warns once and
    parses in the calling thread instead of failing every large JSON request with a 500."""
    import exporter.serving.json_pool as json_pool

    def no_semaphores(*args, **kwargs):
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(json_pool, "ProcessPoolExecutor", no_semaphores)
    pool = JsonPool(1, off_process_bytes=1)
    body = _body([1.0, 2.0], [1, 2])
    with caplog.at_level("WARNING"):
        first, second = pool.decode(body, None), pool.decode(body, None)
    np.testing.assert_array_equal(first.inputs["x"], second.inputs["x"])
    assert pool.in_thread_only and pool.pids() == []
    assert sum("cannot be started here" in r.getMessage() for r in caplog.records) == 1
