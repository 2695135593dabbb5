"""On a 3-master cluster, the master that holds a queue's slot is SIGKILLed mid-run and
restarted from its AOF: nothing is lost, nothing is completed twice."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
from redis.cluster import RedisCluster

import leaseq
from leaseq.keys import QueueKeys
from leaseq.server.cluster import LocalCluster

N_ITEMS = 3000


def test_killed_master_loses_nothing() -> None:
    cluster = LocalCluster(3, kind="valkey", appendonly=True, appendfsync="always")
    try:
        cluster.start()
    except Exception as exc:  # pragma: no cover - depends on the machine
        cluster.close()
        pytest.skip(f"cluster could not start: {exc}")
    name = "cluster-crash"
    try:
        admin_client = cluster.client()
        port = admin_client.get_node_from_key(QueueKeys.of(name).meta).port
        owner = next(i for i, node in enumerate(cluster.nodes) if node.port == port)
        leaseq.Queue(name, admin_client).add_many(range(N_ITEMS))
        completed: Counter[int] = Counter()
        errors = Counter[str]()
        lock = threading.Lock()
        stop = threading.Event()

        def work() -> None:
            client: RedisCluster = cluster.client()
            q = leaseq.Queue(name, client, lease=2.0, max_attempts=0)
            while not stop.is_set():
                try:
                    lease = q.lease(timeout=0.3)
                    if lease is not None and q.complete(lease):
                        with lock:
                            completed[lease.data] += 1
                except Exception:  # the slot's master is down: leaseq or cluster errors
                    with lock:
                        errors["down"] += 1
                    time.sleep(0.1)

        threads = [threading.Thread(target=work) for _ in range(3)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        left = admin_client.zcard(QueueKeys.of(name).pending)
        cluster.kill_node(owner)
        time.sleep(0.3)
        cluster.restart_node(owner)
        deadline = time.monotonic() + 90
        stats = None
        while time.monotonic() < deadline:
            try:
                stats = leaseq.Queue(name, cluster.client()).stats()
            except Exception:
                time.sleep(0.3)
                continue
            if stats.pending + stats.delayed + stats.leased == 0:
                break
            time.sleep(0.3)
        stop.set()
        for t in threads:
            t.join(15)
        assert left > 0  # the kill happened mid-run...
        assert errors["down"] > 0  # ...to the master that serves the queue
        assert stats is not None
        assert (stats.pending, stats.delayed, stats.leased, stats.dead) == (0, 0, 0, 0)
        assert stats.counter("completed") == N_ITEMS == stats.counter("added")
        assert not [k for k, v in completed.items() if v > 1]
    finally:
        cluster.close()

