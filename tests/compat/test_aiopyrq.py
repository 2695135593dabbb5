# ruff: noqa: E501, I001
# (the README samples below keep their long lines and their import blocks as written)
"""leaseq.compat.aiopyrq: the seed README's samples (differing only in the import line, the
server address and ``await``), Queue/UniqueQueue/Pool semantics on the queue clock, and
``synced_slaves_*`` against a real replica started here.

Semantics tests run on Valkey 9 and Redis 7 (``srv``); the samples and the WAIT tests run on a
primary + replica pair of each kind (``pair``).
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio
from redis.asyncio.connection import ConnectionPool

from leaseq.compat.aiopyrq import (
    AioPyRqError,
    NotEnoughSyncedSlavesError,
    Pool,
    Queue,
    UniqueQueue,
)
from leaseq.errors import InvalidArgument
from leaseq.server.process import ServerProcess, ServerProcessError, find_binary

pytestmark = pytest.mark.timeout(60)


# -- fixtures and helpers ----------------------------------------------------------------------


@pytest.fixture(params=["valkey_server", "redis_server"], ids=["valkey", "redis"])
def srv(request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue(request.param)


def _link_up(primary: ServerProcess, replica: ServerProcess, timeout: float = 15.0) -> None:
    p, r = primary.client(), replica.client()
    try:
        deadline = time.monotonic() + timeout
        while True:
            link = r.info("replication").get("master_link_status")
            slaves = p.info("replication").get("connected_slaves", 0)
            if link == "up" and slaves >= 1 and p.execute_command("WAIT", 1, 1000) >= 1:
                return
            if time.monotonic() > deadline:
                raise AssertionError("the replica never came up")
            time.sleep(0.02)
    finally:
        p.close()
        r.close()


class Pair:
    """A primary and one replica of it (``replicaof``), link up."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.primary = ServerProcess(kind=kind)  # type: ignore[arg-type]
        self.replica: ServerProcess | None = None

    def start(self) -> Pair:
        self.primary.start()
        self.replica = ServerProcess(kind=self.kind,  # type: ignore[arg-type]
                                     replicaof=(self.primary.host, self.primary.port))
        self.replica.start()
        _link_up(self.primary, self.replica)
        return self

    @property
    def url(self) -> str:
        return f"redis://{self.primary.host}:{self.primary.port}"

    def close(self) -> None:
        if self.replica is not None:
            self.replica.close()
        self.primary.close()


@pytest.fixture(scope="module", params=["valkey", "redis"])
def pair(request: pytest.FixtureRequest) -> Iterator[Pair]:
    kind: str = request.param
    if find_binary(kind) is None:  # type: ignore[arg-type]
        pytest.skip(f"no {kind} server binary")
    made = Pair(kind)
    try:
        made.start()
    except ServerProcessError as exc:
        made.close()
        pytest.skip(f"{kind} replica pair did not start: {exc}")
    yield made
    made.close()


async def _move_clock(client: Any, name: str, seconds: float) -> None:
    """Move the queue's clock (meta field clock_offset, in ms) without sleeping."""
    await client.hincrby(f"leaseq:{{{name}}}:meta", "clock_offset", round(seconds * 1000))


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


# -- the README samples (seed 003) -------------------------------------------------------------
# Each block between the "sample" markers is the README's code with only the import line, the
# server address and ``await`` changed. The samples never close their pool or queue, so redis-py
# warns when it finds their connections after the event loop is gone: that warning is expected.
sample = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@sample
def test_readme_queue_example(pair: Pair, queue_name: str) -> None:
    QUEUE_NAME, COUNT_OF_SLAVES, TIMEOUT, value = queue_name, 1, 1, "item-1"
    # --- sample ---
    import asyncio
    from redis.asyncio.connection import ConnectionPool
    from leaseq.compat.aiopyrq import Queue

    async def go():
        redis_connection_pool = ConnectionPool.from_url(pair.url, encoding='utf-8', decode_responses=True)
        queue = Queue(QUEUE_NAME, redis_connection_pool, synced_slaves_enabled=True, synced_slaves_count=COUNT_OF_SLAVES, synced_slaves_timeout=TIMEOUT)

        await queue.add_item(value) # adding item

        list_of_values = await queue.get_items(10) # getting items
        await queue.ack_items(list_of_values) # acknowledging items or
        await queue.reject_items(list_of_values) # rejecting items to the queue

    asyncio.run(go())
    # --- end of sample ---
    gc.collect()  # the sample's unclosed clients go now, under this test's warning filter
    _assert_empty(pair, queue_name)


