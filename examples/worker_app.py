"""Handlers for the ``leaseq worker`` command.

    python examples/worker_app.py                 # enqueue some jobs on "emails" and "thumbs"
    leaseq worker examples.worker_app:send_email --queue emails --concurrency 50
    leaseq worker examples.worker_app:make_thumbnail --queue thumbs -c 4 --processes 2
    leaseq stats

(Run from the repository root: the current directory is importable.) A handler takes a
leaseq.Lease; its return value is kept as the item's result; an exception fails the attempt
(retried with backoff, dead-lettered after --max-attempts); Retry(delay=...) picks the delay.
Stop a worker with ^C or SIGTERM: running jobs get --grace seconds, the rest is given back.
"""

from __future__ import annotations

import asyncio
import hashlib
import random

from leaseq import Lease, Queue
from leaseq.worker import Retry, current


async def send_email(job: Lease) -> dict[str, str]:
    """An async handler: many run at once on one event loop."""
    msg = job.data
    await asyncio.sleep(random.uniform(0.005, 0.05))  # the SMTP round trip
    if random.random() < 0.05:
        raise Retry(delay=1.0, reason="SMTP server said 421, try later")
    if "@" not in msg["to"]:
        raise ValueError(f"invalid address {msg['to']!r}")  # dead letter after retries
    return {"message_id": hashlib.sha1(msg["to"].encode()).hexdigest()[:12]}


def make_thumbnail(job: Lease) -> dict[str, int]:
    """A sync handler: runs on a worker thread; long loops should check current().cancelled
    (set when the lease is lost, the job times out or the worker shuts down)."""
    size = job.data["size"]
    digest = b""
    for _ in range(size):
        if current().cancelled:
            raise RuntimeError("abandoned")
        digest = hashlib.sha256(digest + job.id.encode()).digest()
    return {"pixels": size}


def enqueue() -> None:
    with Queue("emails") as emails:
        n = len(emails.add_many({"to": f"user{i}@example.com"} for i in range(1000)))
        emails.add({"to": "not-an-address"})
        print(f"added {n + 1} emails")
    with Queue("thumbs") as thumbs:
        print(f"added {len(thumbs.add_many({'size': 2000 + i} for i in range(200)))} thumbs")


if __name__ == "__main__":
    enqueue()
