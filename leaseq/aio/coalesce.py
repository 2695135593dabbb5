"""Merge concurrent calls of one event-loop turn into one script call.

When many tasks call ``complete`` (or ``add``, ``lease``...) at about the same time, each call
only appends its entry to the open batch of its kind; the batch is sent once, as one script
call, when the loop gets to it (``call_soon``), or at once when it holds ``max_batch`` entries.
Every caller then gets its own part of the reply, or the batch's exception.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

from ..protocol import Call

E = TypeVar("E")
R = TypeVar("R")


class _Batch(Generic[E, R]):
    __slots__ = ("build", "entries", "futures", "orphan", "sent")

    def __init__(self, build: Callable[[list[E]], Call[list[R]]],
                 orphan: Callable[[R], None] | None) -> None:
        self.build = build
        self.orphan = orphan
        self.entries: list[E] = []
        self.futures: list[asyncio.Future[R]] = []
        self.sent = False


class Coalescer:
    """Batches entries by key; ``run`` sends one :class:`Call` and returns its raw reply."""

    def __init__(self, run: Callable[[Call[Any]], Awaitable[Any]], max_batch: int = 1000):
        self._run = run
        self._max_batch = max_batch
        self._open: dict[Hashable, _Batch[Any, Any]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(self, key: Hashable, entry: E, build: Callable[[list[E]], Call[list[R]]],
               orphan: Callable[[R], None] | None = None) -> asyncio.Future[R]:
        """Add ``entry`` to the open batch of ``key``; the future gets its result. A result
        whose caller was cancelled meanwhile goes to ``orphan`` (e.g. to give leases back)."""
        loop = asyncio.get_running_loop()
        batch: _Batch[E, R] | None = self._open.get(key)
        if batch is None:
            batch = _Batch(build, orphan)
            self._open[key] = batch
            loop.call_soon(self._flush, key, batch)
        fut: asyncio.Future[R] = loop.create_future()
        batch.entries.append(entry)
        batch.futures.append(fut)
        if len(batch.entries) >= self._max_batch:
            self._flush(key, batch)
        return fut

    def _flush(self, key: Hashable, batch: _Batch[Any, Any]) -> None:
        if self._open.get(key) is batch:
            del self._open[key]
        if batch.sent:
            return
        batch.sent = True
        task = asyncio.ensure_future(self._send(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: _Batch[Any, R]) -> None:
        try:
            call = batch.build(batch.entries)
            results = call.parse(await self._run(call))
        except BaseException as exc:  # every waiter must hear of it, even of a cancellation
            for fut in batch.futures:
                if not fut.done():
                    fut.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for fut, result in zip(batch.futures, results, strict=True):
            if not fut.done():
                fut.set_result(result)
            elif batch.orphan is not None:
                batch.orphan(result)

    async def drain(self) -> None:
        """Wait for every batch already sent."""
        for key, batch in list(self._open.items()):
            self._flush(key, batch)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
