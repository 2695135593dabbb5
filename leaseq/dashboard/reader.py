"""What the dashboard reads from the server, through the public :class:`leaseq.aio.Queue` API.

One :class:`Reader` per app: it finds the queues as ``leaseq stats`` does (SCAN over the meta
keys, cached for a few seconds), reads every queue's stats in one round trip each, and keeps a
short history of those reads in memory for the rates and the throughput chart. Reads are shared:
however many pages and live views are open, the server sees at most one overview read per
``sample_every`` seconds. Nothing here changes a queue except the explicit actions, which are
single calls of the public API (each one script on the server).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ..aio import Queue
from ..connection import async_client
from ..discovery import aqueue_names, ascrape
from ..models import ItemState, Peeked, Stats

SIZES = ("pending", "delayed", "leased", "dead")
RATED = ("added", "completed", "failed", "dead")
WHICH = ("pending", "delayed", "leased", "dead")


@dataclass(frozen=True, slots=True)
class QueueRow:
    """One queue on the overview: its stats and the rates (per second) of its counters."""

    stats: Stats
    rates: dict[str, float | None]

    @property
    def name(self) -> str:
        return self.stats.queue


@dataclass(frozen=True, slots=True)
class Sample:
    """One overview read: when (monotonic s, server ms) and every queue's stats."""

    mono: float
    now_ms: int
    stats: dict[str, Stats]


@dataclass(frozen=True, slots=True)
class Overview:
    """Every queue with its rates, and the throughput history for the chart."""

    rows: list[QueueRow]
    now_ms: int
    history: list[tuple[float, dict[str, float]]]  # (server ms, summed rates per counter)
    error: str | None = None
    unreadable: tuple[tuple[str, str], ...] = ()  # (queue, error): stats that failed (a key of
    # the wrong type...); the other queues are shown all the same


@dataclass(frozen=True, slots=True)
class Window:
    """A window of one set of a queue: ``rows`` are ranks ``start`` .. ``start+len-1`` of
    ``total``."""

    stats: Stats
    which: str
    start: int
    size: int
    total: int
    rows: list[Peeked] = field(default_factory=list)


class Reader:
    """Reads the server for the dashboard (see the module docstring).

    ``target`` is a ``redis://``/``rediss://``/``unix://`` URL, an asyncio redis client (plain or
    cluster) or connection pool, or None (``$LEASEQ_URL``, else the embedded server). A client
    made here from a URL belongs to the event loop that first used it; another loop (a second
    test client, say) gets its own.
    """

    def __init__(self, target: Any = None, *, history: float = 600.0,
                 sample_every: float = 1.0, discover_every: float = 5.0,
                 rate_window: float = 10.0) -> None:
        self._target = target
        self._owned = target is None or isinstance(target, str)
        self._client: Any = None if self._owned else async_client(target)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queues: dict[str, Queue] = {}
        self._names: list[str] = []
        self._names_at = -1e18
        self._samples: deque[Sample] = deque()
        self._unreadable: tuple[tuple[str, str], ...] = ()
        self._lock: asyncio.Lock | None = None
        self.history = history
        self.sample_every = sample_every
        self.discover_every = discover_every
        self.rate_window = rate_window

    # ------------------------------------------------------------------------------ plumbing

    @property
    def client(self) -> Any:
        """The asyncio client of the running event loop."""
        loop = asyncio.get_running_loop()
        if self._owned and (self._client is None or self._loop is not loop):
            self._client = async_client(None, self._target)
            self._loop = loop
            self._queues.clear()
            self._lock = None
        return self._client

    def _guard(self) -> asyncio.Lock:
        client = self.client  # resets the lock with a new loop's client
        del client
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    def queue(self, name: str) -> Queue:
        """The queue ``name`` on the dashboard's client (raises InvalidQueueName)."""
        client = self.client
        q = self._queues.get(name)
        if q is None:
            q = self._queues[name] = Queue(name, client)
        return q

    async def close(self) -> None:
        """Close the client this reader made (a client passed in stays open)."""
        if self._owned and self._client is not None:
            client, self._client = self._client, None
            self._queues.clear()
            with contextlib.suppress(RuntimeError):  # made on a loop that is gone
                await client.aclose()

    # ------------------------------------------------------------------------------ overview

    async def names(self) -> list[str]:
        """Every queue on the server, rescanned at most every ``discover_every`` seconds."""
        now = time.monotonic()
        if now - self._names_at >= self.discover_every:
            self._names = await aqueue_names(self.client)
            self._names_at = now
        return self._names

    async def overview(self) -> Overview:
        """Stats and rates of every queue; read afresh at most every ``sample_every`` s."""
        async with self._guard():
            last = self._samples[-1] if self._samples else None
            if last is None or time.monotonic() - last.mono >= self.sample_every:
                names = await self.names()
                # every queue in one round trip (one per queue on a cluster); a queue that
                # cannot be read is named on the page and hides none of the others
                got, failed = await ascrape(self.client, names)
                self._unreadable = tuple((u.queue, str(u.error)) for u in failed)
                now_ms = max((s.now_ms for s in got), default=int(time.time() * 1000))
                self._samples.append(Sample(time.monotonic(), now_ms,
                                            {s.queue: s for s in got}))
                while self._samples and now_ms - self._samples[0].now_ms > self.history * 1000:
                    self._samples.popleft()
            return self._summary()

    def _summary(self) -> Overview:
        samples = list(self._samples)
        last = samples[-1]
        base = next((s for s in reversed(samples[:-1])
                     if last.now_ms - s.now_ms >= self.rate_window * 1000), None)
        if base is None and len(samples) > 1:
            base = samples[0]
        rows = []
        for name, st in last.stats.items():
            before = base.stats.get(name) if base is not None else None
            rows.append(QueueRow(st, _rates(before, st)))
        history: list[tuple[float, dict[str, float]]] = []
        for a, b in itertools.pairwise(samples):
            summed = dict.fromkeys(RATED, 0.0)
            for name, st in b.stats.items():
                r = _rates(a.stats.get(name), st)
                for k in RATED:
                    summed[k] += r[k] or 0.0
            history.append((float(b.now_ms), summed))
        return Overview(rows, last.now_ms, history, unreadable=self._unreadable)

    # ------------------------------------------------------------------------------ one queue

    async def window(self, name: str, which: str, start: int, size: int) -> Window:
        """Ranks ``start`` .. ``start + size - 1`` of one set of queue ``name`` (ZRANGE by rank
        on the server: the cost does not grow with the queue beyond log N)."""
        q = self.queue(name)
        stats = await q.stats()
        if which == "dead":
            total, rows = await q.dead(size, start=start)
        else:
            rows = await q.peek(size, which=which, start=start)
            total = int(getattr(stats, which))
        return Window(stats, which, start, size, total, rows)

    async def item(self, name: str, item_id: str) -> ItemState:
        """Everything the server knows about one item, read atomically."""
        return await self.queue(name).state(item_id)


def _rates(before: Stats | None, after: Stats) -> dict[str, float | None]:
    """Counter increases per second between two stats of one queue (None when unknown)."""
    if before is None or after.now_ms <= before.now_ms:
        return dict.fromkeys(RATED)
    dt = (after.now_ms - before.now_ms) / 1000.0
    return {k: max(after.counter(k) - before.counter(k), 0) / dt for k in RATED}
