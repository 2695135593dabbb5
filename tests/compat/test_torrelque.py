"""leaseq.compat.torrelque: seed 004's Quickstart samples, then the API's semantics.

Most tests run on Valkey and Redis 7 (``server`` narrowed to those two); ``test_cluster_*`` run
the main paths with a ``redis.asyncio.RedisCluster`` client. Times are kept short with small
timeouts and delays; the README sample's 30 s delay is skipped by moving the queue's clock (the
engine's ``clock_offset`` test hook) instead of sleeping.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio

from leaseq.compat import torrelque
from leaseq.compat.torrelque import (
    Torrelque,
    TorrelqueError,
    TorrelqueLookupError,
    TorrelqueQueueStats,
    TorrelqueTaskSerialiser,
    TorrelqueTaskStatus,
    TorrelqueTimeoutError,
)
from leaseq.keys import QueueKeys

pytestmark = pytest.mark.timeout(60)

SINGLE = pytest.mark.parametrize("server", ["valkey", "redis"], indirect=True)
CLUSTER = pytest.mark.parametrize("server", ["cluster"], indirect=True)

S = TorrelqueTaskStatus


def run(server: Any, body: Callable[[Any], Awaitable[None]], timeout: float = 30) -> None:
    """Run ``body(client)`` in a fresh event loop with a new async client of ``server``."""

    async def main() -> None:
        client = server.async_client()
        try:
            await asyncio.wait_for(body(client), timeout)
        finally:
            await client.aclose()

    asyncio.run(main())


async def wipe(client: Any, queue: str) -> None:
    """Delete every key of ``queue`` (its meta too, which purge keeps)."""
    keys = [k async for k in client.scan_iter(match=f"leaseq:{{{queue}}}:*", count=1000)]
    if keys:
        await client.delete(*keys)


async def advance_clock(client: Any, queue: str, seconds: float) -> None:
    """Move the queue's server-side clock forward (engine test hook) and wake waiters."""
    keys = QueueKeys.of(queue)
    await client.hincrby(keys.meta, "clock_offset", round(seconds * 1000))
    await client.zadd(keys.wake, {"w": 0})


async def until(check: Callable[[], Awaitable[bool]], limit: float = 5.0) -> None:
    end = time.monotonic() + limit
    while not await check():
        assert time.monotonic() < end, "condition not met in time"
        await asyncio.sleep(0.02)


# -- seed 004: Quickstart --------------------------------------------------------------------


class FakeEmailClient:
    """``some_email_client`` of the README: fails once for addresses in ``flaky``."""

    def __init__(self, flaky: set[str]) -> None:
        self.flaky = flaky
        self.sent: list[dict[str, str]] = []

    async def send(self, addr: str, subj: str, body: str) -> None:
        if addr in self.flaky:
            self.flaky.discard(addr)
            raise OSError("SMTP unavailable")
        self.sent.append({"addr": addr, "subj": subj, "body": body})


