"""Reading every queue's :class:`~leaseq.Stats` in as few round trips as possible, and turning
them into Prometheus metric families."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis import exceptions as rex
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster

from .. import protocol as P
from .. import scripts
from ..codec import Codec
from ..discovery import aqueue_names, queue_names
from ..errors import LeaseqConnectionError, LeaseqError
from ..keys import QueueKeys
from ..models import Backoff, Stats

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


def _config(name: str) -> P.Config:
    """The settings a stats call needs (only the keys matter to it)."""
    return P.Config(QueueKeys.of(name), Codec(), 30.0, 5, Backoff(), 0, 0.0, 3600.0, False)


def _noscript(reply: object) -> bool:
    return isinstance(reply, rex.NoScriptError) or (
        isinstance(reply, rex.ResponseError) and str(reply).startswith("NOSCRIPT"))


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A queue whose stats script failed (a corrupted key, an ACL refusing it)."""

    queue: str
    error: LeaseqError


def _one_failed(name: str, exc: Exception) -> Unreadable:
    mapped = scripts.translate(exc)
    if not isinstance(mapped, LeaseqError) or isinstance(mapped, LeaseqConnectionError):
        raise mapped from exc  # the server, not the queue: the whole read fails
    return Unreadable(name, mapped)


Calls = list[tuple[str, P.Call[Stats]]]


def _calls(names: Iterable[str]) -> Calls:
    return [(n, P.stats(_config(n))) for n in names]


def _pipelined(calls: Calls) -> list[tuple[Any, ...]]:
    """The EVALSHA commands of one pipeline reading every queue of ``calls``."""
    sha = scripts.script("stats").sha
    return [("EVALSHA", sha, len(c.keys), *c.keys, *c.args) for _, c in calls]


def _sort(calls: Calls, replies: Sequence[Any]) -> tuple[list[Stats], list[Unreadable], Calls]:
    """The pipeline's replies as stats, unreadable queues, and the calls to make again one by
    one (NOSCRIPT: a fresh server; that run also caches the script for the next scrape)."""
    stats: list[Stats] = []
    failed: list[Unreadable] = []
    again: Calls = []
    for (name, c), reply in zip(calls, replies, strict=True):
        if _noscript(reply):
            again.append((name, c))
            continue
        try:
            if isinstance(reply, Exception):
                raise reply
            stats.append(c.parse(reply))
        except Exception as exc:
            failed.append(_one_failed(name, exc))
    return stats, failed, again


def scrape(client: Any, queues: Sequence[str] | None = None
           ) -> tuple[list[Stats], list[Unreadable]]:
    """The stats of ``queues`` (default: every queue found) from a sync client, and the queues
    that could not be read: one pipelined round trip for them all on a single server, one round
    trip per queue on a cluster. A connection failure raises."""
    calls = _calls(queue_names(client) if queues is None else queues)
    stats: list[Stats] = []
    failed: list[Unreadable] = []
    again = calls
    if calls and not isinstance(client, RedisCluster):
        pipe = client.pipeline(transaction=False)
        for command in _pipelined(calls):
            pipe.execute_command(*command)
        try:
            replies = pipe.execute(raise_on_error=False)
        except Exception as exc:
            raise scripts.translate(exc) from exc
        stats, failed, again = _sort(calls, replies)
    for name, c in again:
        try:
            stats.append(c.parse(scripts.run(client, c.script, c.keys, c.args)))
        except LeaseqError as exc:
            failed.append(_one_failed(name, exc))
    return stats, failed


async def ascrape(client: Any, queues: Sequence[str] | None = None
                  ) -> tuple[list[Stats], list[Unreadable]]:
    """:func:`scrape` for an asyncio client."""
    calls = _calls(await aqueue_names(client) if queues is None else queues)
    stats: list[Stats] = []
    failed: list[Unreadable] = []
    again = calls
    if calls and not isinstance(client, AsyncRedisCluster):
        pipe = client.pipeline(transaction=False)
        for command in _pipelined(calls):
            pipe.execute_command(*command)
        try:
            replies = await pipe.execute(raise_on_error=False)
        except Exception as exc:
            raise scripts.translate(exc) from exc
        stats, failed, again = _sort(calls, replies)
    for name, c in again:
        try:
            stats.append(c.parse(await scripts.arun(client, c.script, c.keys, c.args)))
        except LeaseqError as exc:
            failed.append(_one_failed(name, exc))
    return stats, failed


def read_stats(client: Any, queues: Sequence[str] | None = None) -> list[Stats]:
    """:func:`scrape`, raising the error of the first queue that could not be read."""
    stats, failed = scrape(client, queues)
    if failed:
        raise failed[0].error
    return stats


async def aread_stats(client: Any, queues: Sequence[str] | None = None) -> list[Stats]:
    """:func:`read_stats` for an asyncio client."""
    stats, failed = await ascrape(client, queues)
    if failed:
        raise failed[0].error
    return stats


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
