"""Torrelque adapter (asyncio): ``dequeue`` + ``release`` loop, the sweep scheduled (its
reliable setting: stale tasks come back); bulk = ``enqueue(pipeline=...)`` per chunk.
``TorrelqueLookupError`` from ``dequeue`` (a race between consumers, see below) is counted and
skipped, as a long-running consumer has to."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import common as c
import redis.asyncio
from torrelque import Torrelque, TorrelqueLookupError, TorrelqueTimeoutError


async def amain() -> None:
    a = c.parse_args()
    client = redis.asyncio.Redis.from_url(a.url)
    tq = Torrelque(client, queue=a.queue)
    ver = c.versions("torrelque", "redis", "hiredis")
    await client.ping()
    if a.role == "enqueue":
        async def add_part(part: list[Any]) -> None:
            async with client.pipeline(transaction=True) as pipe:
                for it in part:
                    await tq.enqueue(it, pipeline=pipe)
                await pipe.execute()

        await c.aenqueue(a, tq.enqueue, add_part, versions=ver)
    elif a.role == "latency-producer":
        await c.aproducer_loop(lambda seq: tq.enqueue(c.payload(seq)))
    else:
        rec = c.Recorder(a.role == "latency-consumer")
        rec.go_ns = c.ready_and_wait()
        tq.schedule_sweep()
        wait = None if rec.latency else int(c.IDLE_STOP)
        races = 0
        while True:
            try:
                task_id, data = await tq.dequeue(timeout=wait)
            except TorrelqueTimeoutError:
                if rec.idle():
                    break
                continue
            except TorrelqueLookupError:
                # Two consumers share one "dequeueing" list: the other one's dequeue script took
                # the id this one popped (it is delivered there). Torrelque raises; go on.
                races += 1
                continue
            rec.hit(c.seq_of(data))
            await tq.release(task_id)
        tq.unschedule_sweep()
        rec.finish(a.out, versions=ver, lookup_errors=races)
    await client.aclose()


if __name__ == "__main__":
    sys.exit(asyncio.run(amain()))