@sample
def test_readme_unique_queue_example(pair: Pair, queue_name: str) -> None:
    QUEUE_NAME, COUNT_OF_SLAVES, TIMEOUT, value = queue_name, 1, 1, "item-1"
    # --- sample ---
    import asyncio
    from redis.asyncio.connection import ConnectionPool
    from leaseq.compat.aiopyrq import UniqueQueue

    async def go():
        redis_connection_pool = ConnectionPool.from_url(pair.url, encoding='utf-8', decode_responses=True)
        queue = UniqueQueue(QUEUE_NAME, redis_connection_pool, synced_slaves_enabled=True, synced_slaves_count=COUNT_OF_SLAVES, synced_slaves_timeout=TIMEOUT)

        await queue.add_item(value) # adding item

        list_of_values = await queue.get_items(10) # getting items
        await queue.ack_items(list_of_values) # acknowledging items or
        await queue.reject_items(list_of_values) # rejecting items to the queue

    asyncio.run(go())
    # --- end of sample ---
    gc.collect()  # the sample's unclosed clients go now, under this test's warning filter
    _assert_empty(pair, queue_name)


@sample
def test_readme_rollback_counter_example(pair: Pair, queue_name: str) -> None:
    QUEUE_NAME, COUNT_OF_SLAVES, TIMEOUT, value = queue_name, 1, 1, "item-1"
    # --- sample ---
    import asyncio
    from redis.asyncio.connection import ConnectionPool
    from leaseq.compat.aiopyrq import UniqueQueue

    async def go():
        redis_connection_pool = ConnectionPool.from_url(pair.url, encoding='utf-8', decode_responses=True)
        queue = UniqueQueue(QUEUE_NAME, redis_connection_pool, synced_slaves_enabled=True, synced_slaves_count=COUNT_OF_SLAVES, synced_slaves_timeout=TIMEOUT, max_retry=10, max_timeout=180)

        await queue.add_item(value) # adding item

        list_of_values = await queue.get_items(10) # getting items
        for item in list_of_values:
            # if there are too many rejects for given item it deleted
            if await queue.can_rollback_item(item):
                await queue.reject_item(item)


        for item in list_of_values:
            # reset counter and timeout for all item
            await queue.reset_blocked_item(item)


    asyncio.run(go())
    # --- end of sample ---
    gc.collect()  # the sample's unclosed clients go now, under this test's warning filter

    async def check() -> None:
        client = redis.asyncio.Redis.from_url(pair.url)
        q = UniqueQueue(queue_name, client)
        assert await q.get_count() == 1  # rejected: waiting again
        assert await q.get_items(10) == [value]
        assert await client.hlen(f"leaseq:{{{queue_name}}}:aiopyrq:rollbacks") == 0  # reset
        assert await q.ack_item(value)
        await q.close()
        await client.aclose()

    run(check())


