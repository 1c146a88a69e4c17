"""``/metrics``: the served model's statistics in Prometheus text format, with Triton's metric names.

One :class:`prometheus_client.CollectorRegistry` per service (never the process-wide default, so
several servers in one process keep their own numbers), holding one collector that reads
:class:`~.stats.RequestStats` and the batcher at scrape time: the numbers are those of
``/v2/models/NAME/stats``, never a second count. Labels ``model`` and ``version``, as Triton's.

Triton's counters (``nv_inference_request_success``, ``nv_inference_request_failure`` with its
``reason`` label, ``nv_inference_count``, ``nv_inference_exec_count``,
``nv_inference_request_duration_us``, ``nv_inference_queue_duration_us``,
``nv_inference_compute_{input,infer,output}_duration_us``) keep Triton's exact sample names.
prometheus-client's writer appends ``_total`` to every sample of a ``counter`` family, which would
break every query of a Triton dashboard, so these families are written as ``untyped``: the
samples, names and labels are Triton's, only the ``# TYPE`` line differs. Also
``nv_inference_pending_request_count`` (Triton's queue-depth gauge: requests waiting for a run),
and our own: ``rfconv_inference_batch_size`` (histogram of the rows of each run, one bucket per
size up to the max batch), ``rfconv_inference_pending_rows`` (rows waiting), and what the service
adds through ``extra`` (the memory budget and the decode queue, see
:meth:`~.service.InferenceService.load_metrics`).
"""

from __future__ import annotations

from collections.abc import Callable

from exporter.serving.batcher import BatchStats, DynamicBatcher
from exporter.serving.stats import FAILURE_REASONS, RequestCounts

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class ServingCollector:
    """A prometheus-client collector for one model version (``counts`` returns the current snapshot)."""

    def __init__(self, name: str, version: str, counts: Callable[[], RequestCounts], batcher: DynamicBatcher,
                 provider: str | None = None,
                 extra: Callable[[], list[tuple[str, str, str, float]]] | None = None):
        self.labels = [name, version]
        self.provider = provider
        self._counts = counts
        self._batcher = batcher
        self._extra = extra or list  # () -> [(kind, name, documentation, value)], read at scrape time

    def _family(self, kind, name: str, documentation: str, value: float, extra: dict[str, str] | None = None):
        from prometheus_client.core import GaugeMetricFamily, UnknownMetricFamily

        family_type = {"counter": UnknownMetricFamily, "gauge": GaugeMetricFamily}[kind]
        family = family_type(name, documentation, labels=["model", "version", *(extra or {})])
        family.add_metric([*self.labels, *(extra or {}).values()], value)
        return family

    def collect(self):
        from prometheus_client.core import HistogramMetricFamily, UnknownMetricFamily

        counts: RequestCounts = self._counts()
        runs: BatchStats = self._batcher.stats()
        yield self._family("counter", "nv_inference_request_success",
                           "Number of successful inference requests, all batch sizes", counts.success)
        failure = UnknownMetricFamily("nv_inference_request_failure",
                                      "Number of failed inference requests, all batch sizes",
                                      labels=["model", "version", "reason"])
        for reason in FAILURE_REASONS:
            failure.add_metric([*self.labels, reason], counts.failures.get(reason, 0))
        yield failure
        yield self._family("counter", "nv_inference_count",
                           "Number of inferences performed (rows of successful requests)", counts.inference_count)
        yield self._family("counter", "nv_inference_exec_count",
                           "Number of model executions performed (runs of the batcher)", runs.runs)
        for metric, documentation, ns in (
            ("nv_inference_request_duration_us", "Cumulative inference request duration in microseconds",
             counts.success_ns + counts.failure_ns),
            ("nv_inference_queue_duration_us", "Cumulative inference queuing duration in microseconds",
             counts.queue_ns),
            ("nv_inference_compute_input_duration_us", "Cumulative compute input duration in microseconds",
             counts.input_ns),
            ("nv_inference_compute_infer_duration_us", "Cumulative compute inference duration in microseconds",
             counts.infer_ns),
            ("nv_inference_compute_output_duration_us", "Cumulative inference compute output duration in "
             "microseconds", counts.output_ns),
        ):
            yield self._family("counter", metric, documentation, ns / 1000.0)
        yield self._family("gauge", "nv_inference_pending_request_count",
                           "Instantaneous number of pending requests awaiting execution", self._batcher.queued)
        yield self._family("gauge", "rfconv_inference_pending_rows",
                           "Rows (images) waiting for a run, the quantity --max-queue bounds",
                           self._batcher.queued_rows)
        for kind, metric, documentation, value in self._extra():
            yield self._family(kind, metric, documentation, value)
        histogram = HistogramMetricFamily("rfconv_inference_batch_size", "Rows per model execution",
                                          labels=["model", "version"])
        cumulative, buckets = 0, []
        for size in range(1, self._batcher.max_batch + 1):
            cumulative += runs.sizes.get(size, 0)
            buckets.append((str(size), cumulative))
        buckets.append(("+Inf", runs.runs))
        histogram.add_metric(self.labels, buckets, sum_value=sum(s * n for s, n in runs.sizes.items()))
        yield histogram
        if self.provider is not None:
            yield self._family("gauge", "rfconv_execution_provider",
                               "1 for the ONNX Runtime execution provider that runs the model",
                               1, {"provider": self.provider})


def registry_for(collector: ServingCollector):
    """A fresh registry holding only ``collector``."""
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def exposition(registry) -> bytes:
    """The registry in Prometheus text format (version 0.0.4)."""
    from prometheus_client import generate_latest

    return generate_latest(registry)
