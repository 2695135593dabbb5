"""rq adapter: ``Queue.enqueue`` one by one, bulk = ``enqueue_many`` (a pipeline per chunk);
consume with ``SimpleWorker`` (no fork) in burst mode; rq >= 2 moves each job to an
intermediate list while it is taken (its reliable dequeue). Logging at WARNING (no per-job
log lines)."""

from __future__ import annotations

import sys
import time

import common as c
from redis import Redis
from rq import Queue, SimpleWorker

REC: c.Recorder | None = None


def noop(*, seq: int, kind: str, pad: str) -> None:
    rec = sys.modules["__main__"].REC  # the worker imports this file as a second module
    rec.hit(seq)


def main() -> None:
    a = c.parse_args()
    db = Redis.from_url(a.url)
    q = Queue(a.queue, connection=db)
    ver = c.versions("rq", "redis", "hiredis")
    db.ping()
    fn = "peer_rq.noop"
    if a.role == "enqueue":
        c.enqueue(a, lambda it: q.enqueue(fn, kwargs=it),
                  lambda part: q.enqueue_many([Queue.prepare_data(fn, kwargs=it) for it in part]),
                  versions=ver)
    elif a.role == "latency-producer":
        c.producer_loop(lambda seq: q.enqueue(fn, kwargs=c.payload(seq)) and None)
    else:
        global REC
        REC = rec = c.Recorder(a.role == "latency-consumer")
        worker = SimpleWorker([q], connection=db)
        rec.go_ns = c.ready_and_wait()
        if rec.latency:
            worker.work(burst=False, logging_level="WARNING")
        else:
            while not rec.idle():
                worker.work(burst=True, logging_level="WARNING")
                time.sleep(0.01)
        rec.finish(a.out, versions=ver)


if __name__ == "__main__":
    sys.exit(main())
