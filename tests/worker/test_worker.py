"""The in-process worker against a real valkey: handlers, concurrency, heartbeat, lost leases,
failures, timeouts and graceful shutdown."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from leaseq import Backoff, Lease, Queue, State
from leaseq.server import ServerProcess
from leaseq.worker import JobResult, Outcome, Retry, Worker, current


@pytest.fixture
def q(valkey_server: ServerProcess, queue_name: str) -> Any:
    with Queue(queue_name, url=valkey_server.url) as queue:
        yield queue


async def work(worker: Worker, until: Callable[[], bool], timeout: float = 15.0) -> Any:
    """Run ``worker`` until ``until()`` holds, then stop it gracefully."""
    task = asyncio.create_task(worker.run())
    end = time.monotonic() + timeout
    while not until() and not task.done():
        assert time.monotonic() < end, "timed out waiting for the worker"
        await asyncio.sleep(0.02)
    worker.stop()
    return await asyncio.wait_for(task, 15.0)


def results(into: list[JobResult]) -> Callable[[JobResult], None]:
    return into.append


def test_async_handler_completes_and_keeps_result(q: Queue, arun: Any) -> None:
    ids = [q.add({"n": i}).id for i in range(30)]
    done: list[JobResult] = []

    async def handle(lease: Lease) -> int:
        assert current().lease is lease
        return int(lease.data["n"]) * 2

    w = Worker(q.name, handle, url=q_url(q), concurrency=8, on_result=done.append)
    counts = arun(work(w, lambda: len(done) == 30))
    assert counts[Outcome.COMPLETED] == 30
    assert q.state(ids[7]).result == 14
    assert q.stats().counter("completed") == 30


def q_url(q: Queue) -> str:
    kw = q.client.connection_pool.connection_kwargs
    return f"redis://{kw['host']}:{kw['port']}/0"


def test_sync_handler_runs_on_threads_with_context(q: Queue, arun: Any) -> None:
    for i in range(20):
        q.add(i, id=f"s{i}")
    threads: set[str] = set()
    done: list[JobResult] = []

    def handle(lease: Lease) -> int:
        ctx = current()
        assert ctx.lease.id == lease.id and not ctx.cancelled
        threads.add(threading.current_thread().name)
        time.sleep(0.01)
        return int(lease.data) + 1

    w = Worker(q.name, handle, url=q_url(q), concurrency=4, on_result=done.append)
    arun(work(w, lambda: len(done) == 20))
    assert {r.outcome for r in done} == {Outcome.COMPLETED}
    assert threading.current_thread().name not in threads and 1 < len(threads) <= 4
    assert q.state("s5").result == 6


@pytest.mark.parametrize("kind", ["async", "sync"])
def test_concurrency_is_honoured(q: Queue, arun: Any, kind: str) -> None:
    q.add_many(range(40))
    lock = threading.Lock()
    now = peak = 0
    done: list[JobResult] = []

    def enter() -> None:
        nonlocal now, peak
        with lock:
            now += 1
            peak = max(peak, now)

    def leave() -> None:
        nonlocal now
        with lock:
            now -= 1

    async def ahandle(lease: Lease) -> None:
        enter()
        await asyncio.sleep(0.03)
        leave()

    def shandle(lease: Lease) -> None:
        enter()
        time.sleep(0.03)
        leave()

    w = Worker(q.name, ahandle if kind == "async" else shandle, url=q_url(q), concurrency=5,
               on_result=done.append)
    arun(work(w, lambda: len(done) == 40))
    assert peak == 5 and w.max_in_flight == 5


def test_heartbeat_keeps_a_long_job_leased(q: Queue, arun: Any) -> None:
    q.add("long", id="long")
    runs: list[int] = []
    stolen: list[Lease] = []
    stop = threading.Event()

    def thief() -> None:  # tries to take the item while the worker holds it
        with Queue(q.name, url=q_url(q)) as other:
            while not stop.is_set():
                got = other.lease(block=False, lease=5)
                if got is not None:
                    stolen.append(got)
                time.sleep(0.05)

    t = threading.Thread(target=thief)

    async def handle(lease: Lease) -> str:
        runs.append(lease.attempt)
        t.start()
        await asyncio.sleep(2.0)  # four times the lease
        return "ok"

    done: list[JobResult] = []
    try:
        w = Worker(q.name, handle, url=q_url(q), lease=0.5, on_result=done.append)
        arun(work(w, lambda: len(done) == 1))
    finally:
        stop.set()
        if t.is_alive():
            t.join()
    assert runs == [1] and stolen == []
    assert [r.outcome for r in done] == [Outcome.COMPLETED]
    assert q.state("long").result == "ok"
    assert q.stats().counter("completed") == 1


@pytest.mark.parametrize("kind", ["async", "sync"])
def test_lost_lease_tells_the_handler_and_reports_nothing(q: Queue, arun: Any,
                                                          kind: str) -> None:
    q.add("x", id="victim")
    seen: dict[str, Any] = {}
    started = threading.Event()

    async def ahandle(lease: Lease) -> str:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            seen["cancelled"], seen["lost"] = True, current().lost
            raise
        return "too late"

    def shandle(lease: Lease) -> str:
        started.set()
        seen["cancelled"] = current().wait(30)
        seen["lost"] = current().lost
        return "too late"

    done: list[JobResult] = []
    w = Worker(q.name, ahandle if kind == "async" else shandle, url=q_url(q), lease=0.3,
               on_result=done.append)

    async def scenario() -> Any:
        async def remove_when_started() -> None:
            while not started.is_set():
                await asyncio.sleep(0.01)
            await asyncio.to_thread(q.remove, "victim")  # the lease is gone

        remover = asyncio.create_task(remove_when_started())
        counts = await work(w, lambda: len(done) == 1)
        await remover
        return counts

    counts = arun(scenario())
    assert seen == {"cancelled": True, "lost": True}
    assert [r.outcome for r in done] == [Outcome.LOST]
    assert counts[Outcome.COMPLETED] == 0 and q.stats().counter("completed") == 0


@pytest.mark.parametrize("kind", ["async", "sync"])
def test_graceful_shutdown_gives_back_unfinished_leases(q: Queue, arun: Any,
                                                        kind: str) -> None:
    ids = [q.add(i, id=f"g{i}").id for i in range(6)]
    started: list[str] = []

    async def ahandle(lease: Lease) -> None:
        started.append(lease.id)
        await asyncio.sleep(0.1 if lease.id == "g0" else 30)

    def shandle(lease: Lease) -> None:
        started.append(lease.id)
        current().wait(0.1 if lease.id == "g0" else 30)

    done: list[JobResult] = []
    w = Worker(q.name, ahandle if kind == "async" else shandle, url=q_url(q), concurrency=3,
               grace=0.5, on_result=done.append)
    t0 = time.monotonic()
    counts = arun(work(w, lambda: len(started) >= 3 and len(done) >= 1))
    assert time.monotonic() - t0 < 5
    # the two (or three) running ones, and any leased ahead of a free slot
    assert counts[Outcome.COMPLETED] == 1 and counts[Outcome.REQUEUED] >= 2
    for item_id in ids[1:]:
        st = q.state(item_id)
        assert st.state is State.PENDING and st.attempts == 0, st
    assert q.stats().leased == 0


def test_failures_retry_with_backoff_then_dead_letter(q: Queue, arun: Any,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    q.add("p", id="poison")
    attempts: list[tuple[int, float]] = []

    async def handle(lease: Lease) -> None:
        attempts.append((lease.attempt, time.monotonic()))
        raise ValueError(f"bad input on attempt {lease.attempt}")

    done: list[JobResult] = []
    w = Worker(q.name, handle, url=q_url(q), max_attempts=3,
               backoff=Backoff(base=0.2, factor=2, jitter=0), on_result=done.append)
    with caplog.at_level(logging.WARNING, logger="leaseq.worker"):
        arun(work(w, lambda: len(done) == 3))
    assert [a for a, _ in attempts] == [1, 2, 3]
    assert attempts[1][1] - attempts[0][1] >= 0.18 and attempts[2][1] - attempts[1][1] >= 0.38
    assert [r.outcome for r in done] == [Outcome.RETRIED, Outcome.RETRIED, Outcome.DEAD]
    st = q.state("poison")
    assert st.state is State.DEAD and st.attempts == 3
    assert st.last_error is not None
    assert st.last_error.startswith("ValueError: bad input on attempt 3")
    assert "test_worker.py" in st.last_error and "in handle" in st.last_error
    lines = [r.getMessage() for r in caplog.records if "job failed" in r.getMessage()]
    assert len(lines) == 3
    assert "id=poison attempt=3 outcome=dead" in lines[-1] and "bad input" in lines[-1]


def test_retry_asks_for_a_delay(q: Queue, arun: Any) -> None:
    q.add("r", id="r")
    seen: list[float] = []

    async def handle(lease: Lease) -> str:
        seen.append(time.monotonic())
        if lease.attempt == 1:
            raise Retry(delay=0.6, reason="rate limited")
        return "second time lucky"

    done: list[JobResult] = []
    w = Worker(q.name, handle, url=q_url(q), backoff=Backoff(base=30), on_result=done.append)
    arun(work(w, lambda: len(done) == 2))
    assert [r.outcome for r in done] == [Outcome.RETRIED, Outcome.COMPLETED]
    assert done[0].error == "Retry: rate limited"
    assert 0.55 <= seen[1] - seen[0] < 5


@pytest.mark.parametrize("kind", ["async", "sync"])
def test_job_timeout_fails_the_attempt(q: Queue, arun: Any, kind: str) -> None:
    q.add("t", id="t")
    flags: list[bool] = []

    async def ahandle(lease: Lease) -> None:
        await asyncio.sleep(30)

    def shandle(lease: Lease) -> None:
        flags.append(current().wait(30))  # returns early: the job was cancelled

    done: list[JobResult] = []
    w = Worker(q.name, ahandle if kind == "async" else shandle, url=q_url(q), max_attempts=1,
               job_timeout=0.3, on_result=done.append)
    t0 = time.monotonic()
    arun(work(w, lambda: len(done) == 1 and (kind == "async" or bool(flags))))
    assert time.monotonic() - t0 < 5
    assert [r.outcome for r in done] == [Outcome.DEAD]
    st = q.state("t")
    assert st.state is State.DEAD and (st.last_error or "").startswith("timeout")
    assert flags == ([] if kind == "async" else [True])


def test_undecodable_result_fails_instead_of_completing(q: Queue, arun: Any) -> None:
    q.add(1, id="r1")

    async def handle(lease: Lease) -> object:
        return {1, 2}  # a set is not JSON

    done: list[JobResult] = []
    w = Worker(q.name, handle, url=q_url(q), max_attempts=1, on_result=done.append)
    arun(work(w, lambda: len(done) == 1))
    assert done[0].outcome is Outcome.DEAD and "SerializationError" in (done[0].error or "")


def test_idle_exit_stops_by_itself(q: Queue, arun: Any) -> None:
    q.add_many(range(5))
    w = Worker(q.name, _echo, url=q_url(q), idle_exit=0.3)
    counts = arun(asyncio.wait_for(w.run(), 10))
    assert counts[Outcome.COMPLETED] == 5


async def _echo(lease: Lease) -> object:
    return lease.data


def test_bad_settings_are_refused() -> None:
    from leaseq.errors import InvalidArgument

    for kw in ({"concurrency": 0}, {"heartbeat": 1.5}, {"lease": -1}, {"job_timeout": 0},
               {"prefetch": -1}):
        with pytest.raises(InvalidArgument):
            Worker("q", _echo, url="redis://127.0.0.1:1", **kw)
    with pytest.raises(ImportError):
        Worker("q", "no_such_module_xyz:f", url="redis://127.0.0.1:1")


def test_server_down_is_retried_quietly_until_stopped(arun: Any,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    w = Worker("down", _echo, url="redis://127.0.0.1:1/0")

    async def scenario() -> Any:
        task = asyncio.create_task(w.run())
        await asyncio.sleep(0.5)
        w.stop()
        return await asyncio.wait_for(task, 10)

    with caplog.at_level(logging.WARNING, logger="leaseq.worker"):
        counts = arun(scenario())
    assert sum(counts.values()) == 0
    assert any("cannot lease" in r.getMessage() for r in caplog.records)


def test_eager_start_handlers_that_return_suspend_raise_and_yield_results(
        q: Queue, arun: Any) -> None:
    """Async handlers that return without awaiting, that await several times, that raise at
    once or after an await, and that return a result all end as they should, each in its own
    job context (on Python 3.12+ they run in eager tasks: the ones that never suspend are done
    without being scheduled)."""
    kinds = ["plain", "await", "raise", "raise-late", "result"]
    for i in range(50):
        q.add({"k": kinds[i % 5], "i": i}, id=f"e{i}")
    done: list[JobResult] = []
    seen: dict[str, str] = {}

    async def handle(lease: Lease) -> Any:
        kind = lease.data["k"]
        assert current().lease is lease
        if kind == "plain":
            return None
        if kind == "raise":
            raise ValueError("at once")
        for _ in range(3):
            await asyncio.sleep(0)
            assert current().lease is lease  # the task goes on in the job's own context
        seen[lease.id] = kind
        if kind == "raise-late":
            raise ValueError("after an await")
        return lease.data["i"] if kind == "result" else None

    w = Worker(q.name, handle, url=q_url(q), concurrency=8, max_attempts=1,
               on_result=done.append)
    arun(work(w, lambda: len(done) == 50))
    by = {r.lease.id: r for r in done}
    assert len(by) == 50
    for i in range(50):
        r, kind = by[f"e{i}"], kinds[i % 5]
        want = Outcome.DEAD if kind.startswith("raise") else Outcome.COMPLETED
        assert r.outcome is want, (kind, r)
        if kind in ("await", "raise-late", "result"):
            assert seen[f"e{i}"] == kind  # the handler ran past its awaits
    assert q.state("e4").result == 4  # a result kept, though the handler awaited first
    assert "at once" in (q.state("e2").last_error or "")
    assert "after an await" in (q.state("e3").last_error or "")
    assert q.stats().counter("completed") == 30


@pytest.mark.skipif(sys.version_info < (3, 12),
                    reason="eager tasks need Python 3.12: before it every job is a scheduled task")
def test_eager_start_yields_to_tasks_after_its_budget(q: Queue, arun: Any) -> None:
    """Handlers that never await are run eagerly (Python 3.12+) only for EAGER_BUDGET per
    round; the rest of the round gets scheduled tasks, so the loop (heartbeat, completions) is
    not held up by a long run of them: more than one job is in flight at some point."""
    for i in range(40):
        q.add(i)
    done: list[JobResult] = []

    async def busy(lease: Lease) -> None:
        time.sleep(0.003)  # never awaits: longer than the budget (2 ms) by itself

    w = Worker(q.name, busy, url=q_url(q), concurrency=10, on_result=done.append)
    arun(work(w, lambda: len(done) == 40))
    assert {r.outcome for r in done} == {Outcome.COMPLETED}
    assert w.max_in_flight > 1


def test_completions_lease_the_next_items_in_the_same_call(
        valkey_server: ServerProcess, q: Queue, arun: Any) -> None:
    """Finished jobs are completed with one complete-and-lease call that refills the free
    slots, so a busy worker needs no separate lease call per batch; none is lost or run
    twice."""
    q.add_many(range(3000))
    done: list[JobResult] = []

    async def noop(lease: Lease) -> None:
        await asyncio.sleep(0)

    admin = valkey_server.client()
    admin.config_resetstat()
    w = Worker(q.name, noop, url=q_url(q), concurrency=20, on_result=done.append)
    arun(work(w, lambda: len(done) == 3000, timeout=60))
    assert len({r.lease.id for r in done}) == 3000
    assert {r.outcome for r in done} == {Outcome.COMPLETED}
    stats = admin.info("commandstats")
    # every script call takes items (ZPOPMIN inside), the completions included; a worker that
    # leased and completed in separate calls would pop in about half of them
    pops, calls = stats["cmdstat_zpopmin"]["calls"], stats["cmdstat_fcall"]["calls"]
    assert pops > 0.75 * calls, (pops, calls)
    assert q.stats().counter("completed") == 3000


def test_an_async_handler_that_raises_when_called_fails_the_attempt(q: Queue,
                                                                     arun: Any) -> None:
    """An async handler that raises before it returns a coroutine (here: called with fewer
    arguments than it takes) fails each attempt like any other error; the worker keeps
    running and reports every item."""
    for i in range(3):
        q.add(i, id=f"bad{i}")
    done: list[JobResult] = []

    async def handle(lease: Lease, extra: int) -> None:  # one argument too many
        return None

    w = Worker(q.name, handle, url=q_url(q), max_attempts=1, on_result=done.append)
    arun(work(w, lambda: len(done) == 3))
    assert {r.outcome for r in done} == {Outcome.DEAD}
    assert "TypeError" in (q.state("bad1").last_error or "")


def test_a_handler_is_its_own_task_from_its_first_line(q: Queue, arun: Any) -> None:
    """What a handler does before its first await (asyncio.timeout, a TaskGroup) binds to the
    handler's own task, never to the worker's: the current task is the same before and after
    an await, a timeout set on the first line cancels only that job, and the worker goes on."""
    q.add("slow", id="slow")
    for i in range(5):
        q.add(i, id=f"ok{i}")
    done: list[JobResult] = []
    tasks: dict[str, bool] = {}

    async def handle(lease: Lease) -> None:
        first = asyncio.current_task()
        async with asyncio.timeout(0.05):  # binds to the current task
            await asyncio.sleep(1 if lease.id == "slow" else 0)
        tasks[lease.id] = asyncio.current_task() is first

    w = Worker(q.name, handle, url=q_url(q), max_attempts=1, on_result=done.append)
    arun(work(w, lambda: len(done) == 6))
    by = {r.lease.id: r.outcome for r in done}
    assert by["slow"] is Outcome.DEAD and "TimeoutError" in (q.state("slow").last_error or "")
    assert all(by[f"ok{i}"] is Outcome.COMPLETED for i in range(5))
    assert tasks == {f"ok{i}": True for i in range(5)}
