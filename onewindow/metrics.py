"""Prometheus metrics: requests by route and status, latency, outbox backlog, job failures.

With several HTTP worker processes, `PROMETHEUS_MULTIPROC_DIR` is set by the CLI before any of
them starts, and a scrape of any one of them aggregates all.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)

# `_created` series double the output and no dashboard of ours reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]

HTTP_REQUESTS = Counter(
    "onewindow_http_requests_total", "HTTP requests answered", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "onewindow_http_request_duration_seconds",
    "Time to answer an HTTP request",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
OUTBOX_PENDING = Gauge(
    "onewindow_outbox_pending", "Events waiting for delivery", multiprocess_mode="mostrecent"
)
OUTBOX_DEAD = Gauge(
    "onewindow_outbox_dead", "Events dead-lettered after too many failures", multiprocess_mode="mostrecent"
)
JOB_FAILURES = Gauge(
    "onewindow_job_failures_total",
    "Background jobs that raised, by job (counted in Redis across all workers)",
    ["job"],
    multiprocess_mode="mostrecent",
)

CONTENT_TYPE = CONTENT_TYPE_LATEST
# Job failures are counted in Redis, not in process memory, so the API can report the worker's.
JOB_FAILURES_KEY = "onewindow:metrics:job_failures"


def render() -> bytes:
    """The exposition text, aggregated over processes in multi-process mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)
