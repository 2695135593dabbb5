"""Finding the queues on a server (every queue ever used has a meta key, found by SCAN), and
reading the stats of them all at once: what ``leaseq stats``, the dashboard and the metrics
extra show."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster

from . import protocol as P
from . import scripts
from .codec import Codec
from .errors import LeaseqConnectionError, LeaseqError
from .keys import META_SCAN_PATTERN, QueueKeys, name_from_meta_key
from .models import Backoff, Stats

SCAN_COUNT = 1000


def _name(key: bytes | str) -> str | None:
    text = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
    return name_from_meta_key(text)


def queue_names(client: Any) -> list[str]:
    """Every queue on the server of ``client`` (sync, plain or cluster), sorted."""
    names = {n for key in client.scan_iter(match=META_SCAN_PATTERN, count=SCAN_COUNT)
             if (n := _name(key)) is not None}
    return sorted(names)


async def aqueue_names(client: Any) -> list[str]:
    """Every queue on the server of the asyncio ``client`` (plain or cluster), sorted."""
    names = set()
    async for key in client.scan_iter(match=META_SCAN_PATTERN, count=SCAN_COUNT):
        n = _name(key)
        if n is not None:
            names.add(n)
    return sorted(names)


def _config(name: str) -> P.Config:
    """The settings a stats call needs (only the keys matter to it)."""
    return P.Config(QueueKeys.of(name), Codec(), 30.0, 5, Backoff(), 0, 0.0, 3600.0, False)


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
        if isinstance(reply, Exception) and scripts.is_noscript(reply):
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
