"""Prometheus metrics of the model server, named after Triton's where they mean the same.

Counters in microseconds, as Triton keeps them: ``nv_inference_queue_duration_us`` (time
requests waited for a batch) and ``nv_inference_compute_infer_duration_us`` (time in the
model), summed over requests; ``nv_inference_exec_count`` counts batches (model
executions), ``nv_inference_request_success``/``_failure`` requests. Labels: ``model`` and
``version`` (always "", as models here have no versions). ``graphmesh_model_batch_size``
is the batch-size histogram Triton lacks.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from graphmesh.model_server.batcher import BatchReport

LABELS = ("model", "version")

REQUEST_SUCCESS = Counter("nv_inference_request_success", "Requests served successfully", LABELS)
REQUEST_FAILURE = Counter("nv_inference_request_failure", "Requests that failed", LABELS)
QUEUE_DURATION_US = Counter(
    "nv_inference_queue_duration_us", "Microseconds requests waited for a batch", LABELS
)
COMPUTE_DURATION_US = Counter(
    "nv_inference_compute_infer_duration_us", "Microseconds requests spent in the model", LABELS
)
EXEC_COUNT = Counter("nv_inference_exec_count", "Model executions (batches)", LABELS)
BATCH_SIZE = Histogram(
    "graphmesh_model_batch_size",
    "Items per model execution",
    LABELS,
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)


def record_batch(model: str, report: BatchReport) -> None:
    """Count one batch the dynamic batcher ran for ``model``."""
    labels = (model, "")
    EXEC_COUNT.labels(*labels).inc()
    BATCH_SIZE.labels(*labels).observe(report.size)
    QUEUE_DURATION_US.labels(*labels).inc(sum(report.queue_seconds) * 1e6)
    COMPUTE_DURATION_US.labels(*labels).inc(report.compute_seconds * report.size * 1e6)


def record_execution(model: str, *, compute_seconds: float) -> None:
    """Count one unbatched execution (a stream) for ``model``."""
    labels = (model, "")
    EXEC_COUNT.labels(*labels).inc()
    BATCH_SIZE.labels(*labels).observe(1)
    COMPUTE_DURATION_US.labels(*labels).inc(compute_seconds * 1e6)


def record_request(model: str, *, ok: bool) -> None:
    """Count one finished request."""
    (REQUEST_SUCCESS if ok else REQUEST_FAILURE).labels(model, "").inc()
