"""Reading every queue's :class:`~leaseq.Stats` in as few round trips as possible, and turning
them into Prometheus metric families."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..discovery import Unreadable, scrape
from ..keys import QueueKeys
from ..models import Stats

log = logging.getLogger("leaseq.metrics")

GAUGES = (
    ("pending", "Items ready to be leased."),
    ("delayed", "Items waiting for their due time (or a retry delay)."),
    ("leased", "Items leased to a worker now."),
    ("dead", "Dead letters kept."),
    ("delayed_due", "Delayed items already due, not yet moved to pending."),
    ("leases_expired", "Leases past their deadline, not yet reclaimed."),
)
# lifetime counter of the meta hash -> metric name (leaseq_items_<name>_total)
COUNTERS = (
    ("added", "added", "Items added."),
    ("leased", "leased", "Leases granted (every attempt)."),
    ("completed", "completed", "Items completed."),
    ("failed", "failed", "Failed attempts (retried or dead-lettered)."),
    ("retried", "retried", "Failed attempts scheduled for a retry."),
    ("expired", "expired", "Leases that ran out and were reclaimed."),
    ("dead", "dead_lettered", "Items dead-lettered."),
    ("requeued", "requeued", "Leased items given back without counting an attempt."),
    ("removed", "removed", "Items removed by id."),
    ("purged", "purged", "Items deleted by a purge."),
    ("dead_purged", "dead_purged", "Dead letters deleted."),
)


def families(stats: Iterable[Stats], unreadable: Iterable[Unreadable] = ()) -> list[Metric]:
    """Gauges ``leaseq_queue_<size>{queue}`` and counters ``leaseq_items_<name>_total{queue}``
    for the given stats, and ``leaseq_queue_up{queue}``: 1 for those, 0 for the queues that
    could not be read (which get no other series)."""
    rows = list(stats)
    up = GaugeMetricFamily("leaseq_queue_up",
                           "1 if the queue's stats were read in this scrape, 0 if its "
                           "script failed (corrupted keys, ACL).", labels=["queue"])
    for s in rows:
        up.add_metric([s.queue], 1.0)
    for u in unreadable:
        up.add_metric([u.queue], 0.0)
    out: list[Metric] = [up]
    for attr, doc in GAUGES:
        g = GaugeMetricFamily(f"leaseq_queue_{attr}", doc, labels=["queue"])
        for s in rows:
            g.add_metric([s.queue], float(getattr(s, attr)))
        out.append(g)
    for key, name, doc in COUNTERS:
        c = CounterMetricFamily(f"leaseq_items_{name}", doc, labels=["queue"])
        for s in rows:
            c.add_metric([s.queue], float(s.counter(key)))
        out.append(c)
    return out


class QueueCollector(Collector):
    """A Prometheus collector reading the queues' stats from the server at every scrape
    (sync client; ``queues`` None: every queue found on the server)."""

    def __init__(self, client: Any, queues: Sequence[str] | None = None) -> None:
        from ..connection import sync_client

        self.client = sync_client(client)
        self.queues = None if queues is None else [QueueKeys.of(q).name for q in queues]

    def collect(self) -> Iterator[Metric]:
        stats, failed = scrape(self.client, self.queues)
        for u in failed:
            log.warning("metrics: cannot read queue %r: %s", u.queue, u.error)
        yield from families(stats, failed)


class Fixed(Collector):
    """Families read beforehand (what the ASGI app renders after an async read)."""

    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        yield from self.metrics
