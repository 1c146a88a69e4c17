"""Dynamic batcher: stacking, splitting, isolation of failures, draining on close.

The model here is a plain numpy function of each row, so every request's expected output is
computed independently from its own input.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from exporter.serving.batcher import DynamicBatcher, Overloaded, pixels

TIMEOUT = 10.0


def rowwise(feeds):
    """y = 2x + 1 elementwise, and the per-row sum: both follow the batch rows."""
    x = feeds["x"]
    return {"y": 2 * x + 1, "total": x.reshape(len(x), -1).sum(axis=1)}


class Recorder:
    """Wraps a run function, logging each call's input; can hold the worker on ``gate``."""

    def __init__(self, run=rowwise):
        self.run = run
        self.calls: list[np.ndarray] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def __call__(self, feeds):
        self.calls.append(feeds["x"].copy())
        self.entered.set()
        assert self.gate.wait(TIMEOUT)
        return self.run(feeds)


def _hold(batcher: DynamicBatcher, recorder: Recorder):
    """Occupy the worker with one full batch so that the next requests queue up behind it."""
    recorder.gate.clear()
    future = batcher.submit({"x": np.full((batcher.max_batch, 4), -1.0)})
    assert recorder.entered.wait(TIMEOUT)
    return future


def test_concurrent_requests_are_stacked_and_never_mixed_up():
    batcher = DynamicBatcher(rowwise, max_batch=8, max_delay_s=0.02)
    rng = np.random.default_rng(1)
    inputs = [rng.standard_normal((int(rng.integers(1, 4)), 5)) for _ in range(96)]
    try:
        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(lambda x: batcher.submit({"x": x}).result(TIMEOUT), inputs))
    finally:
        batcher.close(TIMEOUT)
    for x, got in zip(inputs, results, strict=True):
        np.testing.assert_array_equal(got["y"], 2 * x + 1)
        np.testing.assert_array_equal(got["total"], x.sum(axis=1))
    stats = batcher.stats()
    assert stats.requests == 96
    assert stats.runs < 96, "no two requests were ever stacked"
    assert max(stats.sizes) <= 8
    assert sum(rows * count for rows, count in stats.sizes.items()) == sum(len(x) for x in inputs)


def test_only_compatible_shapes_are_stacked_in_arrival_order():
    recorder = Recorder()
    batcher = DynamicBatcher(recorder, max_batch=8, max_delay_s=0.5)
    held = _hold(batcher, recorder)
    shapes = [(1, 4), (1, 5), (2, 4), (1, 5), (3, 4), (3, 4)]
    futures = [batcher.submit({"x": np.full(shape, float(i))}) for i, shape in enumerate(shapes)]
    recorder.gate.set()
    results = [f.result(TIMEOUT) for f in futures]
    held.result(TIMEOUT)
    batcher.close(TIMEOUT)
    # held run, then rows 1+2+3 of width 4 (the second 3-row request would overflow 8),
    # then both width-5 requests, then the last width-4 request.
    assert [c.shape for c in recorder.calls] == [(8, 4), (6, 4), (2, 5), (3, 4)]
    np.testing.assert_array_equal(recorder.calls[1][:, 0], [0, 2, 2, 4, 4, 4])
    for i, (shape, got) in enumerate(zip(shapes, results, strict=True)):
        np.testing.assert_array_equal(got["y"], np.full(shape, 2.0 * i + 1))


def test_a_failing_request_fails_alone():
    def refuses_negative(feeds):
        if (feeds["x"] < 0).any():
            raise ValueError("negative input")
        return rowwise(feeds)

    recorder = Recorder(refuses_negative)
    batcher = DynamicBatcher(recorder, max_batch=8, max_delay_s=0.5)
    held = _hold(batcher, recorder)
    values = [1.0, -3.0, 2.0]
    futures = [batcher.submit({"x": np.full((1, 4), v)}) for v in values]
    recorder.gate.set()
    with pytest.raises(ValueError, match="negative"):
        held.result(TIMEOUT)
    with pytest.raises(ValueError, match="negative"):
        futures[1].result(TIMEOUT)
    np.testing.assert_array_equal(futures[0].result(TIMEOUT)["y"], np.full((1, 4), 3.0))
    np.testing.assert_array_equal(futures[2].result(TIMEOUT)["y"], np.full((1, 4), 5.0))
    batcher.close(TIMEOUT)
    assert [len(c) for c in recorder.calls] == [8, 3, 1, 1, 1]


