"""The asyncio queue: the same operations as :class:`leaseq.Queue`, coalesced.

Concurrent ``add``/``lease``/``complete``/``extend``/``fail``/``requeue`` calls made in one
event-loop turn share one script call (see :mod:`leaseq.aio.coalesce`), and all blocking leases
of one queue object share one server-side wait on the wake key.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

from .. import hooks, scripts
from .. import protocol as P
from ..base import CHUNK, QueueBase
from ..connection import async_client, block_cap
from ..errors import LeaseqError
from ..models import AddResult, FailOutcome, ItemState, Lease, Peeked, Stats
from ..transport import async_channel_for
from .coalesce import Coalescer

T = TypeVar("T")


class Queue(QueueBase):
    """A reliable work queue on Redis or Valkey, asyncio API (same methods and guarantees as
    :class:`leaseq.Queue`; settings in :class:`~leaseq.base.QueueBase`)."""

    def _connect(self, client: Any, url: str | None) -> Any:
        c = async_client(client, url)
        self._max_block_cap = block_cap(c, 2.0)
        self._chan = async_channel_for(c)
        self._batches = Coalescer(self._raw)
        self._waiters: set[asyncio.Event] = set()
        self._wake_task: asyncio.Task[None] | None = None
        self._givebacks: set[asyncio.Future[list[bool]]] = set()
        return c

    async def _raw(self, call: P.Call[Any]) -> Any:
        return await self._chan.run(call.script, call.keys, call.args)

    async def _do(self, call: P.Call[T]) -> T:
        return call.parse(await self._raw(call))

    # ------------------------------------------------------------------------------ produce

    async def add(self, data: Any, *, id: str | None = None, delay: float | None = None,
                  priority: int = 0, headers: Mapping[str, str] | None = None) -> AddResult:
        """See :meth:`leaseq.Queue.add`."""
        hdrs = hooks.headers_for(headers) if headers or hooks.PROVIDERS else None
        one = P.entry(self.config, data, id, delay, priority, hdrs)
        return await self._batches.submit("add", one, lambda es: P.add(self.config, es))

    async def add_many(self, items: Iterable[Any], *,
                       headers: Mapping[str, str] | None = None) -> list[AddResult]:
        """See :meth:`leaseq.Queue.add_many`."""
        hdrs = hooks.headers_for(headers) if headers or hooks.PROVIDERS else None
        entries = [P.entry(self.config, v, headers=hdrs) for v in items]
        out: list[AddResult] = []
        for i in range(0, len(entries), CHUNK):
            chunk = await self._do(P.add(self.config, entries[i : i + CHUNK]))
            out.extend(chunk)
        return out

    # ------------------------------------------------------------------------------ consume

    async def lease(self, *, lease: float | None = None, block: bool = True,
                    timeout: float | None = None) -> Lease | None:
        """See :meth:`leaseq.Queue.lease`."""
        got = await self.lease_many(1, lease=lease, block=block, timeout=timeout)
        return got[0] if got else None

    async def lease_many(self, n: int, *, lease: float | None = None, block: bool = True,
                         timeout: float | None = None) -> list[Lease]:
        """See :meth:`leaseq.Queue.lease_many`."""
        P.count(n)
        if lease is not None:
            P.ms(lease, "lease")  # refused before anything is sent
        end = P.deadline(timeout)
        while True:
            got = await self._batches.submit(
                ("lease", lease), n, lambda wants: P.lease_split(self.config, wants, lease),
                self._give_back,
            )
            if got.items or not block:
                return got.items
            wait = P.block_for(got, P.remaining(end),
                               min(self._max_block, self._max_block_cap))
            if wait is None:
                return []
            if wait >= 0.001:
                await self._wait(wait)

    def _give_back(self, got: P.Leased) -> None:
        """Leases taken for a caller that was cancelled meanwhile go straight back."""
        if got.items:
            items = [(P.fenced(x), 0, b"") for x in got.items]
            task = asyncio.ensure_future(self._do(P.requeue(self.config, items)))
            self._givebacks.add(task)
            task.add_done_callback(self._givebacks.discard)
            task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _wait(self, seconds: float) -> None:
        """Wait until the wake key is set (one wait per queue object) or ``seconds`` pass."""
        event = asyncio.Event()
        self._waiters.add(event)
        if self._wake_task is None or self._wake_task.done():
            self._wake_task = asyncio.ensure_future(self._watch_wake())
        try:
            await asyncio.wait_for(event.wait(), seconds)
        except TimeoutError:
            pass
        finally:
            self._waiters.discard(event)

    async def _watch_wake(self) -> None:
        cap = min(self._max_block, self._max_block_cap)
        while self._waiters:
            try:
                popped = await self.client.bzpopmin(self.config.keys.wake, cap)
            except Exception as exc:
                mapped = scripts.translate(exc)
                for event in self._waiters:
                    event.set()  # the waiters retry their lease and meet the error there
                if mapped is exc:
                    raise
                return
            if popped:
                if self._waiters:
                    for event in self._waiters:
                        event.set()
                else:  # nobody to hand the wake-up to: leave it for another process
                    try:
                        await self._do(P.resync(self.config))
                    except LeaseqError:
                        return  # the next lease sets the wake key again anyway

    async def complete(self, lease: Lease | str, *, token: str | None = None,
                       result: Any = None, result_ttl: float | None = None) -> bool:
        """See :meth:`leaseq.Queue.complete`."""
        one = P.done(self.config, lease, token, result, result_ttl)
        return await self._batches.submit(
            "complete", one, lambda items: P.per_entry(P.complete(self.config, items)))

    async def complete_many(self, leases: Sequence[Lease | str], *, token: str | None = None,
                            result: Any = None, result_ttl: float | None = None) -> list[bool]:
        """See :meth:`leaseq.Queue.complete_many`."""
        items = [P.done(self.config, x, token, result, result_ttl) for x in leases]
        out: list[bool] = []
        for i in range(0, len(items), CHUNK):
            out += (await self._do(P.complete(self.config, items[i : i + CHUNK])))[0]
        return out

    async def complete_and_lease(self, lease: Lease | str, *, n: int = 1, result: Any = None,
                                 result_ttl: float | None = None,
                                 lease_for: float | None = None) -> tuple[bool, list[Lease]]:
        """See :meth:`leaseq.Queue.complete_and_lease`."""
        items = [P.done(self.config, lease, None, result, result_ttl)]
        flags, got = await self._do(P.complete(self.config, items, P.count(n), lease_for))
        return flags[0], got.items if got else []

    async def complete_many_and_lease(self, leases: Sequence[Lease | str], *, n: int,
                                      lease_for: float | None = None
                                      ) -> tuple[list[bool], list[Lease]]:
        """See :meth:`leaseq.Queue.complete_many_and_lease`."""
        items = [P.done(self.config, x, None, None, None) for x in leases]
        flags, got = await self._do(P.complete(self.config, items, P.count(n), lease_for))
        return flags, got.items if got else []

    async def extend(self, lease: Lease | str, seconds: float | None = None, *,
                     token: str | None = None) -> bool:
        """See :meth:`leaseq.Queue.extend`."""
        one = P.fenced(lease, token)
        P.extend(self.config, [], seconds)  # validates seconds
        deadline = await self._batches.submit(
            ("extend", seconds), one, lambda ts: P.extend(self.config, ts, seconds))
        return deadline > 0

    async def extend_many(self, leases: Sequence[Lease | str], seconds: float | None = None, *,
                          token: str | None = None) -> list[bool]:
        """See :meth:`leaseq.Queue.extend_many`."""
        got = await self._do(P.extend(self.config, [P.fenced(x, token) for x in leases],
                                      seconds))
        return [d > 0 for d in got]

    async def fail(self, lease: Lease | str, *, error: object = "",
                   retry_in: float | None = None, token: str | None = None) -> FailOutcome:
        """See :meth:`leaseq.Queue.fail`."""
        one = P.failure(self.config, lease, token, error, retry_in)
        return await self._batches.submit("fail", one, lambda xs: P.fail(self.config, xs))

    async def requeue(self, lease: Lease | str, delay: float = 0, *, token: str | None = None,
                      data: Any = P.KEEP) -> bool:
        """See :meth:`leaseq.Queue.requeue`."""
        one = P.giveback(self.config, lease, token, delay, data)
        return await self._batches.submit("requeue", one, lambda xs: P.requeue(self.config, xs))

    # ------------------------------------------------------------------------------ inspect

    async def state(self, id: str) -> ItemState:
        """See :meth:`leaseq.Queue.state`."""
        return await self._do(P.state(self.config, id))

    async def stats(self) -> Stats:
        """See :meth:`leaseq.Queue.stats`."""
        return await self._do(P.stats(self.config))

    async def peek(self, n: int = 10, *, which: str = "pending",
                   start: int = 0) -> list[Peeked]:
        """See :meth:`leaseq.Queue.peek`."""
        return (await self._do(P.peek(self.config, which, start, n)))[1]

    async def remove(self, id: str) -> bool:
        """See :meth:`leaseq.Queue.remove`."""
        return (await self.remove_many([id]))[0]

    async def remove_many(self, ids: Iterable[str]) -> list[bool]:
        """See :meth:`leaseq.Queue.remove_many`."""
        checked = P.ids(ids)
        out: list[bool] = []
        for i in range(0, len(checked), CHUNK):
            chunk = await self._do(P.remove(self.config, checked[i : i + CHUNK]))
            out.extend(chunk)
        return out

    async def purge(self) -> int:
        """See :meth:`leaseq.Queue.purge`."""
        return await self._do(P.purge(self.config))

    async def sweep(self, limit: int = 1000) -> tuple[int, int]:
        """See :meth:`leaseq.Queue.sweep`."""
        promoted = reclaimed = 0
        while True:
            p, r = await self._do(P.sweep(self.config, limit))
            promoted, reclaimed = promoted + p, reclaimed + r
            if p < limit and r < limit:
                return promoted, reclaimed

    # ------------------------------------------------------------------------------ dead letters

    async def dead(self, n: int = 100, *, start: int = 0) -> tuple[int, list[Peeked]]:
        """See :meth:`leaseq.Queue.dead`."""
        return await self._do(P.peek(self.config, "dead", start, n))

    async def dead_requeue(self, ids: Iterable[str] | None = None) -> int:
        """See :meth:`leaseq.Queue.dead_requeue`."""
        return await self._dead_op("dead_requeue", ids)

    async def dead_purge(self, ids: Iterable[str] | None = None) -> int:
        """See :meth:`leaseq.Queue.dead_purge`."""
        return await self._dead_op("dead_purge", ids)

    async def _dead_op(self, script: str, ids: Iterable[str] | None) -> int:
        if ids is not None:
            checked = P.ids(ids)
            total = 0
            for i in range(0, len(checked), CHUNK):
                total += await self._do(
                    P.dead_op(self.config, script, checked[i : i + CHUNK], CHUNK))
            return total
        total = 0
        while (moved := await self._do(P.dead_op(self.config, script, None, CHUNK))) > 0:
            total += moved
        return total

    async def close(self) -> None:
        """Finish the calls already batched, stop waiting, close the connections this queue
        opened (a client passed in stays open)."""
        await self._batches.drain()
        if self._givebacks:
            await asyncio.gather(*self._givebacks, return_exceptions=True)
        if self._wake_task is not None:
            self._wake_task.cancel()
            await asyncio.gather(self._wake_task, return_exceptions=True)
        await self._chan.close()
        if self._owned:
            await self.client.aclose()

    async def __aenter__(self) -> Queue:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
