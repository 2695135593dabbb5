"""The CI variant of bench/chaos.py: 5,000 items, workers SIGKILLed at random, the server
SIGKILLed and restarted from its AOF three times; nothing lost, nothing completed twice."""

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
    assert report["lost"] == 0 and report["left_in_queue"] == 0
    assert report["completed_on_server"] == 5000
    assert report["completions_reported_twice"] == 0
    assert report["executions"] >= 5000 - report["completions_unrecorded"]