@SINGLE
def test_readme_quickstart_producer_and_consumer(server: Any) -> None:
    host, port = server.backend.host, server.backend.port
    some_email_client = FakeEmailClient(flaky={"ann@doe.com"})

    async def producer(task_data: dict[str, str]) -> str:
        # -- README "Producer" (import: leaseq.compat; address: the test server) --
        client = redis.asyncio.Redis(host=host, port=port)
        queue = torrelque.Torrelque(client, queue='email')
        queue.schedule_sweep()  # to make due requeued tasks available again

        # (README: task_data = {'addr': 'joe@doe.com', 'subj': 'hello', 'body': '...'})
        task_id = await queue.enqueue(task_data)
        print('Email task enqueued', task_id)
        # -- end of the sample --
        queue.unschedule_sweep()
        await client.aclose()
        return task_id

    async def consumer(iterations: int) -> None:
        # -- README "Consumer" (bounded: the README loops with `while True`) --
        client = redis.asyncio.Redis(host=host, port=port)
        queue = torrelque.Torrelque(client, queue='email')

        for _ in range(iterations):
            task_id, task_data = await queue.dequeue()
            try:
                await some_email_client.send(**task_data)
            except Exception:
                print('Email sending error, retrying in 30s', task_id)
                await queue.requeue(task_id, delay=30)
            else:
                print('Email sent', task_id)
                await queue.release(task_id)
        # -- end of the sample --
        await client.aclose()

    async def body(admin: Any) -> None:
        await wipe(admin, "email")
        try:
            work = asyncio.ensure_future(consumer(4))  # 3 emails, one of them sent twice
            ids = [await producer({'addr': a, 'subj': 'hello', 'body': '...'})
                   for a in ("joe@doe.com", "ann@doe.com", "bob@doe.com")]
            assert len(set(ids)) == 3 and all(len(i) == 32 for i in ids)
            q = Torrelque(admin, queue="email")

            async def one_delayed() -> bool:
                return (await q.get_queue_stats()).delayed == 1

            await until(one_delayed)
            state = await q.get_task_state(ids[1])
            assert state.status is S.DELAYED and state.requeue_count == 1
            await advance_clock(admin, "email", 31)  # the README's 30 s retry delay
            await asyncio.wait_for(work, 10)
            assert sorted(m["addr"] for m in some_email_client.sent) == [
                "ann@doe.com", "bob@doe.com", "joe@doe.com"]
            assert await q.get_queue_stats() == TorrelqueQueueStats(0, 0, 0, 0)
            for task_id in ids:  # released without a result: forgotten, as in Torrelque
                with pytest.raises(TorrelqueLookupError):
                    await q.get_task_state(task_id)
        finally:
            await wipe(admin, "email")

    run(server, body)


# -- dequeue ---------------------------------------------------------------------------------


@SINGLE
def test_dequeue_timeout_raises(server: Any, queue_name: str) -> None:
    async def body(client: Any) -> None:
        q = Torrelque(client, queue=queue_name)
        start = time.monotonic()
        with pytest.raises(TorrelqueTimeoutError):
            await q.dequeue(timeout=0.2)
        assert 0.15 <= time.monotonic() - start < 1.5
        with pytest.raises(TorrelqueError):  # the base class catches it too
            await q.dequeue(timeout=0, max_tasks=3)

    run(server, body)


@SINGLE
def test_max_tasks_returns_a_list(server: Any, queue_name: str) -> None:
    async def body(client: Any) -> None:
        q = Torrelque(client, queue=queue_name)
        ids = [await q.enqueue({"n": n}) for n in range(5)]
        first = await q.dequeue(max_tasks=3)
        assert isinstance(first, list) and [d for _, d in first] == [{"n": 0}, {"n": 1},
                                                                      {"n": 2}]
        rest = await q.dequeue(timeout=1, max_tasks=3)
        assert [t for t, _ in rest] == ids[3:]
        single = await q.enqueue("x")
        assert await q.dequeue(timeout=1) == (single, "x")  # max_tasks=1: a pair, no list
        for task_id in [*ids, single]:
            await q.release(task_id)
        with pytest.raises(TorrelqueTimeoutError):
            await q.dequeue(timeout=0.05, max_tasks=2)

    run(server, body)


@SINGLE
def test_falsy_payloads_round_trip(server: Any, queue_name: str) -> None:
    values: list[Any] = [{}, 0, "", [], None, False, 0.0]

    async def body(client: Any) -> None:
        q = Torrelque(client, queue=queue_name)
        ids = [await q.enqueue(v) for v in values]
        got = await q.dequeue(timeout=1, max_tasks=len(values))
        assert [t for t, _ in got] == ids
        for (_, data), value in zip(got, values, strict=True):
            assert data == value and type(data) is type(value)
        for task_id in ids:
            assert (await q.get_task_state(task_id)).status is S.WORKING
            await q.release(task_id, result=0)  # a falsy result is still a result
            assert (await q.get_task_state(task_id)).result == 0
        assert (await q.get_queue_stats()).tasks == 0

    run(server, body)