@sample
def test_readme_pool_example(pair: Pair, queue_name: str) -> None:
    POOL_NAME, COUNT_OF_SLAVES, TIMEOUT, value = queue_name, 1, 1, "item-1"
    # --- sample ---
    import asyncio
    from redis.asyncio.connection import ConnectionPool  # (missing from the README's sample)
    from leaseq.compat.aiopyrq import Pool

    async def go():
        redis_connection_pool = ConnectionPool.from_url(pair.url, encoding='utf-8', decode_responses=True)
        queue = Pool(POOL_NAME, redis_connection_pool, synced_slaves_enabled=True, synced_slaves_count=COUNT_OF_SLAVES, synced_slaves_timeout=TIMEOUT)

        await queue.add_item(value) # adding item

        list_of_values = await queue.get_items(10) # getting items
        await queue.ack_items(list_of_values) # acknowledging items
        await queue.remove_items(list_of_values) # removing items from the pool

    asyncio.run(go())
    # --- end of sample ---
    gc.collect()  # the sample's unclosed clients go now, under this test's warning filter
    _assert_empty(pair, queue_name)


def _assert_empty(pair: Pair, name: str) -> None:
    """Nothing waiting or held, on the primary and (synced) on the replica."""
    assert pair.replica is not None
    for server in (pair.primary, pair.replica):
        c = server.client()
        try:
            assert c.exists(f"leaseq:{{{name}}}:meta") == 1  # the writes reached it
            for part in ("pending", "delayed", "leased", "items"):
                assert c.exists(f"leaseq:{{{name}}}:{part}") == 0, (server, part)
        finally:
            c.close()


# -- synced_slaves_*: WAIT against a real replica ----------------------------------------------


def test_synced_writes_with_enough_replicas(pair: Pair, queue_name: str) -> None:
    async def go() -> None:
        pool = ConnectionPool.from_url(pair.url, decode_responses=True)
        q = Queue(queue_name, pool, synced_slaves_enabled=True, synced_slaves_count=1,
                  synced_slaves_timeout=5)
        assert pair.replica is not None
        replica = pair.replica.client()
        key = f"leaseq:{{{queue_name}}}:pending"
        for i in range(20):  # every write is on the replica when the call returns
            assert await q.add_item(f"v{i}")
            assert replica.zcard(key) == i + 1
        assert await q.get_items(5) == [f"v{i}" for i in range(5)]
        assert replica.zcard(f"leaseq:{{{queue_name}}}:leased") == 5
        assert await q.ack_items([f"v{i}" for i in range(5)]) == 5
        assert replica.zcard(f"leaseq:{{{queue_name}}}:leased") == 0
        # Concurrent writers on one facade share its connection; each still waits.
        results = await asyncio.gather(*(q.add_item(f"w{i}") for i in range(30)))
        assert all(results) and replica.zcard(key) == 45
        replica.close()
        await q.close()
        await pool.aclose()

    run(go())


def test_wait_runs_on_the_connection_that_wrote(pair: Pair, queue_name: str) -> None:
    """The replica is frozen (DEBUG SLEEP): a WAIT on the writing connection must wait for it;
    a WAIT on any other connection of the pool would return at once with 1."""
    assert pair.replica is not None
    sleeper = pair.replica.client(socket_timeout=5)
    frozen = threading.Thread(target=sleeper.execute_command, args=("DEBUG", "SLEEP", "0.6"))

    async def go() -> float:
        pool = ConnectionPool.from_url(pair.url)
        q = Queue(queue_name, pool, synced_slaves_enabled=True, synced_slaves_count=1,
                  synced_slaves_timeout=5)
        await q.get_count()  # connect first
        frozen.start()
        await asyncio.sleep(0.1)
        t0 = time.monotonic()
        assert await q.add_item("x")
        took = time.monotonic() - t0
        await q.close()
        await pool.aclose()
        return took

    took = run(go())
    frozen.join()
    sleeper.close()
    assert took >= 0.3
    replica = pair.replica.client()
    assert replica.zcard(f"leaseq:{{{queue_name}}}:pending") == 1
    replica.close()


