"""Prometheus metrics of the API (one registry per app, so that test apps do not collide).

- ``plcert_jobs{status}`` (gauge): jobs per status, read from the job store at scrape time.
- ``plcert_queue_depth`` (gauge): queued jobs.
- ``plcert_job_duration_seconds{status}`` (histogram): start-to-finish time of finished jobs,
  computed from the store at scrape time (so it is right across API restarts and replicas).
- ``plcert_http_requests_total{method,route,status}`` (counter) and
  ``plcert_http_request_duration_seconds{method,route}`` (histogram), per API process.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from service.store.jobs import JobStore

JOB_DURATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0)


class StoreCollector(Collector):
    """Reads job counts and durations from the store on every scrape."""

    def __init__(self, store: JobStore) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        counts = self.store.counts_by_status()
        jobs = GaugeMetricFamily("plcert_jobs", "Jobs in the store by status", labels=["status"])
        for status, n in sorted(counts.items()):
            jobs.add_metric([status], n)
        yield jobs
        yield GaugeMetricFamily(
            "plcert_queue_depth", "Jobs waiting for a worker", value=counts.get("queued", 0)
        )
        hist = HistogramMetricFamily(
            "plcert_job_duration_seconds",
            "Seconds from a job's start to its finish",
            labels=["status"],
        )
        by_status: dict[str, list[float]] = {"succeeded": [], "failed": []}
        for status, seconds in self.store.durations():
            by_status.setdefault(status, []).append(seconds)
        for status, values in sorted(by_status.items()):
            values.sort()
            buckets = [(str(b), bisect.bisect_right(values, b)) for b in JOB_DURATION_BUCKETS] + [
                ("+Inf", len(values))
            ]
            hist.add_metric([status], buckets, sum(values))
        yield hist


class Metrics:
    """The registry of one app and its HTTP instruments."""

    def __init__(self, store: JobStore) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(StoreCollector(store))
        self.requests = Counter(
            "plcert_http_requests",
            "HTTP requests answered",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "plcert_http_request_duration_seconds",
            "Time to answer an HTTP request",
            ["method", "route"],
            registry=self.registry,
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Record one answered request."""
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)