# -- requeue ---------------------------------------------------------------------------------


@SINGLE
def test_requeue_with_delay_comes_back_without_a_sweep(server: Any, queue_name: str) -> None:
    async def body(client: Any) -> None:
        q = Torrelque(client, queue=queue_name)  # no schedule_sweep()
        task_id = await q.enqueue({"job": 1})
        await q.dequeue(timeout=1)
        start = time.monotonic()
        await q.requeue(task_id, delay=0.4)
        state = await q.get_task_state(task_id)
        assert state.status is S.DELAYED and state.requeue_count == 1
        with pytest.raises(TorrelqueTimeoutError):
            await q.dequeue(timeout=0.1)
        assert await q.dequeue(timeout=3) == (task_id, {"job": 1})
        assert 0.35 < time.monotonic() - start < 2
        state = await q.get_task_state(task_id)
        assert (state.status, state.dequeue_count, state.requeue_count) == (S.WORKING, 2, 1)

    run(server, body)


@SINGLE
def test_requeue_without_delay_goes_to_the_back(server: Any, queue_name: str) -> None:
    async def body(client: Any) -> None:
        q = Torrelque(client, queue=queue_name)
        a, b = await q.enqueue("a"), await q.enqueue("b")
        assert (await q.dequeue(timeout=1))[0] == a
        await q.requeue(a)
        assert (await q.get_task_state(a)).status is S.PENDING
        assert [(await q.dequeue(timeout=1))[0] for _ in range(2)] == [b, a]

    run(server, body)


@SINGLE
def test_requeue_task_timeout_applies_to_the_next_dequeue(server: Any, queue_name: str) -> None:
    async def body(client: Any) -> None:
        q = Torrelque(client, queue=queue_name)
        task_id = await q.enqueue("t")
        assert (await q.get_task_state(task_id)).timeout == 300
        await q.dequeue(timeout=1)
        await q.requeue(task_id, task_timeout=0.3)
        state = await q.get_task_state(task_id)
        assert (state.timeout, state.requeue_count) == (0.3, 1)
        assert state.last_requeue_time is not None and state.last_dequeue_time is not None
        await q.dequeue(timeout=1)  # taken for 0.3 s now, not abandoned for 300 s
        await asyncio.sleep(0.45)
        assert await q.dequeue(timeout=1) == (task_id, "t")
        state = await q.get_task_state(task_id)
        assert (state.dequeue_count, state.requeue_count, state.timeout) == (3, 1, 0.3)

    run(server, body)


@SINGLE
def test_requeue_of_a_task_dequeued_elsewhere(server: Any, queue_name: str) -> None:
    async def body(client: Any) -> None:
        mine, other = Torrelque(client, queue=queue_name), Torrelque(client, queue=queue_name)
        task_id = await mine.enqueue({"x": 1})
        await mine.dequeue(timeout=1)
        await other.requeue(task_id)  # any instance may give a task back, as in Torrelque
        assert (await mine.get_task_state(task_id)).status is S.PENDING
        await other.requeue("0" * 32)  # unknown: nothing happens
        with pytest.raises(TorrelqueLookupError):
            await other.requeue("")
        assert (await other.dequeue(timeout=1))[0] == task_id
        assert (await mine.get_task_state(task_id)).status is S.WORKING
        # release by id works from any instance, and keeps the counters read before it
        await other.release(task_id, result="done elsewhere")
        state = await mine.get_task_state(task_id)
        assert (state.status, state.result, state.dequeue_count) == (S.COMPLETED,
                                                                     "done elsewhere", 1)
        assert state.timeout == 300 and state.enqueue_time is not None

    run(server, body)


# -- release ---------------------------------------------------------------------------------


