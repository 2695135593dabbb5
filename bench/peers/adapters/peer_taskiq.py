"""taskiq-redis adapter: ``RedisStreamBroker`` (the taskiq-redis broker with acknowledgements:
a consumer group, XACK after the result is saved, XAUTOCLAIM of idle messages); ``.kiq`` one
by one; consume with taskiq's receiver (``run_receiver_task``, max_async_tasks from the
harness; taskiq's defaults otherwise)."""

from __future__ import annotations

import asyncio
import contextlib
import sys

import common as c
from taskiq.api import run_receiver_task
from taskiq_redis import RedisStreamBroker

REC: c.Recorder | None = None


async def amain() -> None:
    global REC
    a = c.parse_args()
    broker = RedisStreamBroker(url=a.url, queue_name=a.queue)

    @broker.task(task_name="noop")
    async def noop(seq: int, kind: str, pad: str) -> None:
        assert REC is not None
        REC.hit(seq)

    ver = c.versions("taskiq", "taskiq-redis", "redis", "hiredis")
    if a.role == "enqueue":
        await broker.startup()  # also creates the consumer group (it reads from "$")
        await c.aenqueue(a, lambda it: noop.kiq(**it), versions=ver)
        await broker.shutdown()
    elif a.role == "latency-producer":
        await broker.startup()

        async def add(seq: int) -> None:
            await noop.kiq(**c.payload(seq))

        await c.aproducer_loop(add)
    else:
        REC = rec = c.Recorder(a.role == "latency-consumer")
        broker.is_worker_process = True
        await broker.startup()
        rec.go_ns = c.ready_and_wait()
        run = asyncio.ensure_future(run_receiver_task(broker, max_async_tasks=a.concurrency))
        watch = asyncio.ensure_future(rec.wait_idle())
        await asyncio.wait([run, watch], return_when=asyncio.FIRST_COMPLETED)
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run
        rec.finish(a.out, versions=ver, concurrency=a.concurrency)


if __name__ == "__main__":
    sys.exit(asyncio.run(amain()))
