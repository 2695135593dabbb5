"""What the aio-py-rq facades share: options, errors, the synced-replica writes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any, Self

import redis.asyncio

from leaseq.aio import Queue as AioQueue
from leaseq.codec import content_id
from leaseq.connection import async_client
from leaseq.errors import InvalidArgument, LeaseqError
from leaseq.models import Lease
from leaseq.protocol import MAX_BATCH, MAX_DURATION, ms
from leaseq.scripts import translate

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