def test_synced_writes_raise_with_too_few_replicas(pair: Pair, queue_name: str) -> None:
    async def go() -> None:
        client = redis.asyncio.Redis.from_url(pair.url)
        q = Queue(queue_name, client, synced_slaves_enabled=True, synced_slaves_count=2,
                  synced_slaves_timeout=0.1)
        with pytest.raises(NotEnoughSyncedSlavesError) as info:
            await q.add_item("x")
        assert isinstance(info.value, AioPyRqError)
        plain = Queue(queue_name, client)
        assert await plain.get_count() == 1  # the write itself happened
        with pytest.raises(NotEnoughSyncedSlavesError):
            await q.get_items(1)
        assert await plain.get_items(5) == ["x"]  # ...and get_items gave its items back
        assert await plain.ack_item("x")
        p = Pool(queue_name + "-p", client, synced_slaves_enabled=True, synced_slaves_count=2,
                 synced_slaves_timeout=0.1)
        with pytest.raises(NotEnoughSyncedSlavesError):
            await p.add_item("y")
        assert await Pool(queue_name + "-p", client).is_in_pool("y")
        await q.close()
        await p.close()
        await client.aclose()

    run(go())


def test_synced_writes_raise_when_the_replica_is_down(pair: Pair, queue_name: str) -> None:
    assert pair.replica is not None

    async def go() -> None:
        client = redis.asyncio.Redis.from_url(pair.url)
        q = UniqueQueue(queue_name, client, synced_slaves_enabled=True, synced_slaves_count=1,
                        synced_slaves_timeout=0.2)
        assert await q.add_item("before")
        pair.replica.stop()  # type: ignore[union-attr]
        with pytest.raises(NotEnoughSyncedSlavesError):
            await q.add_item("after")
        with pytest.raises(NotEnoughSyncedSlavesError):
            await q.can_rollback_item("after")
        await q.close()
        await client.aclose()

    try:
        run(go())
    finally:
        pair.replica.start()
        _link_up(pair.primary, pair.replica)


# -- Queue and UniqueQueue ---------------------------------------------------------------------


def test_queue_fifo_ack_reject(srv: Any, queue_name: str) -> None:
    async def go() -> None:
        pool = ConnectionPool.from_url(srv.url, decode_responses=True)
        a, b = Queue(queue_name, pool), Queue(queue_name, pool)
        assert await a.add_items(["x", "y", "x", {"k": [1, 2]}, 3]) == 5
        assert await a.get_count() == 5
        assert await a.get_items(2) == ["x", "y"]
        assert await a.get_count() == 3
        assert await b.get_items(1) == ["x"]  # the second copy
        # Rejected: back to its own place, i.e. the next one out.
        assert await a.reject_item("x")
        assert await b.get_items(1) == ["x"]
        assert await b.ack_items(["x", "x"]) == 2  # b held both copies
        assert not await b.ack_item("x")
        assert not await b.reject_item("nope")
        assert await a.ack_item("y")
        assert await a.get_items(10) == [{"k": [1, 2]}, 3]
        assert await a.ack_items([{"k": [1, 2]}, 3, "x"]) == 2  # "x" is not held by a
        assert await a.get_count() == 0 and await a.get_items(3) == []
        stats = await a.queue.stats()
        assert stats.leased == 0 and stats.pending == 0 and stats.dead == 0
        await a.close()
        await b.close()
        await pool.aclose()

    run(go())


def test_queue_reject_many_times_never_dead_letters(srv: Any, queue_name: str) -> None:
    async def go() -> None:
        client = redis.asyncio.Redis.from_url(srv.url)
        q = Queue(queue_name, client)
        await q.add_items(["a", "b"])
        for _ in range(12):  # max_attempts=0: attempts are counted, never limited
            assert await q.get_items(1) == ["a"]
            assert await q.reject_items(["a"]) == 1
        state = (await q.queue.peek(1))[0]
        assert state.data == "a" and state.attempts == 12
        assert await q.get_items(5) == ["a", "b"]
        assert await q.ack_items(["a", "b"]) == 2
        assert (await q.queue.stats()).dead == 0
        await q.close()
        await client.aclose()

    run(go())


