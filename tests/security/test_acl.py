"""Least-privilege ACL users (docs/security.md), on a real server: every script touches only
keys of its own queue (Redis checks each key a script touches against the user's patterns)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis

import leaseq
import leaseq.aio
from leaseq import FailOutcome, State

pytestmark = pytest.mark.parametrize("server", ["valkey", "redis"], indirect=True)


SCRIPT_COMMANDS = [
    "+time",
    "+get",
    "+set",
    "+del",
    "+unlink",
    "+pexpire",
    "+hget",
    "+hmget",
    "+hset",
    "+hdel",
    "+hexists",
    "+hlen",
    "+hgetall",
    "+hincrby",
    "+zadd",
    "+zrem",
    "+zcard",
    "+zcount",
    "+zscore",
    "+zrange",
    "+zrangebyscore",
    "+zpopmin",
    "+zremrangebyscore",
    "+zremrangebyrank",
]


def worker_acl(queue: str, user: str, password: str) -> list[str]:
    """The ACL SETUSER arguments of docs/security.md for a producer/worker of one queue."""
    return [
        user,
        "reset",
        "on",
        f">{password}",
        f"~leaseq:{{{queue}}}:*",
        "resetchannels",
        "-@all",
        "+fcall",
        "+evalsha",
        "+eval",
        "+bzpopmin",
        "+ping",
        *SCRIPT_COMMANDS,
    ]


def make_user(server: Any, queue: str, user: str) -> redis.Redis:
    admin = server.client()
    admin.execute_command("ACL", "SETUSER", *worker_acl(queue, user, "s3cret-" + user))
    port = server.backend.port
    return redis.Redis(port=port, username=user, password="s3cret-" + user)


def test_every_operation_runs_under_the_queue_scoped_user(server: Any, queue_name: str) -> None:
    client = make_user(server, queue_name, f"w-{queue_name[-8:]}")
    q = leaseq.Queue(queue_name, client, lease=5, max_attempts=2)
    assert q.add({"n": 1}, id="a") and q.add("b", id="b", delay=0.2, priority=3)
    q.add_many([leaseq.Item(i) for i in range(3)])
    lease = q.lease(timeout=1)
    assert lease is not None and q.extend(lease, 10)
    assert q.fail(lease, error="boom", retry_in=0) is FailOutcome.RETRIED
    again = q.lease(timeout=1)
    assert q.requeue(again)
    third = q.lease(timeout=1)
    assert q.complete(third, result={"ok": True})
    assert q.state(third.id).state is State.COMPLETED
    later = q.lease(timeout=2)  # blocks on the wake key (BZPOPMIN) under the same user
    assert later is not None
    assert q.fail(later, error="x", retry_in=0)
    assert q.stats().counter("completed") == 1
    assert q.peek(10) and q.dead()[0] >= 0
    q.sweep()
    q.dead_requeue()
    q.dead_purge()
    q.remove("b")
    assert q.purge() >= 0

    async def aio() -> None:
        ac = redis.asyncio.Redis(
            port=server.backend.port,
            username=client.connection_pool.connection_kwargs["username"],
            password=client.connection_pool.connection_kwargs["password"],
        )
        aq = leaseq.aio.Queue(queue_name, ac)
        await aq.add("async")
        got = await aq.lease(timeout=1)
        assert got is not None and await aq.complete(got)
        await aq.close()
        await ac.aclose()

    asyncio.run(aio())
    client.close()


def test_scoped_user_cannot_touch_other_keys(server: Any, queue_name: str) -> None:
    client = make_user(server, queue_name, f"x-{queue_name[-8:]}")
    admin = server.client()
    admin.set("secret:thing", "s")
    admin.hset("leaseq:{other-queue}:meta", "seq", 1)
    for call in (
        lambda: client.get("secret:thing"),
        lambda: client.keys("*"),
        lambda: client.hget("leaseq:{other-queue}:meta", "seq"),
        lambda: client.lpush(f"leaseq:{{{queue_name}}}:x", 1),  # not a granted command
        lambda: client.flushall(),
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            call()
    with pytest.raises(leaseq.PermissionDenied):
        leaseq.Queue("other-queue", client).stats()  # scripts on another queue's keys: refused
    # a script cannot be pointed at foreign keys either: Redis checks the declared keys
    with pytest.raises(redis.exceptions.NoPermissionError):
        client.eval("return redis.call('GET', KEYS[1])", 1, "secret:thing")
    admin.delete("secret:thing", "leaseq:{other-queue}:meta")
    client.close()
