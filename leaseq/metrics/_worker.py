"""Worker-side histograms (job run time per outcome, queue wait) fed by leaseq's hooks."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import Histogram
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from .. import hooks
from ..models import Lease

ADDED_HEADER = "leaseq-added-ms"
"""The header a producer's :func:`instrument` stamps on every item: its wall clock (ms)."""

DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
                3600.0, 4 * 3600.0, 86400.0)


class WorkerMetrics(Collector):
    """``leaseq_job_duration_seconds{queue,outcome}`` (handler run time, by the job's settled
    outcome) and ``leaseq_queue_wait_seconds{queue}`` (added -> leased, first attempts of items
    stamped with :data:`ADDED_HEADER`), for the jobs of this process."""

    def __init__(self) -> None:
        self.job_duration = Histogram(
            "leaseq_job_duration_seconds", "Handler run time of a job, by its outcome.",
            ["queue", "outcome"], registry=None, buckets=DURATION_BUCKETS)
        self.queue_wait = Histogram(
            "leaseq_queue_wait_seconds",
            "Time from add (producer's clock) to first lease (server's clock).",
            ["queue"], registry=None, buckets=WAIT_BUCKETS)
        self._durations: dict[tuple[str, str], Any] = {}  # label children, cached
        self._waits: dict[str, Any] = {}

    def collect(self) -> Iterator[Metric]:
        yield from self.job_duration.collect()
        yield from self.queue_wait.collect()

    def observe_wait(self, lease: Lease) -> None:
        """Record the queue wait of a first attempt whose item carries the added-at stamp.
        Clock skew between producer and server can make it negative: it is counted as 0."""
        if lease.attempt != 1 or not lease.leased_ms:
            return
        stamp = lease.headers.get(ADDED_HEADER)
        if stamp is None or not stamp.isdigit():
            return
        child = self._waits.get(lease.queue)
        if child is None:
            child = self._waits[lease.queue] = self.queue_wait.labels(lease.queue)
        child.observe(max(0.0, (lease.leased_ms - int(stamp)) / 1000.0))

    def observe_duration(self, queue: str, outcome: str, seconds: float) -> None:
        """Record one job's handler run time."""
        child = self._durations.get((queue, outcome))
        if child is None:
            child = self._durations[(queue, outcome)] = self.job_duration.labels(queue, outcome)
        child.observe(seconds)

    def job_hook(self, lease: Lease) -> _Timer:
        return _Timer(self, lease)


class _Timer:
    """The job hook: times the handler, records it with the settled outcome."""

    __slots__ = ("end", "lease", "metrics", "start")

    def __init__(self, metrics: WorkerMetrics, lease: Lease) -> None:
        self.metrics, self.lease = metrics, lease
        self.start = self.end = 0.0

    def __enter__(self) -> _Timer:
        self.metrics.observe_wait(self.lease)
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.end = time.perf_counter()

    def settled(self, result: Any) -> None:
        took = (self.end or time.perf_counter()) - self.start  # a timed-out thread: so far
        self.metrics.observe_duration(self.lease.queue, str(result.outcome), took)


def added_at() -> Mapping[str, str]:
    """The header provider: this process's wall clock, in ms."""
    return {ADDED_HEADER: str(time.time_ns() // 1_000_000)}


_lock = threading.Lock()
_metrics: WorkerMetrics | None = None
_removers: dict[str, Callable[[], None]] = {}


def worker_metrics() -> WorkerMetrics:
    """This process's worker histograms (made on first use)."""
    global _metrics
    with _lock:
        if _metrics is None:
            _metrics = WorkerMetrics()
        return _metrics


def instrument(*, producer: bool = True, worker: bool = True) -> Callable[[], None]:
    """Turn on the metrics hooks of this process (idempotent): with ``producer``, stamp every
    added item with :data:`ADDED_HEADER`; with ``worker``, time every job of the worker
    runtime into :class:`WorkerMetrics`. Returns a function that turns both off again."""
    m = worker_metrics()
    with _lock:
        if producer and "producer" not in _removers:
            _removers["producer"] = hooks.add_header_provider(added_at)
        if worker and "worker" not in _removers:
            _removers["worker"] = hooks.add_job_hook(m.job_hook)

    def uninstrument() -> None:
        with _lock:
            for key in [k for k in ("producer", "worker") if k in _removers]:
                _removers.pop(key)()

    return uninstrument


def worker_collector() -> Collector | None:
    """The worker histograms if :func:`instrument` made them in this process, else None."""
    return _metrics
