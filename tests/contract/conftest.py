"""The contract suite's fixture: one queue API, run as {sync, async} x {valkey, redis, cluster,
valkey-acl, redis-tls}.

``make_queue(**settings)`` returns a ``leaseq.Queue`` (face "sync") or a ``leaseq.aio.Queue``
driven through :class:`Blocking` (face "async"), so every contract test is written once and runs
against both faces. ``valkey-acl`` runs the queues as the least-privilege worker user of
docs/security.md (key pattern ``leaseq:{t-*}:*``, the family of the suite's queue names);
``redis-tls`` runs them over ``rediss://`` against Debian's redis-server with certificates made
here. The test's own look at the keys (``face.raw``) uses an unrestricted client.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import leaseq
import leaseq.aio
from leaseq.keys import QueueKeys
from leaseq.server.process import ServerProcess
from tests.conftest import _FIXTURE_FOR_KIND, SERVER_KINDS, ServerTarget
from tests.security.test_acl import SCRIPT_COMMANDS

CONTRACT_KINDS = (*SERVER_KINDS, "valkey-acl", "redis-tls")


class AclTarget(ServerTarget):
    """Queue clients log in as a worker user confined to ``leaseq:{t-*}:*``."""

    def __init__(self, backend: ServerProcess) -> None:
        super().__init__("valkey-acl", backend)
        self.user, self.password = f"contract-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
        backend.client().execute_command(
            "ACL", "SETUSER", self.user, "reset", "on", f">{self.password}",
            "~leaseq:{t-*}:*", "resetchannels", "-@all", "+fcall", "+evalsha", "+eval", "+bzpopmin",
            "+ping", *SCRIPT_COMMANDS)

    def client(self, **kw: Any) -> Any:
        return super().client(username=self.user, password=self.password, **kw)

    def async_client(self, **kw: Any) -> Any:
        return super().async_client(username=self.user, password=self.password, **kw)

    def admin(self) -> Any:
        return super().client()

    def flushall(self) -> None:
        self.admin().flushall()

    def close(self) -> None:
        super().close()
        with self.backend.client() as c:
            c.execute_command("ACL", "DELUSER", self.user)


class TlsTarget(ServerTarget):
    """Queue clients connect over TLS, checking the server's certificate against the test CA."""

    def __init__(self, backend: ServerProcess, port: int, ca: Path) -> None:
        super().__init__("redis-tls", backend)
        self.tls = {"port": port, "ssl": True, "ssl_ca_certs": str(ca)}
        self.ca = ca

    @property
    def url(self) -> str:
        return f"rediss://127.0.0.1:{self.tls['port']}/0?ssl_ca_certs={self.ca}"

    def client(self, **kw: Any) -> Any:
        return super().client(**self.tls, **kw)

    def async_client(self, **kw: Any) -> Any:
        return super().async_client(**self.tls, **kw)


@pytest.fixture(params=CONTRACT_KINDS)
def server(request: pytest.FixtureRequest) -> Iterator[ServerTarget]:
    """The root ``server`` fixture plus ``valkey-acl`` and ``redis-tls`` (contract suite only)."""
    kind: str = request.param
    target: ServerTarget
    if kind == "valkey-acl":
        target = AclTarget(request.getfixturevalue("valkey_server"))
    elif kind == "redis-tls":
        target = TlsTarget(*request.getfixturevalue("redis_tls_server"))
    else:
        target = ServerTarget(kind, request.getfixturevalue(_FIXTURE_FOR_KIND[kind]))
    yield target
    target.close()


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
        # a sync client to look at keys and move the clock (never the confined ACL user)
        self.raw = server.admin() if isinstance(server, AclTarget) else server.client()
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
