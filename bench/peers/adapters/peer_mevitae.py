"""redis-work-queue (MeVitae) adapter: ``lease(block=True)`` + ``complete`` loop on one
connection; bulk = ``add_item_to_pipeline`` on one pipeline per chunk (its documented way)."""

from __future__ import annotations

import json
import sys

import common as c
from redis import Redis
from redis_work_queue import Item, KeyPrefix, WorkQueue

LEASE_SECS = 30


def main() -> None:
    a = c.parse_args()
    db = Redis.from_url(a.url)
    wq = WorkQueue(KeyPrefix(a.queue))
    ver = c.versions("redis-work-queue", "redis", "hiredis")
    db.ping()
    if a.role == "enqueue":
        def add_part(part: list[str]) -> None:
            pipe = db.pipeline()
            for data in part:
                wq.add_item_to_pipeline(pipe, Item(data))
            pipe.execute()

        items = [json.dumps(p, separators=(",", ":")) for p in c.payloads(a.start, a.items)]
        c.enqueue(a, lambda data: wq.add_item(db, Item(data)), add_part, items=items,
                  versions=ver)
    elif a.role == "latency-producer":
        c.producer_loop(lambda seq: wq.add_item(db, Item(json.dumps(c.payload(seq)))))
    else:
        rec = c.Recorder(a.role == "latency-consumer")
        rec.go_ns = c.ready_and_wait()
        wait = 0 if rec.latency else int(c.IDLE_STOP)
        while True:
            item = wq.lease(db, LEASE_SECS, block=True, timeout=wait)
            if item is None:
                if rec.idle():
                    break
                continue
            rec.hit(c.seq_of(item.data()))
            wq.complete(db, item)
        rec.finish(a.out, versions=ver)


if __name__ == "__main__":
    sys.exit(main())
