"""leaseq quickstart, asyncio: produce with leaseq.aio.Queue, consume with a Worker.

    python examples/quickstart_async.py

The worker runs an async handler 20 at a time, keeps leases alive while jobs run, retries
failures with backoff and dead-letters an item after max_attempts.
"""

from __future__ import annotations

import asyncio
import logging
import random

from leaseq import Backoff, Lease
from leaseq.aio import Queue
from leaseq.worker import Retry, Worker

QUEUE = "quickstart-async"


async def handle(job: Lease) -> dict[str, int]:
    """Square a number, pretending to call a flaky service."""
    await asyncio.sleep(random.uniform(0.001, 0.02))
    if job.data["n"] % 25 == 0 and job.attempt == 1:
        raise Retry(delay=0.2, reason="service busy")  # ask for a retry in 0.2 s
    if job.data["n"] == 13:
        raise ValueError("13 is unlucky")  # fails every time: ends as a dead letter
    return {"square": job.data["n"] ** 2}


async def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    async with Queue(QUEUE, max_attempts=3, backoff=Backoff(base=0.1)) as q:
        await q.purge()
        await q.add_many({"n": n} for n in range(200))
        worker = Worker(q, handle, concurrency=20, idle_exit=1.0)
        counts = await worker.run()  # returns once the queue stays empty for 1 s
        print({str(k): v for k, v in counts.items() if v})
        print((await q.stats()).counter("completed"), "completed")
        total, dead = await q.dead()
        print(f"{total} dead letter(s):", [(d.id, (d.last_error or "").splitlines()[0])
                                           for d in dead])


if __name__ == "__main__":
    asyncio.run(main())
