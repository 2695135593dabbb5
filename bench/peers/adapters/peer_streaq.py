"""streaq adapter: ``task.enqueue`` one by one, bulk = ``Worker.enqueue_many`` (one pipeline per
chunk); consume with streaq's ``Worker`` (Redis streams + consumer group, concurrency from the
harness; streaq's defaults otherwise: prefetch = concurrency, idle_timeout 60 s, results 5 min)."""

from __future__ import annotations

import sys

import anyio
import common as c
from streaq import Worker

REC: c.Recorder | None = None


def main() -> None:
    a = c.parse_args()
    worker = Worker(redis_url=a.url, queue_name=a.queue, concurrency=a.concurrency,
                    handle_signals=False)

    @worker.task
    async def noop(*, seq: int, kind: str, pad: str) -> None:
        assert REC is not None
        REC.hit(seq)

    ver = c.versions("streaq", "coredis")

    async def amain() -> None:
        global REC
        if a.role == "enqueue":
            async with worker:
                await worker.redis.ping()
                await c.aenqueue(
                    a, lambda it: noop.enqueue(**it),
                    lambda part: worker.enqueue_many([noop.enqueue(**it) for it in part]),
                    versions=ver)
        elif a.role == "latency-producer":
            async with worker:
                async def add(seq: int) -> None:
                    await noop.enqueue(**c.payload(seq))
                await c.aproducer_loop(add)
        else:
            REC = rec = c.Recorder(a.role == "latency-consumer")
            rec.go_ns = c.ready_and_wait()
            async with anyio.create_task_group() as tg:
                tg.start_soon(worker.run_async)
                await rec.wait_idle()
                tg.cancel_scope.cancel()
            rec.finish(a.out, versions=ver, concurrency=a.concurrency)

    anyio.run(amain)


if __name__ == "__main__":
    sys.exit(main())
