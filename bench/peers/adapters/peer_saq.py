"""saq adapter: ``Queue.enqueue`` one by one; consume with saq's ``Worker`` (concurrency from
the harness; blocking dequeue, saq's defaults otherwise: sweep, job timeout 10 s, ttl 600 s)."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import common as c
from saq import Queue, Worker

REC: c.Recorder | None = None


async def noop(ctx: dict[str, Any], *, seq: int, kind: str, pad: str) -> None:
    assert REC is not None
    REC.hit(seq)


async def amain() -> None:
    global REC
    a = c.parse_args()
    queue = Queue.from_url(a.url, name=a.queue)
    await queue.connect()
    ver = c.versions("saq", "redis", "hiredis")
    await queue.redis.ping()
    if a.role == "enqueue":
        await c.aenqueue(a, lambda it: queue.enqueue("noop", **it), versions=ver)
    elif a.role == "latency-producer":
        await c.aproducer_loop(lambda seq: queue.enqueue("noop", **c.payload(seq)))
    else:
        REC = rec = c.Recorder(a.role == "latency-consumer")
        worker = Worker(queue, functions=[noop], concurrency=a.concurrency)
        rec.go_ns = c.ready_and_wait()
        run = asyncio.ensure_future(worker.start())
        watch = asyncio.ensure_future(rec.wait_idle())
        await asyncio.wait([run, watch], return_when=asyncio.FIRST_COMPLETED)
        worker.event.set()
        await run
        rec.finish(a.out, versions=ver, concurrency=a.concurrency)
    await queue.disconnect()


if __name__ == "__main__":
    sys.exit(asyncio.run(amain()))
