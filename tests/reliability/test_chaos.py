"""The CI variants of bench/chaos.py: worker processes SIGKILLed at random (only while at work),
the server SIGKILLed and restarted from its AOF, 1% poison items under max_attempts 3; nothing
lost, nothing completed twice, dead letters only where the policy says, no key left behind.
Once on one server (5,000 items, 3 server kills), once on a 3-master cluster whose queue master
is killed and restarted."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

BENCH = Path(__file__).resolve().parents[2] / "bench" / "chaos.py"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("leaseq_bench_chaos", BENCH)
    assert spec is not None and spec.loader is not None
    chaos = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(chaos)
    return chaos


def check(chaos: ModuleType, report: dict[str, Any], items: int) -> None:
    print(report)
    assert report["worker_kills"] >= 3 and report["server_kills"] >= 1  # really chaotic
    assert report["expired_leases"] > 0  # workers were killed holding leases
    assert report["worker_crashes"] == 0
    assert report["lost"] == 0 and report["left_in_queue"] == 0
    assert report["leftover_keys"] == 0  # after the dead letters are purged: counters only
    assert report["completed_on_server"] + report["dead_lettered"] == items
    assert report["completions_reported_twice"] == 0 and report["completed_poison"] == 0
    # dead letters exactly where the policy says: every poison item, and no other item
    # unless its leases ran out max_attempts times
    assert report["poison_items"] == items // 100 and report["poison_not_dead"] == 0
    assert report["dead_against_policy"] == 0
    assert report["executions"] >= report["completed_on_server"] - report["completions_unrecorded"]
    assert chaos.ok_report(report)


def test_chaos_short() -> None:
    chaos = load()
    report = chaos.run(items=5000, workers=3, worker_kills=6, server_kills=3, lease=2.0,
                       seed=7, timeout=120.0)
    check(chaos, report, 5000)


def test_chaos_cluster_short() -> None:
    chaos = load()
    report = chaos.run(items=3000, workers=3, worker_kills=3, server_kills=1, lease=2.0,
                       seed=11, timeout=120.0, cluster=True)
    check(chaos, report, 3000)
