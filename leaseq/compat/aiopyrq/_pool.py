"""aio-py-rq's ``Pool`` on leaseq."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from leaseq.models import Peeked, State
from leaseq.protocol import MAX_BATCH, ms

from ._base import (
    _Facade,
)


class Pool(_Facade):
    """An endless set of values to process again periodically (``aiopyrq.Pool``).

    ``get_items`` hands out due values for ``ack_ttl`` seconds (then they are due again if not
    acknowledged); ``ack_item`` makes a value due again ``ack_valid_for`` seconds later. A value
    is in the pool once (its id is derived from its content) and is never handed out twice at
    the same time.
    """

    def __init__(self, name: str, redis: Any, chunk_size: int = 100, ack_ttl: float = 600,
                 ack_valid_for: float = 129600, *, synced_slaves_enabled: bool = False,
                 synced_slaves_count: int = 1, synced_slaves_timeout: float = 1.0) -> None:
        ms(ack_ttl, "ack_ttl")
        ms(ack_valid_for, "ack_valid_for", zero=True)
        super().__init__(name, redis, unique=True, lease=ack_ttl, chunk_size=chunk_size,
                         synced_slaves_enabled=synced_slaves_enabled,
                         synced_slaves_count=synced_slaves_count,
                         synced_slaves_timeout=synced_slaves_timeout)
        self.ack_ttl = ack_ttl
        self.ack_valid_for = ack_valid_for

    async def add_item(self, item: Any) -> bool:
        """Add a value, due now; a value already in the pool keeps its schedule (False)."""
        return await self._add([item]) == 1

    async def add_items(self, items: Iterable[Any]) -> int:
        """Add values (see :meth:`add_item`); returns how many were new."""
        return await self._add(list(items))

    async def get_items(self, count: int) -> list[Any]:
        """Take up to ``count`` due values for ``ack_ttl`` seconds (most overdue first)."""
        return await self._lease(count, self.ack_ttl)

    async def ack_item(self, item: Any) -> bool:
        """Mark a value this instance got as processed: due again ``ack_valid_for`` seconds
        from now. False if this instance does not hold it, or its ``ack_ttl`` ran out and it
        was handed to someone else (or removed) meanwhile."""
        return await self.ack_items([item]) == 1

    async def ack_items(self, items: Iterable[Any]) -> int:
        """:meth:`ack_item` for many values; returns how many were acknowledged."""
        leases = [lease for lease in map(self._take, list(items)) if lease is not None]
        if not leases:
            return 0
        oks = await asyncio.gather(
            *(self._queue.requeue(lease, self.ack_valid_for) for lease in leases))
        await self._synced()
        return sum(1 for ok in oks if ok)

    async def is_in_pool(self, item: Any) -> bool:
        """True if the value is in the pool (due, handed out, or waiting for its next turn)."""
        return (await self._queue.state(self._cid(item))).state in (
            State.PENDING, State.DELAYED, State.LEASED)

    async def get_count(self) -> int:
        """How many values the pool holds."""
        s = await self._queue.stats()
        return s.pending + s.delayed + s.leased

    async def get_count_to_process(self) -> int:
        """How many values are due now (including handed-out ones whose ``ack_ttl`` ran out)."""
        s = await self._queue.stats()
        return s.pending + s.delayed_due + s.leases_expired

    async def get_all_items(self) -> list[Any]:
        """Every value of the pool: the due ones first, then the others by next due time."""
        due = await self._peek_all("pending")
        later = await self._peek_all("leased") + await self._peek_all("delayed")
        later.sort(key=lambda p: p.score)
        return [p.data for p in due + later]

    async def _peek_all(self, which: str) -> list[Peeked]:
        out: list[Peeked] = []
        while True:
            page = await self._queue.peek(MAX_BATCH, which=which, start=len(out))
            out += page
            if len(page) < MAX_BATCH:
                return out

    async def remove_item(self, item: Any) -> bool:
        """Remove a value from the pool, whatever its state; True if it was there."""
        return await self.remove_items([item]) == 1

    async def remove_items(self, items: Iterable[Any]) -> int:
        """Remove values from the pool; returns how many were there."""
        values = list(items)
        for v in values:
            self._forget(v)
        ids = list(dict.fromkeys(self._cid(v) for v in values))
        removed = 0
        for i in range(0, len(ids), MAX_BATCH):
            removed += sum(await self._queue.remove_many(ids[i : i + MAX_BATCH]))
        if ids:
            await self._synced()
        return removed

    async def clear_pool(self) -> int:
        """Remove every value; returns how many there were."""
        self._held.clear()
        n = await self._queue.purge()
        await self._synced()
        return n