@SINGLE
def test_release_with_and_without_result(server: Any, queue_name: str) -> None:
    async def body(client: Any) -> None:
        q = Torrelque(client, queue=queue_name)
        kept, dropped = await q.enqueue("kept"), await q.enqueue("dropped")
        await q.dequeue(timeout=1, max_tasks=2)
        before = time.time()
        await q.release(kept, result={"answer": 42}, result_ttl=0.8)
        await q.release(dropped)
        state = await q.get_task_state(kept)
        assert state.status is S.COMPLETED and state.result == {"answer": 42}
        assert state.release_time is not None and before - 1 <= state.release_time <= time.time()
        assert (state.dequeue_count, state.requeue_count, state.timeout) == (1, 0, 300)
        assert state.last_dequeue_time is not None and state.enqueue_time is not None
        with pytest.raises(TorrelqueLookupError):
            await q.get_task_state(dropped)
        await asyncio.sleep(0.9)  # result_ttl passed
        with pytest.raises(TorrelqueLookupError):
            await q.get_task_state(kept)

    run(server, body)


@SINGLE
def test_rejected_and_non_final_statuses(server: Any, queue_name: str) -> None:
    async def body(client: Any) -> None:
        q = Torrelque(client, queue=queue_name)
        task_id = await q.enqueue("bad input")
        await q.dequeue(timeout=1)
        for status in (S.PENDING, S.WORKING, S.DELAYED, 1, 99):
            with pytest.raises(TorrelqueError, match="final status"):
                await q.release(task_id, status=status)  # type: ignore[arg-type]
        assert (await q.get_task_state(task_id)).status is S.WORKING
        await q.release(task_id, result="cannot parse", status=S.REJECTED)
        state = await q.get_task_state(task_id)
        assert (state.status, state.result) == (S.REJECTED, "cannot parse")
        assert state.status.isfinal()

    run(server, body)


# -- watch -----------------------------------------------------------------------------------


@SINGLE
def test_watch_sees_each_status_without_keyspace_notifications(server: Any,
                                                                queue_name: str) -> None:
    async def body(client: Any) -> None:
        await client.config_set("notify-keyspace-events", "")  # the default: none
        config = await client.config_get("notify-keyspace-events")
        assert [v for v in config.values()] in ([""], [b""])
        q = Torrelque(client, queue=queue_name)
        q.watch_max_interval = 0.1  # polls stay frequent: each state below lasts 0.3 s
        task_id = await q.enqueue({"report": 7})
        seen: list[Any] = []

        async def watcher() -> None:
            async for state in q.watch(task_id, timeout=10):
                seen.append(state)

        watching = asyncio.ensure_future(watcher())
        await asyncio.sleep(0.3)
        await q.dequeue(timeout=1)
        await asyncio.sleep(0.3)
        await q.release(task_id, result={"rows": 3})
        await asyncio.wait_for(watching, 5)
        assert [s.status for s in seen] == [S.PENDING, S.WORKING, S.COMPLETED]
        assert seen[-1].result == {"rows": 3}

    run(server, body)


@SINGLE
def test_watch_timeout_unknown_and_release_without_result(server: Any,
                                                          queue_name: str) -> None:
    async def body(client: Any) -> None:
        q = Torrelque(client, queue=queue_name)
        with pytest.raises(TorrelqueLookupError):
            async for _ in q.watch("f" * 32):
                pass
        task_id = await q.enqueue("slow")
        seen = []
        with pytest.raises(TorrelqueTimeoutError):
            async for state in q.watch(task_id, timeout=0.3):
                seen.append(state.status)
        assert seen == [S.PENDING]

        async def release_soon() -> None:
            await asyncio.sleep(0.2)
            await q.dequeue(timeout=1)
            await asyncio.sleep(0.2)
            await q.release(task_id)  # no result: the state is gone, the watch just ends

        releasing = asyncio.ensure_future(release_soon())
        seen = [state.status async for state in q.watch(task_id, timeout=5)]
        await releasing
        assert seen == [S.PENDING, S.WORKING]
        done = await q.enqueue("already final")
        await q.release(done, result=1, status=S.REJECTED)
        assert [s.status async for s in q.watch(done)] == [S.REJECTED]

    run(server, body)


