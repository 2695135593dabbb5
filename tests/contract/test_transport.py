"""The fast call path (leaseq/transport.py): held connections, NOSCRIPT, dead sockets, retries,
errors raised once, connections given back, forks."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import pytest
import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

import leaseq
import leaseq.aio
from leaseq import keys, scripts
from leaseq.errors import LeaseqError
from leaseq.transport import AsyncChannel, Channel

pytestmark = pytest.mark.parametrize("server", ["valkey", "redis"], indirect=True)


def _script_calls(raw: redis.Redis) -> int:
    stats = raw.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0))
               for c in ("evalsha", "eval", "fcall"))


def _kill_clients(raw: redis.Redis, name: str) -> int:
    killed = 0
    for c in raw.client_list():
        if c.get("name") == name:
            killed += int(raw.execute_command("CLIENT", "KILL", "ID", c["id"]))
    return killed


def test_sync_queue_uses_held_connections_and_gives_them_back(server: Any,
                                                              queue_name: str) -> None:
    client = redis.Redis.from_url(server.url)
    q = leaseq.Queue(queue_name, client=client)
    assert isinstance(q._chan, Channel) and q._chan._pool is client.connection_pool
    q.add_many(range(5))
    for _ in range(5):
        lease = q.lease(block=False)
        assert lease is not None and q.complete(lease)
    pool = client.connection_pool
    assert len(q._chan._held) == 1  # one caller at a time: one connection, reused
    assert len(pool._in_use_connections) == 1
    q.close()
    assert not q._chan._held and not pool._in_use_connections
    client.close()


def test_sync_fast_path_survives_script_flush_and_a_killed_connection(server: Any,
                                                                      queue_name: str) -> None:
    raw = server.client()
    client = redis.Redis.from_url(server.url, client_name="leaseq-fast",
                                  retry=Retry(NoBackoff(), 2))
    q = leaseq.Queue(queue_name, client=client)
    q.add_many(range(3))
    raw.script_flush()  # NOSCRIPT on the held connection: EVAL, then cached again
    a = q.lease(block=False)
    assert a is not None and a.data == 0
    assert _kill_clients(raw, "leaseq-fast") >= 1  # the held socket is now dead
    assert q.complete(a)  # the client retries: the call is repeated through the full path
    b = q.lease(block=False)
    assert b is not None and b.data == 1
    assert q.stats().counter("completed") == 1
    q.close()
    client.close()


def test_a_connection_closed_while_idle_is_replaced_even_without_retries(
        server: Any, queue_name: str, arun: Any) -> None:
    """The server closes a held connection while it sits idle (CLIENT KILL here; its
    ``timeout`` or a restart alike): the next call sees it before sending and reconnects, so a
    client without retries gets no spurious error (as with redis-py's own pool)."""
    raw = server.client()
    client = redis.Redis.from_url(server.url, client_name="leaseq-noretry",
                                  retry=Retry(NoBackoff(), 0))
    q = leaseq.Queue(queue_name, client=client)
    q.add(1)
    lease = q.lease(block=False)
    assert lease is not None
    old = q._chan._held[0]._sock
    assert _kill_clients(raw, "leaseq-noretry") >= 1
    time.sleep(0.05)  # the close reaches the client's socket
    assert q.complete(lease)
    assert q._chan._held and q._chan._held[0]._sock is not old
    q.close()
    client.close()

    async def go() -> None:
        aclient = redis.asyncio.Redis.from_url(server.url, client_name="leaseq-anoretry",
                                               retry=AsyncRetry(NoBackoff(), 0))
        aq = leaseq.aio.Queue(queue_name, client=aclient)
        await aq.add(2)
        got = await aq.lease(block=False)
        assert got is not None
        assert _kill_clients(raw, "leaseq-anoretry") >= 1
        await asyncio.sleep(0.05)  # the close reaches the client's socket
        assert await aq.complete(got)
        await aq.close()
        await aclient.aclose()

    arun(go())


def test_a_queue_opened_from_a_url_retries_after_a_dead_connection(server: Any,
                                                                   queue_name: str) -> None:
    raw = server.client()
    q = leaseq.Queue(queue_name, url=f"{server.url}?client_name=leaseq-url")  # leaseq's client
    q.add(1)
    lease = q.lease(block=False)
    assert lease is not None
    assert _kill_clients(raw, "leaseq-url") >= 1
    assert q.complete(lease)  # retried (redis-py's from_url alone would not retry)
    q.close()


def test_a_script_error_on_the_fast_path_is_mapped_and_the_script_runs_once(
        server: Any, queue_name: str) -> None:
    raw = server.client()
    q = leaseq.Queue(queue_name, client=redis.Redis.from_url(server.url))
    q.add("x", id="a")
    raw.hset(keys.QueueKeys.of(queue_name).items, "a", "not-a-record")
    before = _script_calls(raw)
    with pytest.raises(LeaseqError) as info:
        q.lease(block=False)
    assert "@user_" not in str(info.value) and "script:" not in str(info.value)
    assert _script_calls(raw) - before == 1
    q.close()


def test_a_forked_child_opens_its_own_connection(server: Any, queue_name: str) -> None:
    client = redis.Redis.from_url(server.url)
    q = leaseq.Queue(queue_name, client=client)
    q.add_many(range(2))
    parent_conn = q._chan._held[0]
    pid = os.fork()
    if pid == 0:  # child: must not touch the parent's socket
        code = 1
        try:
            got = q.lease(block=False)
            code = 0 if got is not None and q._chan._held[0] is not parent_conn else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    got = q.lease(block=False)  # the parent's connection is still in step
    assert got is not None and q._chan._held[0] is parent_conn
    assert q.stats().leased == 2
    q.close()


def test_cluster_and_single_connection_clients_take_the_full_path(server: Any) -> None:
    single = redis.Redis.from_url(server.url, single_connection_client=True)
    assert Channel(single)._pool is None
    assert AsyncChannel(redis.asyncio.Redis.from_url(server.url,
                                                     single_connection_client=True))._pool is None
    resp3 = redis.Redis.from_url(server.url, protocol=3)
    assert Channel(resp3)._pool is None
    single.close()
    resp3.close()


def test_async_fast_path_concurrency_flush_kill_and_close(server: Any, queue_name: str,
                                                          arun: Any) -> None:
    raw = server.client()

    async def go() -> None:
        client = redis.asyncio.Redis.from_url(server.url, client_name="leaseq-afast",
                                              retry=AsyncRetry(NoBackoff(), 2))
        q = leaseq.aio.Queue(queue_name, client=client)
        assert isinstance(q._chan, AsyncChannel) and q._chan._pool is not None
        await q.add_many(range(200))
        raw.script_flush()
        got = await asyncio.gather(*(q.lease(block=False) for _ in range(200)))
        assert sorted(x.data for x in got if x is not None) == list(range(200))
        _kill_clients(raw, "leaseq-afast")
        assert all(await asyncio.gather(*(q.complete(x) for x in got if x is not None)))
        assert (await q.stats()).counter("completed") == 200
        pool = client.connection_pool
        await q.close()
        assert not q._chan._held and not pool._in_use_connections
        await client.aclose()

    arun(go())


def test_script_reply_is_identical_on_both_paths(server: Any, queue_name: str) -> None:
    """The same call through the fast path and through execute_command gives the same reply."""
    client = redis.Redis.from_url(server.url)
    k = keys.QueueKeys.of(queue_name)
    chan = Channel(client)
    fast = chan.run("stats", k.all_fixed, [])
    slow = scripts.run(client, "stats", k.all_fixed, [])
    assert fast[1:] == slow[1:] and isinstance(fast, list)  # (0: the server time)
    chan.close()
    client.close()


def _calls(raw: redis.Redis, command: str) -> int:
    return int(raw.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0))


