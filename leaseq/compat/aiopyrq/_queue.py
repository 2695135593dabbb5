"""aio-py-rq's ``Queue`` and ``UniqueQueue`` on leaseq."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from leaseq import scripts
from leaseq.codec import content_id
from leaseq.errors import InvalidArgument
from leaseq.models import FailOutcome, Peeked, State
from leaseq.protocol import MAX_BATCH, ms

from ._base import (
    _HOLD_MS,
    DEFAULT_MAX_RETRY_ROLLBACK,
    DEFAULT_MAX_TIMEOUT_IN_QUEUE,
    HOLD,
    _Facade,
    _pick,
)


class Queue(_Facade):
    """A FIFO queue of serializable values (``aiopyrq.Queue``).

    Args:
        name: the queue's name (a leaseq queue name: no braces, no control characters).
        redis: a ``redis.asyncio.ConnectionPool`` or ``redis.asyncio.Redis`` (any
            ``decode_responses``).
        synced_slaves_enabled, synced_slaves_count, synced_slaves_timeout: after every write,
            ``WAIT count timeout`` (timeout in seconds) and raise
            :class:`NotEnoughSyncedSlavesError` if fewer replicas acknowledged.
        max_retry_rollback (alias ``max_retry``), max_timeout_in_queue (alias ``max_timeout``,
            minutes): the limits of :meth:`can_rollback_item`.
        chunk_size: values sent per round trip by the ``*_items`` calls.
    """

    _unique = False

    def __init__(self, name: str, redis: Any, *, synced_slaves_enabled: bool = False,
                 synced_slaves_count: int = 1, synced_slaves_timeout: float = 1.0,
                 max_retry_rollback: int | None = None, max_timeout_in_queue: float | None = None,
                 max_retry: int | None = None, max_timeout: float | None = None,
                 chunk_size: int = 100) -> None:
        super().__init__(name, redis, unique=self._unique, lease=HOLD, chunk_size=chunk_size,
                         synced_slaves_enabled=synced_slaves_enabled,
                         synced_slaves_count=synced_slaves_count,
                         synced_slaves_timeout=synced_slaves_timeout)
        retry = _pick("max_retry_rollback", max_retry_rollback, max_retry, "max_retry",
                      DEFAULT_MAX_RETRY_ROLLBACK)
        if isinstance(retry, bool) or not isinstance(retry, int) or retry < 0:
            raise InvalidArgument(f"max_retry_rollback must be an int >= 0, not {retry!r}")
        minutes = _pick("max_timeout_in_queue", max_timeout_in_queue, max_timeout, "max_timeout",
                        DEFAULT_MAX_TIMEOUT_IN_QUEUE)
        self.max_retry_rollback: int = retry
        self.max_timeout_in_queue: float = minutes
        self._max_timeout_ms = ms(minutes * 60.0, "max_timeout_in_queue", zero=True)
        self._rollbacks = self._keys.extra("aiopyrq:rollbacks")

    # ------------------------------------------------------------------------------ produce

    async def add_item(self, item: Any) -> bool:
        """Add one value; True if added (a ``UniqueQueue`` refuses a value already there)."""
        return await self._add([item]) == 1

    async def add_items(self, items: Iterable[Any]) -> int:
        """Add values, ``chunk_size`` per round trip; returns how many were added."""
        return await self._add(list(items))

    # ------------------------------------------------------------------------------ consume

    async def get_items(self, count: int) -> list[Any]:
        """Take up to ``count`` waiting values, oldest first, held by this instance until
        acknowledged or rejected (or re-enqueued/dropped by a timeout call). Never blocks.
        If the replicas do not confirm (``synced_slaves_*``), the values are given back to their
        places before :class:`NotEnoughSyncedSlavesError` is raised."""
        return await self._lease(count, HOLD)

    async def ack_item(self, item: Any) -> bool:
        """Acknowledge one value this instance got: the item is done. False if this instance
        holds no such value (or it was removed meanwhile)."""
        return await self.ack_items([item]) == 1

    async def ack_items(self, items: Iterable[Any]) -> int:
        """Acknowledge values this instance got (one round trip); returns how many were done.
        Also clears their rollback counters."""
        values = list(items)
        leases = [lease for lease in map(self._take, values) if lease is not None]
        done = 0
        for i in range(0, len(leases), MAX_BATCH):
            done += sum(await self._queue.complete_many(leases[i : i + MAX_BATCH]))
        if leases:
            fields = {f"{content_id(x.payload)}:{s}" for x in leases for s in ("n", "t")}
            await self._cmd("HDEL", self._rollbacks, *sorted(fields))
            await self._synced()
        return done

    async def reject_item(self, item: Any) -> bool:
        """Give one value back: it returns to its own place in the queue, so it is the next one
        out (``fail(lease, retry_in=0)``; its attempt counter grows, never limited)."""
        return await self.reject_items([item]) == 1

    async def reject_items(self, items: Iterable[Any]) -> int:
        """:meth:`reject_item` for many values (one round trip); returns how many went back."""
        leases = [lease for lease in map(self._take, list(items)) if lease is not None]
        if not leases:
            return 0
        outcomes = await asyncio.gather(
            *(self._queue.fail(lease, error="rejected", retry_in=0) for lease in leases))
        await self._synced()
        # Only RETRIED counts: REPEATED means a janitor already finished this lease (by its
        # token, in re_enqueue_timeout_items) - the item went back, but not by this call.
        return sum(1 for x in outcomes if x is FailOutcome.RETRIED)

    # ------------------------------------------------------------------------------ inspect, edit

    async def get_count(self) -> int:
        """How many values are waiting (not held)."""
        stats = await self._queue.stats()
        return stats.pending + stats.delayed

    async def delete_item(self, item: Any) -> bool:
        """Remove every waiting copy of a value; True if there was one."""
        return await self.delete_items([item]) > 0

    async def delete_items(self, items: Iterable[Any]) -> int:
        """Remove every waiting copy of the values; returns how many copies were removed.
        Their rollback counters are cleared too."""
        payloads = {self._encode(v) for v in items}
        if not payloads:
            return 0
        ids = await self._waiting_ids(payloads)
        removed = 0
        for i in range(0, len(ids), MAX_BATCH):
            removed += sum(await self._queue.remove_many(ids[i : i + MAX_BATCH]))
        fields = sorted(f"{content_id(p)}:{s}" for p in payloads for s in ("n", "t"))
        await self._cmd("HDEL", self._rollbacks, *fields)
        await self._synced()
        return removed

    async def _waiting_ids(self, payloads: set[bytes]) -> list[str]:
        ids: list[str] = []
        start = 0
        while True:
            page: list[Peeked] = await self._queue.peek(MAX_BATCH, which="pending", start=start)
            ids += [p.id for p in page if p.payload in payloads]
            if len(page) < MAX_BATCH:
                return ids
            start += len(page)

    # ------------------------------------------------------------------------------ rollbacks

    async def can_rollback_item(self, item: Any) -> bool:
        """Count one rollback of ``item``; False once more than ``max_retry_rollback``
        rollbacks were counted *and* ``max_timeout_in_queue`` minutes passed since the first
        (on the queue's clock). :meth:`reset_blocked_item` starts the count again."""
        ok = await scripts.arun(
            self._client, "compat/aiopyrq_rollback", [self._rollbacks, self._keys.meta],
            [self._cid(item), self.max_retry_rollback, self._max_timeout_ms])
        await self._synced()
        return int(ok) == 1

    async def reset_blocked_item(self, item: Any) -> bool:
        """Clear the rollback counter of ``item``; True if it had one."""
        cid = self._cid(item)
        gone = int(await self._cmd("HDEL", self._rollbacks, f"{cid}:n", f"{cid}:t"))
        await self._synced()
        return gone > 0

    # ------------------------------------------------------------------------------ timeouts

    async def _held_for(self, timeout: float) -> list[tuple[str, str]]:
        """(id, lease token) of every item held (by any instance) for ``timeout`` seconds or
        more: an item leased by ``get_items`` has deadline = time handed out + :data:`HOLD`, and
        the leased set is read in deadline order, page by page, up to that cutoff."""
        now = (await self._queue.stats()).now_ms
        cutoff = now - ms(timeout, "timeout", zero=True) + _HOLD_MS
        out: list[tuple[str, str]] = []
        start = 0
        while True:
            page: list[Peeked] = await self._queue.peek(MAX_BATCH, which="leased", start=start)
            for row in page:
                if row.score > cutoff:
                    return out
                if row.token is not None:
                    out.append((row.id, row.token))
            if len(page) < MAX_BATCH:
                return out
            start += len(page)

    async def re_enqueue_timeout_items(self, timeout: float) -> int:
        """Give back every item held (by any instance) for at least ``timeout`` seconds, each
        to its own place in the queue; returns how many went back. The check is per item
        (time since it was handed out), fenced by its lease token: an item acknowledged or
        rejected meanwhile is left alone."""
        held = await self._held_for(timeout)
        if not held:
            return 0
        outcomes = await asyncio.gather(*(
            self._queue.fail(i, token=t, error="re-enqueued after timeout", retry_in=0)
            for i, t in held))
        await self._synced()
        return sum(1 for x in outcomes if x is FailOutcome.RETRIED)

    async def re_enqueue_all_items(self) -> int:
        """Give back every held item, whoever holds it."""
        return await self.re_enqueue_timeout_items(0)

    async def drop_timeout_items(self, timeout: float) -> int:
        """Delete every item held (by any instance) for at least ``timeout`` seconds; returns
        how many. Each item is checked by its lease token (an ``extend``, which leaves no trace
        that the holder's later ``ack``/``reject`` could mistake for its own) and then removed;
        only an item acknowledged *and* added again in the instant between the two calls could
        be removed in its place (leaseq has no token-fenced remove yet)."""
        held = await self._held_for(timeout)
        if not held:
            return 0
        current = await asyncio.gather(*(self._queue.extend(i, HOLD, token=t) for i, t in held))
        ids = [i for (i, _), ok in zip(held, current, strict=True) if ok]
        removed = 0
        for k in range(0, len(ids), MAX_BATCH):
            removed += sum(await self._queue.remove_many(ids[k : k + MAX_BATCH]))
        await self._synced()
        return removed

    async def drop_all_items(self) -> int:
        """Delete every held item, whoever holds it."""
        return await self.drop_timeout_items(0)


class UniqueQueue(Queue):
    """A :class:`Queue` where a value is added only if it is not already waiting or held
    (``aiopyrq.UniqueQueue``). Ids are derived from the encoded value."""

    _unique = True

    async def delete_items(self, items: Iterable[Any]) -> int:
        """Remove the values if they are waiting; returns how many were."""
        payloads = {self._encode(v) for v in items}
        if not payloads:
            return 0
        ids = []
        for p in payloads:
            state = await self._queue.state(content_id(p))
            if state.state is State.PENDING:
                ids.append(state.id)
        removed = sum(await self._queue.remove_many(ids)) if ids else 0
        fields = sorted(f"{content_id(p)}:{s}" for p in payloads for s in ("n", "t"))
        await self._cmd("HDEL", self._rollbacks, *fields)
        await self._synced()
        return removed