def test_outputs_that_do_not_follow_the_batch_fall_back_to_single_runs():
    def summary(feeds):  # one row out whatever the batch: cannot be split by rows
        return {"mean": feeds["x"].mean(keepdims=True).reshape(1)}

    recorder = Recorder(summary)
    batcher = DynamicBatcher(recorder, max_batch=8, max_delay_s=0.5)
    held = _hold(batcher, recorder)
    futures = [batcher.submit({"x": np.full((1, 2), float(v))}) for v in (4, 6)]
    recorder.gate.set()
    held.result(TIMEOUT)
    assert [f.result(TIMEOUT)["mean"].tolist() for f in futures] == [[4.0], [6.0]]
    batcher.close(TIMEOUT)


def test_without_stacking_every_request_runs_alone():
    recorder = Recorder()
    batcher = DynamicBatcher(recorder, max_batch=1, max_delay_s=0.5, stack=False)
    held = _hold(batcher, recorder)
    futures = [batcher.submit({"x": np.full((1, 4), float(i))}) for i in range(4)]
    recorder.gate.set()
    held.result(TIMEOUT)
    for i, f in enumerate(futures):
        np.testing.assert_array_equal(f.result(TIMEOUT)["y"], np.full((1, 4), 2.0 * i + 1))
    batcher.close(TIMEOUT)
    assert [len(c) for c in recorder.calls] == [1] * 5


def test_close_runs_what_is_queued_then_refuses():
    recorder = Recorder()
    batcher = DynamicBatcher(recorder, max_batch=2, max_delay_s=10.0)
    held = _hold(batcher, recorder)
    futures = [batcher.submit({"x": np.full((1, 3), float(i))}) for i in range(5)]
    closer = threading.Thread(target=batcher.close, args=(TIMEOUT,))
    closer.start()
    recorder.gate.set()
    closer.join(TIMEOUT)
    assert not closer.is_alive()
    held.result(0)
    assert [f.result(0)["total"].tolist() for f in futures] == [[3.0 * i] for i in range(5)]
    with pytest.raises(RuntimeError, match="shutting down"):
        batcher.submit({"x": np.zeros((1, 3))})


def test_cancelled_requests_are_not_run():
    recorder = Recorder()
    batcher = DynamicBatcher(recorder, max_batch=8, max_delay_s=0.5)
    held = _hold(batcher, recorder)
    keep = batcher.submit({"x": np.full((1, 2), 7.0)})
    drop = batcher.submit({"x": np.full((1, 2), 9.0)})
    assert batcher.queued_rows == 2
    assert drop.cancel()
    assert batcher.queued_rows == 1, "a cancelled request still holds its place in the queue"
    recorder.gate.set()
    held.result(TIMEOUT)
    np.testing.assert_array_equal(keep.result(TIMEOUT)["y"], [[15.0, 15.0]])
    batcher.close(TIMEOUT)
    assert not any((call == 9.0).any() for call in recorder.calls)


def test_rejects_bad_settings():
    with pytest.raises(ValueError, match="max_batch"):
        DynamicBatcher(rowwise, max_batch=0)
    with pytest.raises(ValueError, match="max_delay_s"):
        DynamicBatcher(rowwise, max_delay_s=-1)


def test_full_queue_refuses_at_once_and_saturation_follows_the_rows():
    recorder = Recorder()
    batcher = DynamicBatcher(recorder, max_batch=4, max_delay_s=0.0, max_queue=5)
    held = _hold(batcher, recorder)
    queued = [batcher.submit({"x": np.full((rows, 4), 1.0)}) for rows in (3, 2)]
    assert batcher.queued_rows == 5 and batcher.saturated
    with pytest.raises(Overloaded, match="queue is full"):
        batcher.submit({"x": np.zeros((1, 4))})
    recorder.gate.set()
    held.result(TIMEOUT)
    assert [f.result(TIMEOUT)["y"].shape[0] for f in queued] == [3, 2]
    assert not batcher.saturated
    batcher.close(TIMEOUT)


