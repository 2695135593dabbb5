"""leaseq adapter. Variants: ``sync`` (the single-item API on one connection: ``lease`` then a
``complete_and_lease`` chain), ``async`` (the single-item API of ``leaseq.aio.Queue`` from
``--concurrency`` tasks, each adding or leasing and completing one item at a time; the queue
coalesces what the tasks call in one loop turn into one script call) and ``worker``
(``leaseq.worker.Worker``, async no-op handler)."""

from __future__ import annotations

import asyncio
import sys
import time

import common as c

import leaseq
import leaseq.aio
from leaseq.worker import Worker


def main() -> None:
    a = c.parse_args()
    if a.variant == "async":
        asyncio.run(run_async(a, c.versions("leaseq", "redis", "hiredis")))
        return
    q = leaseq.Queue(a.queue, url=a.url)
    ver = c.versions("leaseq", "redis", "hiredis")
    if a.role == "enqueue":
        q.stats()  # connect and load scripts before GO
        c.enqueue(a, q.add, q.add_many, versions=ver)
    elif a.role == "latency-producer":
        q.stats()
        c.producer_loop(lambda seq: q.add(c.payload(seq)) and None)
    elif a.variant == "worker":
        asyncio.run(run_worker(a, ver))
    else:
        rec = c.Recorder(a.role == "latency-consumer")
        q.stats()
        rec.go_ns = c.ready_and_wait()
        wait = None if rec.latency else c.IDLE_STOP
        while True:
            lease = q.lease(timeout=wait)
            while lease is not None:  # the chain: complete this one, lease the next, 1 RT
                rec.hit(c.seq_of(lease.data))
                _, nxt = q.complete_and_lease(lease)
                lease = nxt[0] if nxt else None
            if rec.idle():
                break
        rec.finish(a.out, versions=ver)


async def run_async(a, ver) -> None:  # type: ignore[no-untyped-def]
    async with leaseq.aio.Queue(a.queue, url=a.url) as q:
        await q.stats()  # connect and load scripts before GO
        if a.role == "enqueue":
            items = c.payloads(a.start, a.items)
            c.ready_and_wait()
            t0 = time.perf_counter()
            if a.bulk:
                for part in c.chunks(items, a.chunk):
                    await q.add_many(part)
            else:
                it = iter(items)

                async def producer() -> None:
                    for one in it:  # each task adds one item at a time
                        await q.add(one)

                await asyncio.gather(*(producer() for _ in range(a.concurrency)))
            c.result(seconds=time.perf_counter() - t0, versions=ver, concurrency=a.concurrency)
            return
        if a.role == "latency-producer":
            await c.aproducer_loop(lambda seq: q.add(c.payload(seq)))
            return
        rec = c.Recorder(a.role == "latency-consumer")
        rec.go_ns = c.ready_and_wait()
        tasks = 1 if rec.latency else a.concurrency

        async def consumer() -> None:
            while not rec.idle():
                lease = await q.lease(timeout=c.IDLE_STOP / 2)
                if lease is not None:
                    rec.hit(c.seq_of(lease.data))
                    await q.complete(lease)

        await asyncio.gather(*(consumer() for _ in range(tasks)))
        rec.finish(a.out, versions=ver, concurrency=tasks)


async def run_worker(a, ver) -> None:  # type: ignore[no-untyped-def]
    rec = c.Recorder(a.role == "latency-consumer")

    async def noop(lease: leaseq.Lease) -> None:
        rec.hit(c.seq_of(lease.data))

    worker = Worker(a.queue, noop, url=a.url, concurrency=a.concurrency)
    rec.go_ns = c.ready_and_wait()
    run = asyncio.ensure_future(worker.run())
    watch = asyncio.ensure_future(rec.wait_idle())
    await asyncio.wait([run, watch], return_when=asyncio.FIRST_COMPLETED)
    worker.stop()
    await run
    watch.cancel()
    rec.finish(a.out, versions=ver, concurrency=a.concurrency)


if __name__ == "__main__":
    sys.exit(main())
