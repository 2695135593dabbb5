"""The synchronous queue: thin glue between :mod:`leaseq.protocol` and a redis-py client."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

from . import hooks, scripts
from . import protocol as P
from .base import CHUNK, QueueBase
from .connection import block_cap, sync_client
from .models import AddResult, FailOutcome, ItemState, Lease, Peeked, Stats
from .transport import channel_for

T = TypeVar("T")


class Queue(QueueBase):
    """A reliable work queue on Redis or Valkey, sync API (:class:`leaseq.aio.Queue` is the
    asyncio twin, with the same methods). See :class:`~leaseq.base.QueueBase` for the settings.

    Every method is one atomic step on the server (one script); the ``*_many`` methods send
    1000 items per round trip. Durations are in seconds (floats allowed).
    """

    def _connect(self, client: Any, url: str | None) -> Any:
        c = sync_client(client, url)
        self._max_block_cap = block_cap(c, 2.0)
        self._chan = channel_for(c)
        return c

    def _do(self, call: P.Call[T]) -> T:
        return call.parse(self._chan.run(call.script, call.keys, call.args))

    # ------------------------------------------------------------------------------ produce

    def add(self, data: Any, *, id: str | None = None, delay: float | None = None,
            priority: int = 0, headers: Mapping[str, str] | None = None) -> AddResult:
        """Add one item; an id already present (pending, delayed, leased or dead) is left
        unchanged and the result says so. Higher priority is leased first; FIFO within one.
        ``headers`` (str -> str, see :attr:`leaseq.Lease.headers`) are stored with the item,
        over those of the header providers (:mod:`leaseq.hooks`); they never change its id."""
        hdrs = hooks.headers_for(headers) if headers or hooks.PROVIDERS else None
        one = P.entry(self.config, data, id, delay, priority, hdrs)
        return self._do(P.add(self.config, [one]))[0]

    def add_many(self, items: Iterable[Any], *,
                 headers: Mapping[str, str] | None = None) -> list[AddResult]:
        """Add many items (values or :class:`leaseq.Item`), 1000 per round trip; every item is
        validated before anything is sent. ``headers`` go with every item (an Item's own
        ``headers`` win over them)."""
        hdrs = hooks.headers_for(headers) if headers or hooks.PROVIDERS else None
        entries = [P.entry(self.config, v, headers=hdrs) for v in items]
        out: list[AddResult] = []
        for i in range(0, len(entries), CHUNK):
            chunk = self._do(P.add(self.config, entries[i : i + CHUNK]))
            out.extend(chunk)
        return out

    # ------------------------------------------------------------------------------ consume

    def lease(self, *, lease: float | None = None, block: bool = True,
              timeout: float | None = None) -> Lease | None:
        """Take the next ready item for ``lease`` seconds, or None. With ``block``, wait up to
        ``timeout`` seconds (None: forever) without polling: the server wakes one waiter per
        item added, and a waiter also wakes when a delayed item is due or a lease expires."""
        got = self.lease_many(1, lease=lease, block=block, timeout=timeout)
        return got[0] if got else None

    def lease_many(self, n: int, *, lease: float | None = None, block: bool = True,
                   timeout: float | None = None) -> list[Lease]:
        """Take up to ``n`` ready items in one round trip (waiting, as :meth:`lease`, only
        while none is ready)."""
        call = P.lease(self.config, n, lease)
        end = P.deadline(timeout)
        while True:
            got = self._do(call)
            if got.items or not block:
                return got.items
            wait = P.block_for(got, P.remaining(end),
                               min(self._max_block, self._max_block_cap))
            if wait is None:
                return []
            if wait >= 0.001:
                self._wait(wait)

    def _wait(self, seconds: float) -> None:
        try:
            self.client.bzpopmin(self.config.keys.wake, round(seconds, 3))
        except Exception as exc:
            mapped = scripts.translate(exc)
            if mapped is exc:
                raise
            raise mapped from exc

    def complete(self, lease: Lease | str, *, token: str | None = None, result: Any = None,
                 result_ttl: float | None = None) -> bool:
        """Finish an item. True for exactly one caller per item: the first completer, even
        one whose lease ran out; never a lease of an earlier incarnation of the id. A repeat
        of a call whose reply was lost answers True again (within 60 s). ``result`` stays
        readable through :meth:`state` for ``result_ttl`` seconds."""
        return self.complete_many([lease], token=token, result=result, result_ttl=result_ttl)[0]

    def complete_many(self, leases: Sequence[Lease | str], *, token: str | None = None,
                      result: Any = None, result_ttl: float | None = None) -> list[bool]:
        """:meth:`complete` for many items, 1000 per round trip."""
        items = [P.done(self.config, x, token, result, result_ttl) for x in leases]
        out: list[bool] = []
        for i in range(0, len(items), CHUNK):
            out += self._do(P.complete(self.config, items[i : i + CHUNK]))[0]
        return out

    def complete_and_lease(self, lease: Lease | str, *, n: int = 1, result: Any = None,
                           result_ttl: float | None = None,
                           lease_for: float | None = None) -> tuple[bool, list[Lease]]:
        """Complete an item and lease up to ``n`` next ones in the same round trip (never
        blocks: an empty list means nothing was ready)."""
        items = [P.done(self.config, lease, None, result, result_ttl)]
        flags, got = self._do(P.complete(self.config, items, P.count(n), lease_for))
        return flags[0], got.items if got else []

    def complete_many_and_lease(self, leases: Sequence[Lease | str], *, n: int,
                                lease_for: float | None = None
                                ) -> tuple[list[bool], list[Lease]]:
        """:meth:`complete_many` (up to 1000) and a lease of up to ``n`` next items, in one
        round trip (never blocks)."""
        items = [P.done(self.config, x, None, None, None) for x in leases]
        flags, got = self._do(P.complete(self.config, items, P.count(n), lease_for))
        return flags, got.items if got else []

    def extend(self, lease: Lease | str, seconds: float | None = None, *,
               token: str | None = None) -> bool:
        """Move the lease's deadline to now + ``seconds`` (default: the queue's lease).
        False once the lease is no longer the item's current one."""
        return self.extend_many([lease], seconds, token=token)[0]

    def extend_many(self, leases: Sequence[Lease | str], seconds: float | None = None, *,
                    token: str | None = None) -> list[bool]:
        """:meth:`extend` for many leases in one round trip."""
        got = self._do(P.extend(self.config, [P.fenced(x, token) for x in leases], seconds))
        return [d > 0 for d in got]

    def fail(self, lease: Lease | str, *, error: object = "", retry_in: float | None = None,
             token: str | None = None) -> FailOutcome:
        """Record a failed attempt: retry after ``retry_in`` seconds (default: the backoff) or,
        at ``max_attempts``, dead-letter the item with ``error`` as its last error."""
        one = P.failure(self.config, lease, token, error, retry_in)
        return self._do(P.fail(self.config, [one]))[0]

    def requeue(self, lease: Lease | str, delay: float = 0, *, token: str | None = None,
                data: Any = P.KEEP) -> bool:
        """Give a leased item back (after ``delay`` seconds, with a new payload if ``data`` is
        given) without counting an attempt. A Lease (or id and token) is fenced: False once it
        is not the item's current lease; a bare id gives back whatever lease the item has."""
        one = P.giveback(self.config, lease, token, delay, data)
        return self._do(P.requeue(self.config, [one]))[0]

    # ------------------------------------------------------------------------------ inspect

    def state(self, id: str) -> ItemState:
        """Where an item is, its attempts, deadline or due time, last error and kept result."""
        return self._do(P.state(self.config, id))

    def stats(self) -> Stats:
        """Pending, delayed, leased and dead counts and lifetime counters, in one round trip."""
        return self._do(P.stats(self.config))

    def peek(self, n: int = 10, *, which: str = "pending", start: int = 0) -> list[Peeked]:
        """Items of one set (pending, delayed, leased, dead) in order, without leasing them."""
        return self._do(P.peek(self.config, which, start, n))[1]

    def remove(self, id: str) -> bool:
        """Delete an item in any state; its lease holder can no longer finish it."""
        return self.remove_many([id])[0]

    def remove_many(self, ids: Iterable[str]) -> list[bool]:
        checked = P.ids(ids)
        out: list[bool] = []
        for i in range(0, len(checked), CHUNK):
            chunk = self._do(P.remove(self.config, checked[i : i + CHUNK]))
            out.extend(chunk)
        return out

    def purge(self) -> int:
        """Delete every item of the queue (lifetime counters stay); returns how many."""
        return self._do(P.purge(self.config))

    def sweep(self, limit: int = 1000) -> tuple[int, int]:
        """Promote every due delayed item and reclaim every expired lease now, ``limit`` per
        round trip; returns (promoted, reclaimed). Never needed for correctness."""
        promoted = reclaimed = 0
        while True:
            p, r = self._do(P.sweep(self.config, limit))
            promoted, reclaimed = promoted + p, reclaimed + r
            if p < limit and r < limit:
                return promoted, reclaimed

    # ------------------------------------------------------------------------------ dead letters

    def dead(self, n: int = 100, *, start: int = 0) -> tuple[int, list[Peeked]]:
        """A page of dead letters, oldest first, and their total count."""
        return self._do(P.peek(self.config, "dead", start, n))

    def dead_requeue(self, ids: Iterable[str] | None = None) -> int:
        """Move the given dead letters (all when None) back to pending, attempts reset."""
        return self._dead_op("dead_requeue", ids)

    def dead_purge(self, ids: Iterable[str] | None = None) -> int:
        """Delete the given dead letters (all when None)."""
        return self._dead_op("dead_purge", ids)

    def _dead_op(self, script: str, ids: Iterable[str] | None) -> int:
        if ids is not None:
            checked = P.ids(ids)
            return sum(self._do(P.dead_op(self.config, script, checked[i : i + CHUNK], CHUNK))
                       for i in range(0, len(checked), CHUNK))
        total = 0
        while (moved := self._do(P.dead_op(self.config, script, None, CHUNK))) > 0:
            total += moved
        return total

    def close(self) -> None:
        """Give back the connections this queue holds; close the client if this queue opened
        it (a client passed in stays open)."""
        self._chan.close()
        if self._owned:
            self.client.close()

    def __enter__(self) -> Queue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