def test_unique_queue_refuses_waiting_and_held_values(srv: Any, queue_name: str) -> None:
    async def go() -> None:
        client = redis.asyncio.Redis.from_url(srv.url, decode_responses=True)
        q = UniqueQueue(queue_name, client)
        assert await q.add_item("a")
        assert not await q.add_item("a")  # waiting
        assert await q.add_items(["a", "b", "b", "c"]) == 2
        assert await q.get_items(1) == ["a"]
        assert not await q.add_item("a")  # held
        assert await q.reject_item("a")
        assert not await q.add_item("a")  # waiting again
        assert await q.get_items(1) == ["a"]
        assert await q.ack_item("a")
        assert await q.add_item("a")  # done: may come again
        assert await q.get_count() == 3
        assert await q.delete_item("b") and not await q.delete_item("b")
        assert await q.get_items(5) == ["c", "a"]
        assert not await q.delete_item("c")  # held: not waiting
        await q.close()

    run(go())


def test_delete_items_removes_every_waiting_copy(srv: Any, queue_name: str) -> None:
    async def go() -> None:
        client = redis.asyncio.Redis.from_url(srv.url)
        q = Queue(queue_name, client)
        await q.add_items(["a", "b", "a", "c", "a"])
        assert await q.get_items(1) == ["a"]
        assert await q.delete_items(["a", "zz"]) == 2  # the held copy stays held
        assert await q.get_count() == 2
        assert await q.delete_item("c")
        assert await q.get_items(5) == ["b"]
        assert await q.ack_items(["a", "b"]) == 2
        assert await q.get_count() == 0
        await q.close()
        await client.aclose()

    run(go())


@pytest.mark.parametrize("spelling", ["readme", "code"])
def test_rollback_counter(srv: Any, queue_name: str, spelling: str) -> None:
    async def go() -> None:
        client = redis.asyncio.Redis.from_url(srv.url)
        if spelling == "readme":
            q = UniqueQueue(queue_name, client, max_retry=2, max_timeout=3)
        else:
            q = UniqueQueue(queue_name, client, max_retry_rollback=2, max_timeout_in_queue=3)
        assert (q.max_retry_rollback, q.max_timeout_in_queue) == (2, 3)
        other = UniqueQueue(queue_name, client, max_retry=2, max_timeout=3)
        # Three rollbacks: more than 2, but the window (3 minutes) has not passed.
        assert [await q.can_rollback_item("x") for _ in range(3)] == [True] * 3
        await _move_clock(client, queue_name, 179)
        assert await other.can_rollback_item("x")  # counters are shared, per queue
        await _move_clock(client, queue_name, 1)
        assert not await q.can_rollback_item("x")  # 5 > 2 and 3 minutes since the first
        assert not await other.can_rollback_item("x")
        assert await q.can_rollback_item("y")  # per item
        assert await q.reset_blocked_item("x")
        assert not await q.reset_blocked_item("x")
        assert await q.can_rollback_item("x")
        # Many rollbacks in a short time are fine: the limit needs both conditions.
        assert all([await q.can_rollback_item("z") for _ in range(20)])
        # An acknowledged item's counter is cleared.
        await q.add_item("z")
        assert await q.get_items(1) == ["z"]
        assert await q.ack_item("z")
        keys = await client.hkeys(f"leaseq:{{{queue_name}}}:aiopyrq:rollbacks")
        assert len(keys) == 4  # x and y (n and t each), not z
        await q.close()
        await client.aclose()

    run(go())


def test_rollback_options(srv: Any, queue_name: str) -> None:
    async def go() -> None:
        client = redis.asyncio.Redis.from_url(srv.url)
        q = Queue(queue_name, client)
        assert (q.max_retry_rollback, q.max_timeout_in_queue) == (5, 60)
        same = Queue(queue_name, client, max_retry=3, max_retry_rollback=3)
        assert same.max_retry_rollback == 3
        with pytest.raises(InvalidArgument):
            Queue(queue_name, client, max_retry=3, max_retry_rollback=4)
        with pytest.raises(InvalidArgument):
            Queue(queue_name, client, max_timeout=3, max_timeout_in_queue=4)
        with pytest.raises(TypeError):
            Queue(queue_name, client, max_retries=3)  # type: ignore[call-arg]
        with pytest.raises(InvalidArgument):
            Queue(queue_name, redis.Redis())  # a sync client
        await client.aclose()

    run(go())


