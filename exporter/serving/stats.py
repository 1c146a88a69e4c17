"""Per-model request accounting, reported as Triton's ``ModelStatistics`` (HTTP ``/stats``, gRPC, ``/metrics``).

What is counted, as Triton counts it (all durations in nanoseconds):

* ``success``: requests answered, and their duration from the moment the service took them
  (before decoding) until their answer was encoded; ``inference_count`` sums their rows.
* ``fail``: infer requests for this model that the service took and answered with an error, by
  reason (Triton's ``reason`` label): ``REJECTED`` (503: queue full, queue timeout, shutting
  down; also the admission checks before an HTTP body is read), ``CANCELED`` (the client left),
  ``BACKEND`` (the model run failed), ``OTHER`` (the request was wrong: 4xx). Refusals before the
  service sees a request (an unknown model, an HTTP body over its limit or too slow, a gRPC
  message over its limit) are not this model's and are not counted.
* ``queue`` / ``compute_input`` / ``compute_infer`` / ``compute_output``: per successful request,
  from :class:`~.batcher.Timing`; a request that shared a run is credited the whole run.
* ``batch_stats`` and ``execution_count``: per run, from :meth:`~.batcher.DynamicBatcher.stats`.

The one message both front ends send is built by :func:`statistics_message`; the Prometheus view
(:mod:`.metrics`) reads the same :class:`RequestStats` snapshot.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from exporter.serving.batcher import BatchStats, Timing

FAILURE_REASONS = ("REJECTED", "CANCELED", "BACKEND", "OTHER")


def failure_reason(status: int) -> str:
    """Triton's failure reason for an HTTP status the service answered with."""
    if status == 503:
        return "REJECTED"
    return "BACKEND" if status >= 500 else "OTHER"


@dataclass(frozen=True)
class RequestCounts:
    """A snapshot of :class:`RequestStats`: counts and summed nanoseconds."""

    success: int = 0
    success_ns: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    failure_ns: int = 0
    inference_count: int = 0
    queue_ns: int = 0
    input_ns: int = 0
    infer_ns: int = 0
    output_ns: int = 0
    last_inference_ms: int = 0

    @property
    def failed(self) -> int:
        return sum(self.failures.values())


class RequestStats:
    """Thread-safe request counters of one served model."""

    def __init__(self):
        self._lock = threading.Lock()
        self._counts = RequestCounts(failures=dict.fromkeys(FAILURE_REASONS, 0))

    def success(self, duration_ns: int, rows: int, timing: Timing) -> None:
        with self._lock:
            c = self._counts
            self._counts = RequestCounts(
                c.success + 1, c.success_ns + duration_ns, c.failures, c.failure_ns, c.inference_count + rows,
                c.queue_ns + timing.queue_ns, c.input_ns + timing.input_ns, c.infer_ns + timing.infer_ns,
                c.output_ns + timing.output_ns, int(time.time() * 1000),
            )

    def failure(self, duration_ns: int, reason: str) -> None:
        with self._lock:
            c = self._counts
            failures = {**c.failures, reason: c.failures[reason] + 1}
            self._counts = RequestCounts(
                c.success, c.success_ns, failures, c.failure_ns + duration_ns, c.inference_count, c.queue_ns,
                c.input_ns, c.infer_ns, c.output_ns, c.last_inference_ms,
            )

    def snapshot(self) -> RequestCounts:
        with self._lock:
            return self._counts


def service_pb2():
    """Triton's service protobuf module (``tritonclient.grpc.service_pb2``), or RuntimeError saying what to install."""
    try:
        from tritonclient.grpc import service_pb2
    except (ImportError, RuntimeError) as err:
        raise RuntimeError("model statistics and gRPC need tritonclient's grpc part: "
                           "pip install 'tritonclient[grpc]'") from err
    return service_pb2


def statistics_message(name: str, version: str, counts: RequestCounts, runs: BatchStats):
    """Triton's ``ModelStatistics`` message for one model version."""
    pb = service_pb2()
    stats = pb.ModelStatistics(
        name=name, version=version, last_inference=counts.last_inference_ms,
        inference_count=counts.inference_count, execution_count=runs.runs,
    )
    inference = stats.inference_stats
    inference.success.count, inference.success.ns = counts.success, counts.success_ns
    inference.fail.count, inference.fail.ns = counts.failed, counts.failure_ns
    for duration, ns in ((inference.queue, counts.queue_ns), (inference.compute_input, counts.input_ns),
                         (inference.compute_infer, counts.infer_ns), (inference.compute_output, counts.output_ns)):
        duration.count, duration.ns = counts.success, ns
    inference.cache_hit.SetInParent()  # no response cache: present and zero, as HTTP writes them
    inference.cache_miss.SetInParent()
    for size in sorted(runs.sizes):
        batch = stats.batch_stats.add(batch_size=size)
        executions = runs.sizes[size]
        input_ns, infer_ns, output_ns = runs.compute_ns.get(size, (0, 0, 0))
        for duration, ns in ((batch.compute_input, input_ns), (batch.compute_infer, infer_ns),
                             (batch.compute_output, output_ns)):
            duration.count, duration.ns = executions, ns
    return stats
