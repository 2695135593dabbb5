"""Crash and concurrency guarantees, on real servers and real processes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import leaseq
import leaseq.aio
from leaseq import State
from leaseq.keys import QueueKeys

ROOT = Path(__file__).resolve().parents[2]

HOLDER = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {root!r})
    import leaseq
    q = leaseq.Queue({name!r}, url={url!r}, lease={lease})
    lease = q.lease(timeout=10)
    print(lease.id, flush=True)
    time.sleep(3600)  # "works" until killed
    """
)


@pytest.mark.parametrize("server", ["valkey", "redis"], indirect=True)
def test_sigkilled_holder_loses_the_item_to_another_worker(server: Any, queue_name: str) -> None:
    q = leaseq.Queue(queue_name, server.client(), lease=1.0)
    q.add({"job": "x"}, id="job-1")
    code = HOLDER.format(root=str(ROOT), name=queue_name, url=server.url, lease=1.0)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "job-1"
        assert q.state("job-1").state is State.LEASED
        assert q.lease(block=False) is None  # held by a live process
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)
    finally:
        if proc.poll() is None:
            proc.kill()
    t0 = time.monotonic()
    again = q.lease(timeout=5)
    assert again is not None and again.id == "job-1" and again.attempt == 2
    assert time.monotonic() - t0 < 3.0  # back after the 1 s deadline, without a sweeper
    assert q.complete(again)
    assert q.stats().counter("expired") == 1


@pytest.mark.parametrize("server", ["valkey", "redis", "cluster"], indirect=True)
def test_threads_complete_every_item_exactly_once(server: Any, queue_name: str) -> None:
    n_items, n_threads = 2000, 8
    producer = leaseq.Queue(queue_name, server.client())
    producer.add_many(range(n_items))
    wins: Counter[int] = Counter()
    lock = threading.Lock()

    def work() -> None:
        q = leaseq.Queue(queue_name, server.client(), lease=30)
        while (lease := q.lease(timeout=0.3)) is not None:
            if q.complete(lease):
                with lock:
                    wins[lease.data] += 1

    threads = [threading.Thread(target=work) for _ in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(wins) == list(range(n_items))
    assert set(wins.values()) == {1}
    s = producer.stats()
    assert (s.pending, s.leased, s.delayed, s.dead) == (0, 0, 0, 0)
    assert s.counter("completed") == n_items


@pytest.mark.parametrize("server", ["valkey", "cluster"], indirect=True)
def test_racing_completers_get_exactly_one_true(server: Any, queue_name: str) -> None:
    q = leaseq.Queue(queue_name, server.client(), lease=5)
    q.add_many(range(200))
    # Lease every item twice (the first lease expires), so two holders race to complete.
    leases = q.lease_many(200, block=False)
    server.client().hincrby(QueueKeys.of(queue_name).meta, "clock_offset", 6000)
    leases += q.lease_many(200, block=False)
    assert len(leases) == 400 and len({x.token for x in leases}) == 400
    results: list[tuple[int, bool]] = []
    lock = threading.Lock()

    def finish(batch: list[leaseq.Lease]) -> None:
        qq = leaseq.Queue(queue_name, server.client())
        for lease in batch:
            ok = qq.complete(lease)
            with lock:
                results.append((lease.data, ok))

    threads = [threading.Thread(target=finish, args=(leases[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    trues = Counter(data for data, ok in results if ok)
    assert sorted(trues) == list(range(200)) and set(trues.values()) == {1}


@pytest.mark.parametrize("server", ["valkey", "redis", "cluster"], indirect=True)
def test_async_tasks_complete_every_item_exactly_once(server: Any, queue_name: str) -> None:
    n_items = 3000

    async def main() -> tuple[Counter[int], leaseq.Stats]:
        client = server.async_client()
        q = leaseq.aio.Queue(queue_name, client, lease=30)
        await asyncio.gather(*(q.add(i) for i in range(n_items)))
        wins: Counter[int] = Counter()

        async def work() -> None:
            while (lease := await q.lease(timeout=0.3)) is not None:
                if await q.complete(lease):
                    wins[lease.data] += 1

        await asyncio.gather(*(work() for _ in range(100)))
        stats = await q.stats()
        await q.close()
        await client.aclose()
        return wins, stats

    wins, s = asyncio.run(main())
    assert sorted(wins) == list(range(n_items)) and set(wins.values()) == {1}
    assert (s.pending, s.leased) == (0, 0) and s.counter("completed") == n_items


@pytest.mark.parametrize("server", ["valkey"], indirect=True)
def test_one_add_wakes_one_waiter(server: Any, queue_name: str) -> None:
    """Five idle workers wait; three adds wake exactly three of them, promptly."""
    got: list[float] = []
    lock = threading.Lock()

    def wait() -> None:
        q = leaseq.Queue(queue_name, server.client())
        lease = q.lease(timeout=2.5)
        if lease is not None:
            with lock:
                got.append(time.monotonic())

    threads = [threading.Thread(target=wait) for _ in range(5)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    start = time.monotonic()
    leaseq.Queue(queue_name, server.client()).add_many(["a", "b", "c"])
    for t in threads:
        t.join(5)
    assert len(got) == 3
    assert max(got) - start < 0.5


@pytest.mark.parametrize("server", ["valkey"], indirect=True)
def test_cancelled_async_lease_gives_its_item_back(server: Any, queue_name: str) -> None:
    async def main() -> tuple[int, int]:
        client = server.async_client()
        q = leaseq.aio.Queue(queue_name, client)
        await q.add("x")
        task = asyncio.ensure_future(q.lease(block=False))
        await asyncio.sleep(0)  # the lease call is queued in the coalescer...
        task.cancel()  # ...and its caller goes away before the reply
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.sleep(0.2)
        s = await q.stats()
        await q.close()
        await client.aclose()
        return s.pending, s.leased

    assert asyncio.run(main()) == (1, 0)