def test_batches_are_bounded_by_pixels_as_well_as_rows():
    recorder = Recorder()
    batcher = DynamicBatcher(recorder, max_batch=8, max_delay_s=0.05, max_batch_pixels=2 * 4 * 4)
    held = _hold(batcher, recorder)
    images = [np.full((1, 3, 4, 4), float(i)) for i in range(6)]
    assert pixels({"x": images[0]}) == 16
    futures = [batcher.submit({"x": x}) for x in images]
    recorder.gate.set()
    held.result(TIMEOUT)
    for x, future in zip(images, futures, strict=True):
        np.testing.assert_array_equal(future.result(TIMEOUT)["y"], 2 * x + 1)
    batcher.close(TIMEOUT)
    assert [len(call) for call in recorder.calls[1:]] == [2, 2, 2]


def test_close_with_grace_drops_what_did_not_run_in_time():
    recorder = Recorder()
    batcher = DynamicBatcher(recorder, max_batch=1, max_delay_s=0.0)
    held = _hold(batcher, recorder)
    futures = [batcher.submit({"x": np.full((1, 4), float(i))}) for i in range(3)]
    start = time.perf_counter()
    assert batcher.close(0.3) == 3
    assert time.perf_counter() - start < 2.0, "close waited for the run still going"
    for future in futures:
        with pytest.raises(Overloaded, match="shut down before this request ran"):
            future.result(0)
    recorder.gate.set()
    held.result(TIMEOUT)


def test_queue_is_bounded_by_pixels_too():
    recorder = Recorder()
    batcher = DynamicBatcher(recorder, max_batch=2, max_delay_s=0.0, max_queue=4, max_batch_pixels=2 * 8 * 8)
    assert batcher.max_queue_pixels == 4 * 8 * 8  # max_queue / max_batch = 2 full batches of pixels
    held = _hold(batcher, recorder)
    queued = [batcher.submit({"x": np.zeros((1, 3, 8, 16))}) for _ in range(2)]  # 128 pixels each
    assert batcher.queued_rows == 2 and batcher.saturated
    with pytest.raises(Overloaded, match="pixels waiting"):
        batcher.submit({"x": np.zeros((1, 3, 2, 2))})
    recorder.gate.set()
    held.result(TIMEOUT)
    assert all(f.result(TIMEOUT)["y"].shape == (1, 3, 8, 16) for f in queued)
    assert not batcher.saturated
    batcher.close(TIMEOUT)


def test_a_request_that_cannot_start_within_its_wait_is_refused_at_submit():
    """Regression: admitted requests waited the whole queue delay and were then refused; now the
    wait is estimated from the measured seconds per row and such a request is refused at once.

    The model sleeps ``ROW_S`` per row, so the measured cost per row is at least that (a loaded
    machine only raises it): of 40 requests queued behind a held run with a 1 s wait, at most
    1 / ROW_S + 1 are admitted; the first one is (unless the machine is 20x slower)."""
    row_s = 0.05
    gate, entered = threading.Event(), threading.Event()
    gate.set()

    def run(feeds):
        entered.set()
        time.sleep(row_s * next(iter(feeds.values())).shape[0])  # the model's cost, not a wait of the test
        assert gate.wait(30)
        return {"y": feeds["x"]}

    batcher = DynamicBatcher(run, max_batch=1, max_delay_s=0.0, max_queue=64)
    x = {"x": np.zeros((1, 2), np.float32)}
    try:
        assert batcher.estimated_wait_s(1) is None
        batcher.submit(x, max_wait_s=1.0).result(30)
        assert batcher.estimated_wait_s(1) >= row_s
        gate.clear()
        entered.clear()
        held = batcher.submit(x, max_wait_s=1.0)
        assert entered.wait(30)
        admitted, refused = [], []
        for _ in range(40):
            try:
                admitted.append(batcher.submit(x, max_wait_s=1.0))
            except Overloaded as err:
                refused.append(str(err))
        assert 1 <= len(admitted) <= 1 / row_s + 1, (len(admitted), refused[:1])
        assert all("estimated" in message and "retry later" in message for message in refused)
        gate.set()
        held.result(30)
        assert all(future.result(30)["y"].shape == (1, 2) for future in admitted)
    finally:
        gate.set()
        batcher.close()