# -- stats, sweep ----------------------------------------------------------------------------


@SINGLE
def test_queue_stats(server: Any, queue_name: str) -> None:
    async def body(client: Any) -> None:
        q = Torrelque(client, queue=queue_name)
        assert await q.get_queue_stats() == TorrelqueQueueStats(0, 0, 0, 0)
        await q.enqueue("a")
        await q.enqueue("b")
        await q.enqueue("c", delay=60)
        await q.dequeue(timeout=1)
        stats = await q.get_queue_stats()
        assert stats == TorrelqueQueueStats(tasks=3, pending=1, working=1, delayed=1)
        assert (stats.tasks, stats.pending, stats.working, stats.delayed) == (3, 1, 1, 1)

    run(server, body)


@SINGLE
def test_sweep_counts(server: Any, queue_name: str) -> None:
    async def body(client: Any) -> None:
        q = Torrelque(client, queue=queue_name)
        stale = await q.enqueue("stale", task_timeout=0.3)
        later = await q.enqueue("later")
        await q.dequeue(timeout=1, max_tasks=2)
        await q.requeue(later, delay=0.3)
        assert await q.sweep() == (0, 0, 0)
        await asyncio.sleep(0.45)
        assert await q.sweep() == (1, 1, 0)  # (stale, delayed, undequeued)
        for task_id in (stale, later):
            assert (await q.get_task_state(task_id)).status is S.PENDING
        assert await q.sweep() == (0, 0, 0)

    run(server, body)


@SINGLE
def test_schedule_and_unschedule_sweep(server: Any, queue_name: str) -> None:
    async def body(client: Any) -> None:
        q = Torrelque(client, queue=queue_name)
        q.sweep_interval = 0.1
        first = await q.enqueue("first", task_timeout=0.2)
        await q.dequeue(timeout=1)
        q.schedule_sweep()
        q.schedule_sweep()  # idempotent

        async def back_to_pending() -> bool:
            return (await q.get_task_state(first)).status is S.PENDING

        await until(back_to_pending, 3)  # nobody dequeued: the background sweep did it
        q.unschedule_sweep()
        await q.release(first)
        second = await q.enqueue("second", task_timeout=0.1)
        await q.dequeue(timeout=1)
        await asyncio.sleep(0.4)  # expired, but no sweep runs any more
        assert (await q.get_task_state(second)).status is S.WORKING
        assert await q.dequeue(timeout=1) == (second, "second")  # a dequeue reclaims it
        await q.close()

    run(server, body)


# -- task timeout, late release --------------------------------------------------------------


@SINGLE
def test_task_timeout_per_task(server: Any, queue_name: str) -> None:
    async def body(client: Any) -> None:
        q = Torrelque(client, queue=queue_name)
        short = await q.enqueue("short", task_timeout=0.3)
        long = await q.enqueue("long")
        assert len(await q.dequeue(timeout=1, max_tasks=2)) == 2
        assert (await q.get_task_state(short)).timeout == 0.3
        assert (await q.get_task_state(long)).timeout == 300
        await asyncio.sleep(0.45)
        assert await q.dequeue(timeout=1) == (short, "short")  # came back by itself
        assert (await q.get_task_state(short)).dequeue_count == 2
        with pytest.raises(TorrelqueTimeoutError):
            await q.dequeue(timeout=0.1)  # the default 300 s one is still held
        assert (await q.get_task_state(long)).status is S.WORKING
        q.task_timeout = 0.2  # the class attribute, overridden on the instance
        quick = await q.enqueue("quick")
        assert (await q.get_task_state(quick)).timeout == 0.2

    run(server, body)


