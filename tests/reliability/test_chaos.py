"""The CI variant of bench/chaos.py: 5,000 items, workers SIGKILLed at random, the server
SIGKILLed and restarted from its AOF three times, 1% poison items; nothing lost, nothing
completed twice, dead letters only where the policy says, no key left behind."""

from __future__ import annotations

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "chaos.py"


def test_chaos_short() -> None:
    spec = importlib.util.spec_from_file_location("leaseq_bench_chaos", BENCH)
    assert spec is not None and spec.loader is not None
    chaos = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(chaos)
    report = chaos.run(items=5000, workers=3, worker_kills=6, server_kills=3, lease=2.0,
                       seed=7, timeout=120.0)
    print(report)
    assert report["worker_kills"] + report["server_kills"] >= 3  # it really was chaotic
    assert report["expired_leases"] > 0  # workers were killed holding leases
    assert report["lost"] == 0 and report["left_in_queue"] == 0
    assert report["leftover_keys"] == 0  # after the dead letters are purged: counters only
    assert report["completed_on_server"] + report["dead_lettered"] == 5000
    assert report["completions_reported_twice"] == 0 and report["completed_poison"] == 0
    # dead letters exactly where the policy says: every poison item, and no other item
    # unless its leases ran out max_attempts times
    assert report["poison_items"] == 50 and report["poison_not_dead"] == 0
    assert report["dead_against_policy"] == 0
    assert report["executions"] >= 5000 - report["completions_unrecorded"]
    assert chaos.ok_report(report)
