"""leaseq quickstart, synchronous API: add, lease, complete, fail, inspect.

    python examples/quickstart_sync.py

Uses $LEASEQ_URL if set, else the embedded server (started on first use, shared, persistent;
`leaseq server stop` stops it).
"""

from __future__ import annotations

from leaseq import Backoff, Queue

with Queue("quickstart-sync", lease=30, max_attempts=2, backoff=Backoff(base=0.2)) as q:
    q.purge()  # start clean: this example may have run before
    for i in range(3):
        q.add({"to": f"user{i}@example.com", "subject": "hello"})
    q.add({"to": "boss@example.com", "subject": "urgent"}, priority=10)  # leased first
    q.add({"to": "later@example.com", "subject": "reminder"}, delay=0.5)  # due in 0.5 s
    q.add({"to": "broken", "subject": "bad address"}, id="broken")  # fixed id

    # A consumer: lease one item at a time; wait (server-side, no polling) up to 2 s.
    while (job := q.lease(timeout=2)) is not None:
        if "@" not in job.data["to"]:
            outcome = q.fail(job, error="invalid address")  # retried, then dead-lettered
            print(f"failed    {job.id} attempt {job.attempt}: {outcome}")
            continue
        q.complete(job, result={"status": "sent"})
        print(f"completed {job.id} -> {job.data['to']}")

    s = q.stats()
    print(f"pending={s.pending} delayed={s.delayed} leased={s.leased} dead={s.dead} "
          f"completed={s.counter('completed')}")
    total, dead = q.dead()
    for item in dead:
        print(f"dead letter {item.id}: {item.last_error}")