@SINGLE
def test_late_release_does_not_corrupt_the_queue(server: Any, queue_name: str) -> None:
    async def body(client: Any) -> None:
        slow, fast = Torrelque(client, queue=queue_name), Torrelque(client, queue=queue_name)
        # 1. the task timed out and was swept back before the late release
        swept = await slow.enqueue("swept", task_timeout=0.15)
        await slow.dequeue(timeout=1)
        await asyncio.sleep(0.3)
        assert (await slow.sweep())[0] == 1
        await slow.release(swept)  # late, but nobody finished it: the work counts
        with pytest.raises(TorrelqueTimeoutError):  # no ghost id, no script error
            await fast.dequeue(timeout=0.1)
        # 2. the task timed out and another consumer holds it now
        task_id = await slow.enqueue({"n": 1}, task_timeout=0.15)
        await slow.dequeue(timeout=1)
        await asyncio.sleep(0.3)
        assert await fast.dequeue(timeout=1) == (task_id, {"n": 1})
        await slow.requeue(task_id, delay=60)  # stale lease: refused, the task stays put
        state = await fast.get_task_state(task_id)
        assert (state.status, state.dequeue_count, state.requeue_count) == (S.WORKING, 2, 0)
        await slow.release(task_id)  # first release wins, once
        await fast.release(task_id, result="too late")  # a no-op now
        with pytest.raises(TorrelqueLookupError):
            await fast.get_task_state(task_id)
        assert await fast.get_queue_stats() == TorrelqueQueueStats(0, 0, 0, 0)
        fresh = await fast.enqueue("fresh")
        assert await slow.dequeue(timeout=1) == (fresh, "fresh")
        await slow.release(fresh)
        assert await fast.get_queue_stats() == TorrelqueQueueStats(0, 0, 0, 0)

    run(server, body)


# -- pipeline --------------------------------------------------------------------------------


@SINGLE
@pytest.mark.parametrize("transaction", [True, False], ids=["multi", "plain"])
def test_pipeline_batches_writes(server: Any, queue_name: str, transaction: bool) -> None:
    async def body(client: Any) -> None:
        q = Torrelque(client, queue=queue_name)
        pipe = client.pipeline(transaction=transaction)
        ids = [await q.enqueue({"n": n}, pipeline=pipe) for n in range(3)]
        later = await q.enqueue("later", delay=60, pipeline=pipe)
        assert await q.get_queue_stats() == TorrelqueQueueStats(0, 0, 0, 0)
        with pytest.raises(TorrelqueLookupError):
            await q.get_task_state(ids[0])
        await pipe.execute()
        assert await q.get_queue_stats() == TorrelqueQueueStats(4, 3, 0, 1)
        got = await q.dequeue(timeout=1, max_tasks=3)
        assert [t for t, _ in got] == ids

        pipe = client.pipeline(transaction=transaction)
        await q.release(ids[0], result="r0", pipeline=pipe)
        await q.requeue(ids[1], task_timeout=9, pipeline=pipe)
        await q.release(ids[2], status=S.REJECTED, pipeline=pipe)
        for task_id in ids:
            assert (await q.get_task_state(task_id)).status is S.WORKING
        await pipe.execute()
        state = await q.get_task_state(ids[0])
        assert (state.status, state.result) == (S.COMPLETED, "r0")
        state = await q.get_task_state(ids[1])
        assert (state.status, state.requeue_count, state.timeout) == (S.PENDING, 1, 9)
        with pytest.raises(TorrelqueLookupError):
            await q.get_task_state(ids[2])
        assert (await q.get_task_state(later)).status is S.DELAYED

    run(server, body)


@SINGLE
def test_pipeline_and_multi_survive_a_script_flush(server: Any, queue_name: str) -> None:
    async def body(client: Any) -> None:
        q = Torrelque(client, queue=queue_name)
        pipe = client.pipeline()
        task_id = await q.enqueue("x", pipeline=pipe)  # scripts loaded here...
        await client.script_flush()  # ...and gone before the caller executes
        await pipe.execute()
        assert await q.dequeue(timeout=1) == (task_id, "x")
        await client.script_flush()
        await q.requeue(task_id)  # MULTI: reloads and retries
        await client.script_flush()
        assert (await q.get_task_state(task_id)).requeue_count == 1

    run(server, body)


