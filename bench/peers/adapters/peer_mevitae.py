"""redis-work-queue (MeVitae) adapter: ``lease(block=True)`` + ``complete`` loop on one
connection; bulk = ``add_item_to_pipeline`` on one pipeline per chunk (its documented way)."""

from __future__ import annotations

import json
import sys
import time

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
        items = [json.dumps(p, separators=(",", ":")) for p in c.payloads(a.start, a.items)]
        c.ready_and_wait()
        t0 = time.perf_counter()
        if a.bulk:
            for part in c.chunks(items, a.chunk):
                pipe = db.pipeline()
                for data in part:
                    wq.add_item_to_pipeline(pipe, Item(data))
                pipe.execute()
        else:
            for data in items:
                wq.add_item(db, Item(data))
        c.result(seconds=time.perf_counter() - t0, versions=ver)
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