def test_re_enqueue_timeout_items_is_per_item(srv: Any, queue_name: str) -> None:
    """A live consumer's old items time out even though it keeps getting new ones (in the
    original the timeout was per consumer, measured from its last get)."""

    async def go() -> None:
        client = redis.asyncio.Redis.from_url(srv.url)
        a, b, janitor = Queue(queue_name, client), Queue(queue_name, client), Queue(queue_name, client)
        await a.add_items(["1", "2", "3", "4", "5"])
        assert await a.get_items(2) == ["1", "2"]
        await _move_clock(client, queue_name, 100)
        assert await a.get_items(1) == ["3"]
        assert await janitor.re_enqueue_timeout_items(101) == 0
        assert await janitor.re_enqueue_timeout_items(50) == 2
        assert await a.get_count() == 4
        assert await b.get_items(3) == ["1", "2", "4"]  # back at their own places
        assert not await a.reject_item("1")  # a's lease is stale: refused
        assert await b.ack_item("1")
        # An item re-enqueued and taken again: the first to acknowledge it wins.
        assert await a.ack_item("2") and not await b.ack_item("2")
        assert await janitor.re_enqueue_timeout_items(50) == 0  # "3" and "4" are recent
        assert await janitor.re_enqueue_all_items() == 2
        assert await a.get_count() == 3
        assert await a.get_items(5) == ["3", "4", "5"]
        assert await a.ack_items(["3", "4", "5"]) == 3
        assert await a.get_count() == 0 and (await a.queue.stats()).leased == 0
        for q in (a, b, janitor):
            await q.close()
        await client.aclose()

    run(go())


def test_drop_timeout_items(srv: Any, queue_name: str) -> None:
    async def go() -> None:
        client = redis.asyncio.Redis.from_url(srv.url)
        a, janitor = UniqueQueue(queue_name, client), UniqueQueue(queue_name, client)
        await a.add_items(["1", "2", "3", "4"])
        assert await a.get_items(2) == ["1", "2"]
        await _move_clock(client, queue_name, 30)
        assert await a.get_items(1) == ["3"]
        assert await janitor.drop_timeout_items(20) == 2
        assert not await a.ack_item("1")  # dropped
        assert await a.add_item("1")  # gone, so it may be added again
        assert await janitor.drop_all_items() == 1  # "3"
        assert not await a.reject_item("3")
        assert await a.get_count() == 2
        stats = await a.queue.stats()
        assert (stats.leased, stats.delayed, stats.dead) == (0, 0, 0)
        assert await a.get_items(5) == ["4", "1"]
        assert await janitor.drop_all_items() == 2 and await a.get_count() == 0
        await a.close()
        await janitor.close()
        await client.aclose()

    run(go())


def test_concurrent_consumers_get_each_item_once(srv: Any, queue_name: str) -> None:
    async def go() -> None:
        pool = ConnectionPool.from_url(srv.url, decode_responses=True)
        producer = Queue(queue_name, pool)
        await producer.add_items([f"v{i}" for i in range(300)])
        consumers = [Queue(queue_name, pool) for _ in range(6)]
        seen: list[str] = []

        async def work(q: Queue) -> None:
            while got := await q.get_items(7):
                seen.extend(got)
                await asyncio.sleep(0)
                assert await q.ack_items(got) == len(got)

        await asyncio.gather(*(work(q) for q in consumers))
        assert sorted(seen) == sorted(f"v{i}" for i in range(300))
        assert await producer.get_count() == 0
        for q in [producer, *consumers]:
            await q.close()
        await pool.aclose()

    run(go())