def test_engine_calls_run_as_functions_and_survive_function_flush(server: Any,
                                                                  queue_name: str) -> None:
    raw = server.client()
    q = leaseq.Queue(queue_name, client=redis.Redis.from_url(server.url))
    q.add_many(range(4))
    raw.config_resetstat()
    a = q.lease(block=False)
    assert a is not None
    raw.function_flush()  # the library is gone: the next call loads it again
    assert q.complete(a)
    b = q.lease(block=False)
    assert b is not None and b.data == 1 and q.complete(b)
    assert q._chan.fcall
    assert _calls(raw, "fcall") >= 3 and _calls(raw, "evalsha") == 0
    lib = scripts.library()
    assert raw.function_list(library=lib.name)  # loaded again
    q.close()


def test_read_only_functions_are_flagged_no_writes(server: Any) -> None:
    raw = server.client()
    assert scripts.load_library(raw)
    lib = scripts.library()
    listed = raw.function_list(library=lib.name)[0]
    entries = {}
    for fn in listed[listed.index(b"functions") + 1]:
        fields = dict(zip(fn[::2], fn[1::2], strict=True))
        entries[fields[b"name"].decode()] = {f.decode() for f in fields[b"flags"]}
    assert set(entries) == set(lib.functions.values())
    for name, fn in lib.functions.items():
        assert ("no-writes" in entries[fn]) == (name in scripts.READ_ONLY)


