"""The server itself is SIGKILLed and restarted from its AOF (appendfsync always) while workers
run: nothing is lost and no item is completed twice."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
import redis

import leaseq
from leaseq.server.process import ServerProcess

N_ITEMS = 6000
KILLS = 3


@pytest.mark.parametrize("kind", ["valkey", "redis"])
def test_server_kills_lose_nothing_and_complete_nothing_twice(kind: str) -> None:
    server = ServerProcess(kind=kind, appendonly=True, appendfsync="always")
    try:
        server.start()
    except Exception as exc:  # pragma: no cover - depends on the machine
        server.close()
        pytest.skip(f"{kind} server could not start: {exc}")
    name = f"crash-{kind}"
    try:
        leaseq.Queue(name, server.client()).add_many(range(N_ITEMS))
        executed: Counter[int] = Counter()
        completed: Counter[int] = Counter()
        errors = Counter[str]()
        lock = threading.Lock()
        stop = threading.Event()

        def work() -> None:
            client = redis.Redis(port=server.port, socket_timeout=3, socket_connect_timeout=1)
            q = leaseq.Queue(name, client, lease=2.0, max_attempts=0)
            while not stop.is_set():
                try:
                    lease = q.lease(timeout=0.3)
                    if lease is None:
                        continue
                    with lock:
                        executed[lease.data] += 1
                    if q.complete(lease):
                        with lock:
                            completed[lease.data] += 1
                except leaseq.LeaseqConnectionError:
                    with lock:
                        errors["connection"] += 1
                    time.sleep(0.05)

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        admin_client = server.client()
        left_at_kill = []
        for _ in range(KILLS):
            time.sleep(0.4)
            left_at_kill.append(admin_client.zcard(f"leaseq:{{{name}}}:pending"))
            server.kill()
            time.sleep(0.2)
            server.restart()
        admin = leaseq.Queue(name, server.client())
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            s = admin.stats()
            if s.pending + s.delayed + s.leased == 0:
                break
            time.sleep(0.2)
        stop.set()
        for t in threads:
            t.join(10)
        s = admin.stats()
        assert all(left > 0 for left in left_at_kill), left_at_kill  # killed mid-run
        # nothing lost: every item left the queue by being completed, exactly once (the
        # server's own counter only moves when an item is really completed)
        assert (s.pending, s.delayed, s.leased, s.dead) == (0, 0, 0, 0)
        assert s.counter("completed") == N_ITEMS
        assert s.counter("added") == N_ITEMS
        # no two live workers were told they completed the same item
        assert not [k for k, v in completed.items() if v > 1]
        # a complete whose reply was lost in a kill is re-sent by the client and answered as
        # the first one was: every completion reached its worker, bar calls that gave up
        assert sum(completed.values()) >= N_ITEMS - errors["connection"]
        # executions >= completions; the extra ones are leases whose reply or holder was lost
        assert sum(executed.values()) >= sum(completed.values())
        assert set(executed) == set(range(N_ITEMS))
        print(f"\n{kind}: {N_ITEMS} items, {KILLS} server kills, completions seen by workers "
              f"{sum(completed.values())}, executions {sum(executed.values())}, "
              f"connection errors {errors['connection']}, expired {s.counter('expired')}, "
              f"pending at the kills {left_at_kill}")
    finally:
        server.close()