# -- Pool --------------------------------------------------------------------------------------


def test_pool_cycle_and_reoffer_after_ack_valid_for(srv: Any, queue_name: str) -> None:
    async def go() -> None:
        client = redis.asyncio.Redis.from_url(srv.url, decode_responses=True)
        p = Pool(queue_name, client, ack_ttl=60, ack_valid_for=3600)
        other = Pool(queue_name, client, ack_ttl=60, ack_valid_for=3600)
        assert await p.add_items(["a", "b", "a"]) == 2
        assert not await p.add_item("b")
        assert await p.get_count_to_process() == 2
        assert await p.get_items(10) == ["a", "b"]
        assert await other.get_items(10) == []
        assert await p.ack_items(["a", "b"]) == 2
        assert await p.get_count_to_process() == 0
        assert await p.is_in_pool("a") and not await p.is_in_pool("zz")
        assert sorted(await p.get_all_items()) == ["a", "b"]
        await _move_clock(client, queue_name, 3590)
        assert await other.get_items(10) == []
        await _move_clock(client, queue_name, 20)
        assert await p.get_count_to_process() == 2
        assert await other.get_items(1) == ["a"]
        assert await other.get_items(5) == ["b"]
        assert await p.get_items(5) == []
        assert not await p.ack_item("a")  # held by other, not by p
        assert await other.ack_item("a")
        # b's ack_ttl runs out: it is due again (and its late ack is refused)
        await _move_clock(client, queue_name, 61)
        assert await p.get_count_to_process() == 1
        assert await p.get_items(5) == ["b"]
        assert not await other.ack_item("b")
        assert await p.ack_item("b")
        assert await p.get_all_items() == ["a", "b"]  # by next due time
        assert await p.remove_item("a") and not await p.remove_item("a")
        assert await p.get_count() == 1
        assert await p.clear_pool() == 1 and await p.get_count() == 0
        await p.close()
        await other.close()
        await client.aclose()

    run(go())


def test_pool_overdue_item_is_not_handed_out_twice(srv: Any, queue_name: str) -> None:
    """The original hands an item overdue by more than ack_ttl out twice in a row."""

    async def go() -> None:
        client = redis.asyncio.Redis.from_url(srv.url)
        p = Pool(queue_name, client, ack_ttl=600, ack_valid_for=129600)
        await p.add_item("x")
        assert await p.get_items(1) == ["x"]
        assert await p.ack_item("x")
        await _move_clock(client, queue_name, 10 * 129600)  # far overdue
        assert await p.get_count_to_process() == 1
        assert await p.get_items(1) == ["x"]
        assert await p.get_items(1) == []
        assert await Pool(queue_name, client).get_items(10) == []
        await _move_clock(client, queue_name, 599)
        assert await p.get_items(1) == []
        await p.close()
        await client.aclose()

    run(go())


def test_pool_concurrent_gets_never_overlap(srv: Any, queue_name: str) -> None:
    async def go() -> None:
        pool = ConnectionPool.from_url(srv.url)
        pools = [Pool(queue_name, pool, ack_ttl=60, ack_valid_for=0.001) for _ in range(5)]
        await pools[0].add_items([f"i{k}" for k in range(60)])
        held: set[str] = set()
        handed = 0

        async def work(p: Pool) -> None:
            nonlocal handed
            for _ in range(30):
                got = await p.get_items(4)
                for v in got:
                    assert v not in held, f"{v} handed out twice at once"
                    held.add(v)
                handed += len(got)
                await asyncio.sleep(0.001)
                for v in got:
                    held.discard(v)
                assert await p.ack_items(got) == len(got)

        await asyncio.gather(*(work(p) for p in pools))
        assert handed > 60  # items came round again after ack_valid_for
        assert await pools[0].get_count() == 60
        for p in pools:
            await p.close()
        await pool.aclose()

    run(go())
