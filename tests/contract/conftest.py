"""The contract suite's fixture: one queue API, run as {sync, async} x {valkey, redis, cluster}.

``make_queue(**settings)`` returns a ``leaseq.Queue`` (face "sync") or a ``leaseq.aio.Queue``
driven through :class:`Blocking` (face "async"), so every contract test is written once and runs
against both faces.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import leaseq
import leaseq.aio
from leaseq.keys import QueueKeys


class Blocking:
    """Runs each coroutine method of an asyncio queue to completion on one private loop."""

    def __init__(self, queue: leaseq.aio.Queue, loop: asyncio.AbstractEventLoop) -> None:
        self._queue = queue
        self._loop = loop

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._queue, name)
        if not callable(attr) or not asyncio.iscoroutinefunction(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._loop.run_until_complete(attr(*args, **kwargs))

        return call


class Faces:
    """Builds queues of one face on one server and cleans up after the test."""

    def __init__(self, face: str, server: Any, name: str) -> None:
        self.face = face
        self.server = server
        self.name = name
        self.loop = asyncio.new_event_loop() if face == "async" else None
        self.raw = server.client()  # a sync client to look at keys and move the clock
        self._async: list[Any] = []

    def make(self, name: str | None = None, **settings: Any) -> Any:
        name = name or self.name
        if self.loop is None:
            return leaseq.Queue(name, self.server.client(), **settings)

        async def build() -> leaseq.aio.Queue:
            q = leaseq.aio.Queue(name, self.server.async_client(), **settings)
            self._async.append(q)
            return q

        return Blocking(self.loop.run_until_complete(build()), self.loop)

    def advance(self, seconds: float, name: str | None = None) -> None:
        """Move the queue's clock forward without sleeping."""
        meta = QueueKeys.of(name or self.name).meta
        self.raw.hincrby(meta, "clock_offset", round(seconds * 1000))

    def close(self) -> None:
        if self.loop is not None:
            for q in self._async:
                self.loop.run_until_complete(q.close())
                self.loop.run_until_complete(q.client.aclose())
            self.loop.close()


@pytest.fixture(params=["sync", "async"])
def face(request: pytest.FixtureRequest, server: Any, queue_name: str) -> Iterator[Faces]:
    f = Faces(request.param, server, queue_name)
    yield f
    f.close()


@pytest.fixture
def make_queue(face: Faces) -> Callable[..., Any]:
    return face.make
