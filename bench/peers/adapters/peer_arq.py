"""arq adapter: ``enqueue_job`` one by one; consume with arq's ``Worker`` (max_jobs from the
harness; arq's defaults otherwise: poll_delay 0.5 s, keep_result 3600 s, retries on)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from typing import Any

import common as c
from arq import create_pool
from arq.connections import RedisSettings
from arq.worker import Worker

REC: c.Recorder | None = None


async def noop(ctx: dict[str, Any], *, seq: int, kind: str, pad: str) -> None:
    assert REC is not None
    REC.hit(seq)


async def amain() -> None:
    global REC
    a = c.parse_args()
    settings = RedisSettings.from_dsn(a.url)
    pool = await create_pool(settings, default_queue_name=a.queue)
    ver = c.versions("arq", "redis", "hiredis")
    await pool.ping()
    if a.role == "enqueue":
        await c.aenqueue(a, lambda it: pool.enqueue_job("noop", **it), versions=ver)
    elif a.role == "latency-producer":
        await c.aproducer_loop(lambda seq: pool.enqueue_job("noop", **c.payload(seq)))
    else:
        REC = rec = c.Recorder(a.role == "latency-consumer")
        worker = Worker([noop], queue_name=a.queue, redis_pool=pool, max_jobs=a.concurrency,
                        handle_signals=False, log_results=False)
        rec.go_ns = c.ready_and_wait()
        run = asyncio.ensure_future(worker.async_run())
        watch = asyncio.ensure_future(rec.wait_idle())
        await asyncio.wait([run, watch], return_when=asyncio.FIRST_COMPLETED)
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run
        await worker.close()
        rec.finish(a.out, versions=ver, concurrency=a.concurrency)
        return
    await pool.aclose()


if __name__ == "__main__":
    sys.exit(asyncio.run(amain()))
