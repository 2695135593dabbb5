"""Drop-in replacement for ``aio-py-rq`` (``aiopyrq``): ``Queue``, ``UniqueQueue`` and ``Pool``.

Change ``from aiopyrq import Queue, UniqueQueue, Pool`` to
``from leaseq.compat.aiopyrq import Queue, UniqueQueue, Pool``. Every method is a coroutine (the
original README calls some without ``await``; they need it there too). See
``docs/compat/aio-py-rq.md`` for the mapping and what differs.

Each facade sits on one :class:`leaseq.aio.Queue` named like the original queue (keys
``leaseq:{<name>}:*``), with ``max_attempts=0`` (nothing is ever dead-lettered). Items are values:

* ``Queue``: every added value is an item with a generated id; ``get_items`` leases items "until
  acknowledged" (a lease of :data:`HOLD` seconds, i.e. ten years) and the instance remembers the
  :class:`~leaseq.Lease` of every value it handed out, so ``ack_item``/``reject_item`` name the
  exact lease. ``reject_item`` is ``fail(lease, retry_in=0)``: the item goes back to its own
  place in the queue (ahead of everything added after it), so it is the next one out.
* ``UniqueQueue``: the same with ``unique_by_content=True``: the id is derived from the encoded
  value, so a value already waiting *or held* is not added again.
* ``Pool``: ids derived from content; ``get_items`` leases for ``ack_ttl`` seconds and
  ``ack_item`` gives the lease back with ``requeue(lease, delay=ack_valid_for)``: the item is due
  again ``ack_valid_for`` seconds later. A lease is exclusive, so an item is never handed out
  twice at once.

One key of its own: ``leaseq:{<name>}:aiopyrq:rollbacks`` (HASH, rollback counters, fields
``<content id>:n`` and ``<content id>:t``), under the queue's hash tag.

With ``synced_slaves_enabled``, every write is followed by ``WAIT count timeout_ms`` **on the
connection that made the write** (the facade then uses one dedicated connection: a client made
with ``single_connection_client=True`` on the given pool), and
:class:`NotEnoughSyncedSlavesError` is raised when fewer replicas acknowledged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any, Self

import redis.asyncio

from leaseq import scripts
from leaseq.aio import Queue as AioQueue
from leaseq.codec import content_id
from leaseq.connection import async_client
from leaseq.errors import InvalidArgument, LeaseqError
from leaseq.models import FailOutcome, Lease, Peeked, State
from leaseq.protocol import MAX_BATCH, MAX_DURATION, ms
from leaseq.scripts import translate

__all__ = [
    "HOLD",
    "AioPyRqError",
    "NotEnoughSyncedSlavesError",
    "Pool",
    "Queue",
    "UniqueQueue",
]

#: How long a ``Queue``/``UniqueQueue`` item is leased by ``get_items``: the longest lease
#: leaseq allows (ten years), i.e. until it is acknowledged, rejected, re-enqueued or dropped.
HOLD = MAX_DURATION
_HOLD_MS = ms(HOLD, "hold")

DEFAULT_MAX_RETRY_ROLLBACK = 5
DEFAULT_MAX_TIMEOUT_IN_QUEUE = 60  # minutes

# Counts one rollback of an item and says whether it may still be rolled back. Time is the
# queue's clock: server TIME plus the meta field clock_offset (as in every leaseq script).
# KEYS[1] rollbacks hash, KEYS[2] the queue's meta hash
# ARGV[1] item key, ARGV[2] max_retry_rollback, ARGV[3] max_timeout_in_queue in ms


class AioPyRqError(LeaseqError):
    """Base class of the errors this facade adds."""


class NotEnoughSyncedSlavesError(AioPyRqError):
    """Fewer replicas than ``synced_slaves_count`` acknowledged a write within
    ``synced_slaves_timeout``. The write itself did happen on the primary."""


def _pick(name: str, new: Any, old: Any, old_name: str, default: Any) -> Any:
    if new is not None and old is not None and new != old:
        raise InvalidArgument(f"{name} and {old_name} are the same option; got {new!r} and {old!r}")
    if new is not None:
        return new
    return old if old is not None else default


class _Facade:
    """What the three structures share: the leaseq queue, the client, the WAIT after writes."""

    def __init__(self, name: str, redis_: Any, *, unique: bool, lease: float, chunk_size: int,
                 synced_slaves_enabled: bool, synced_slaves_count: int,
                 synced_slaves_timeout: float) -> None:
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise InvalidArgument(f"chunk_size must be an int >= 1, not {chunk_size!r}")
        if isinstance(synced_slaves_count, bool) or not isinstance(synced_slaves_count, int) \
                or synced_slaves_count < 0:
            raise InvalidArgument(
                f"synced_slaves_count must be an int >= 0, not {synced_slaves_count!r}")
        self._wait_ms = ms(synced_slaves_timeout, "synced_slaves_timeout")
        given_pool = redis_ if isinstance(redis_, redis.asyncio.ConnectionPool) else getattr(
            redis_, "connection_pool", None)
        client: Any = async_client(redis_)  # bytes replies whatever decode_responses says
        pool = getattr(client, "connection_pool", None)
        self._owned_pool: Any = pool if pool is not given_pool else None
        self._own_client = client is not redis_
        if synced_slaves_enabled:
            if pool is None:
                raise InvalidArgument("synced_slaves_enabled needs a single-node client or pool")
            # WAIT counts the replication offset of the connection it runs on: every write and
            # its WAIT must share one connection, so the facade keeps a dedicated one.
            client = redis.asyncio.Redis(connection_pool=client.connection_pool,
                                         single_connection_client=True)
            self._own_client = True
        self.synced_slaves_enabled = bool(synced_slaves_enabled)
        self.synced_slaves_count = synced_slaves_count
        self.synced_slaves_timeout = synced_slaves_timeout
        self.chunk_size = chunk_size
        self._client: Any = client
        self._queue = AioQueue(name, client, lease=lease, max_attempts=0,
                               unique_by_content=unique, dead_max=0, dead_ttl=0)
        self._codec = self._queue.config.codec
        self._keys = self._queue.config.keys
        self._held: dict[bytes, list[Lease]] = {}

    # ----------------------------------------------------------------------------- plumbing

    @property
    def name(self) -> str:
        """The queue's name."""
        return self._queue.name

    @property
    def queue(self) -> AioQueue:
        """The leaseq queue underneath (for stats, peeking, dead letters...)."""
        return self._queue

    def _encode(self, value: Any) -> bytes:
        return self._codec.encode(value)

    def _cid(self, value: Any) -> str:
        return content_id(self._encode(value))

    async def _cmd(self, *args: Any) -> Any:
        try:
            return await self._client.execute_command(*args)
        except Exception as exc:
            mapped = translate(exc)
            if mapped is exc:
                raise
            raise mapped from exc

    async def _synced(self) -> None:
        """After a write: WAIT for the replicas on the connection that wrote, if enabled."""
        if not self.synced_slaves_enabled:
            return
        acked = int(await self._cmd("WAIT", self.synced_slaves_count, self._wait_ms))
        if acked < self.synced_slaves_count:
            raise NotEnoughSyncedSlavesError(
                f"{acked} of {self.synced_slaves_count} replicas acknowledged the write within "
                f"{self._wait_ms} ms (the write is done on the primary)")

    def _hold(self, leases: Iterable[Lease]) -> list[Any]:
        out = []
        for lease in leases:
            self._held.setdefault(lease.payload, []).append(lease)
            out.append(lease.data)
        return out

    def _take(self, value: Any) -> Lease | None:
        """The oldest lease this instance holds for ``value`` (forgotten here), or None."""
        key = self._encode(value)
        held = self._held.get(key)
        if not held:
            return None
        lease = held.pop(0)
        if not held:
            del self._held[key]
        return lease

    def _forget(self, value: Any) -> None:
        self._held.pop(self._encode(value), None)

    async def _add(self, values: Sequence[Any]) -> int:
        added = 0
        for i in range(0, len(values), min(self.chunk_size, MAX_BATCH)):
            got = await self._queue.add_many(values[i : i + min(self.chunk_size, MAX_BATCH)])
            added += sum(1 for r in got if r)
        await self._synced()
        return added

    async def _lease(self, count: int, lease: float) -> list[Any]:
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise InvalidArgument(f"count must be an int >= 0, not {count!r}")
        leases: list[Lease] = []
        while len(leases) < count:
            want = min(count - len(leases), MAX_BATCH)
            got = await self._queue.lease_many(want, lease=lease, block=False)
            leases += got
            if len(got) < want:
                break
        if leases:
            try:
                await self._synced()
            except NotEnoughSyncedSlavesError:
                # The caller gets no values: give them back (each to its own place) first.
                await asyncio.gather(*(self._queue.fail(x, error="not enough synced replicas",
                                                        retry_in=0) for x in leases))
                raise
        return self._hold(leases)

    async def close(self) -> None:
        """Finish pending calls and release the connections this object opened (a pool or
        client passed in stays open)."""
        await self._queue.close()
        if self._own_client:
            await self._client.aclose()
        if self._owned_pool is not None:
            await self._owned_pool.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


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