# -- serialiser, clients ---------------------------------------------------------------------


@SINGLE
def test_custom_serialiser_and_undecodable_task(server: Any, queue_name: str) -> None:
    def loads(data: bytes) -> Any:
        value = json.loads(data)
        if value == "poison":
            raise ValueError("cannot read this one")
        return tuple(value) if isinstance(value, list) else value

    serialiser = TorrelqueTaskSerialiser(lambda obj: json.dumps(obj).encode(), loads)

    async def body(client: Any) -> None:
        q = Torrelque(client, queue=queue_name, serialiser=serialiser)
        good = await q.enqueue([1, 2])
        bad = await q.enqueue("poison", task_timeout=0.3)
        with pytest.raises(TorrelqueError, match="cannot deserialise"):
            await q.dequeue(timeout=1, max_tasks=2)
        assert (await q.get_task_state(good)).status is S.PENDING  # given back at once
        assert (await q.get_task_state(bad)).status is S.WORKING  # back after its timeout
        assert await q.dequeue(timeout=1) == (good, (1, 2))
        await q.release(good, result=[3])
        assert (await q.get_task_state(good)).result == (3,)
        await asyncio.sleep(0.35)  # the poison task's own timeout (0.3 s), not 300 s
        with pytest.raises(TorrelqueError, match=bad):
            await q.dequeue(timeout=1)
        assert (await q.get_task_state(bad)).dequeue_count == 2

    run(server, body)


@SINGLE
def test_decode_responses_client_and_bad_arguments(server: Any, queue_name: str) -> None:
    async def body(_: Any) -> None:
        client = server.async_client(decode_responses=True)
        try:
            q = Torrelque(client, queue=queue_name)
            task_id = await q.enqueue(b"raw".decode())
            assert await q.dequeue(timeout=1) == (task_id, "raw")
            with pytest.raises(ValueError):
                await q.enqueue("x", task_timeout=0)
            with pytest.raises(ValueError):
                await q.enqueue("x", delay=-1)
            with pytest.raises(ValueError):
                await q.dequeue(timeout=0, max_tasks=0)
            with pytest.raises(TorrelqueLookupError):
                await q.get_task_state("")  # no task can have that id
            assert repr(q) == f"<Torrelque queue={queue_name!r}>"
        finally:
            await client.aclose()

    run(server, body)


# -- cluster ---------------------------------------------------------------------------------


@CLUSTER
def test_cluster_main_paths(server: Any, queue_name: str) -> None:
    async def body(client: Any) -> None:
        q = Torrelque(client, queue=queue_name)
        pipe = client.pipeline()
        first = await q.enqueue({"n": 1}, pipeline=pipe)
        await pipe.execute()
        second = await q.enqueue({}, task_timeout=0.2)
        assert await q.dequeue(timeout=1, max_tasks=2) == [(first, {"n": 1}), (second, {})]
        await q.requeue(first, delay=0.2, task_timeout=5)
        state = await q.get_task_state(first)
        assert (state.status, state.timeout, state.requeue_count) == (S.DELAYED, 5, 1)
        await asyncio.sleep(0.35)
        got = {t: d for t, d in await q.dequeue(timeout=2, max_tasks=2)}
        assert got == {first: {"n": 1}, second: {}}  # delayed one due, expired one back
        seen: list[Any] = []

        async def watcher() -> None:
            seen.extend([s.status async for s in q.watch(first, timeout=5)])

        watching = asyncio.ensure_future(watcher())
        await asyncio.sleep(0.15)
        tx = client.pipeline(transaction=True)
        await q.release(first, result="ok", pipeline=tx)
        await q.requeue(second, pipeline=tx)
        await tx.execute()
        await watching
        assert seen == [S.WORKING, S.COMPLETED]
        assert await q.get_queue_stats() == TorrelqueQueueStats(1, 1, 0, 0)
        assert await q.sweep() == (0, 0, 0)

    run(server, body)