@pytest.mark.parametrize("denied", ["+fcall", "+function|load"])
def test_without_fcall_or_function_load_the_queue_keeps_to_evalsha(
        server: Any, queue_name: str, denied: str) -> None:
    """An ACL user that may not FCALL, or may not load the library on a server that lacks it,
    still gets every call done, by EVALSHA."""
    raw = server.client()
    raw.function_flush()
    user = f"u{abs(hash((queue_name, denied))) % 10**8}"
    grants = ["+@all", f"-{denied[1:]}"]
    raw.acl_setuser(user, enabled=True, passwords=["+pw"], keys=["leaseq:*"], commands=grants)
    try:
        client = redis.Redis(host="127.0.0.1", port=server.backend.port, username=user,
                             password="pw")
        q = leaseq.Queue(queue_name, client=client)
        q.add_many(range(3))
        got = q.lease_many(3, block=False)
        assert [x.data for x in got] == [0, 1, 2]
        assert q.complete_many(got) == [True, True, True]
        assert not q._chan.fcall
        assert q.stats().counter("completed") == 3
        q.close()
        client.close()
    finally:
        raw.acl_deluser(user)


def test_queues_of_one_client_share_its_connections(server: Any, queue_name: str,
                                                     arun: Any) -> None:
    """More queues than the pool has connections: they share the client's channel, so the
    connections held stay as many as the calls in flight."""
    pool = redis.ConnectionPool.from_url(server.url, max_connections=4)
    client = redis.Redis(connection_pool=pool)
    queues = [leaseq.Queue(f"{queue_name}-{i}", client=client) for i in range(50)]
    for q in queues:
        q.add("x")
        assert q.stats().pending == 1
    assert len({id(q._chan) for q in queues}) == 1
    assert len(pool._in_use_connections) == 1
    client.close()

    async def go() -> None:
        apool = redis.asyncio.ConnectionPool.from_url(server.url, max_connections=4)
        aclient = redis.asyncio.Redis(connection_pool=apool)
        aqueues = [leaseq.aio.Queue(f"{queue_name}-{i}", client=aclient) for i in range(50)]
        stats = await asyncio.gather(*(q.stats() for q in aqueues[:3]))
        assert [s.pending for s in stats] == [1, 1, 1]
        for q in aqueues:
            assert (await q.stats()).pending == 1
        assert len({id(q._chan) for q in aqueues}) == 1
        assert len(apool._in_use_connections) <= 3
        await aclient.aclose()

    arun(go())
