"""Chaos run: workers SIGKILLed at random and restarted, the server SIGKILLed and restarted from
its AOF (appendfsync always), and at the end: nothing lost, nothing completed twice.

    python bench/chaos.py                    # 100k items, 4 workers, ~2-4 minutes here
    python bench/chaos.py --items 5000       # the CI variant (tests/reliability/test_chaos.py)

Each worker process appends every execution and every completion that `complete` answered True
to its own file outside Redis (flushed per line), so the counts survive its SIGKILL. A worker
killed between `complete` returning True and writing that line leaves one completion unrecorded:
the server's own `completed` counter is the reference for "exactly once".
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import leaseq  # noqa: E402
from leaseq.server.process import ServerProcess  # noqa: E402

WORKER = """
import os, sys, time
sys.path.insert(0, {root!r})
import redis, leaseq
out = open(os.path.join({logdir!r}, f"w{{os.getpid()}}.log"), "a", buffering=1)
client = redis.Redis(port={port}, socket_timeout=3, socket_connect_timeout=1)
q = leaseq.Queue({name!r}, client, lease={lease}, max_attempts=0)
while True:
    try:
        got = q.lease_many(8, timeout=1)
        for lease in got:
            out.write(f"x {{lease.data}}\\n")
        for lease, ok in zip(got, q.complete_many(got)):
            if ok:
                out.write(f"c {{lease.data}}\\n")
    except leaseq.LeaseqConnectionError:
        time.sleep(0.05)
"""


def run(items: int, workers: int, worker_kills: int, server_kills: int, lease: float,
        seed: int, timeout: float) -> dict[str, Any]:
    rng = random.Random(seed)
    logdir = tempfile.mkdtemp(prefix="leaseq-chaos-")
    server = ServerProcess(kind="valkey", appendonly=True, appendfsync="always")
    server.start()
    name = "chaos"
    procs: list[subprocess.Popen[bytes]] = []
    started = time.monotonic()
    try:
        leaseq.Queue(name, server.client()).add_many(range(items))
        code = WORKER.format(root=str(ROOT), logdir=logdir, port=server.port, name=name,
                             lease=lease)

        def spawn() -> subprocess.Popen[bytes]:
            return subprocess.Popen([sys.executable, "-c", code])

        procs = [spawn() for _ in range(workers)]
        admin = leaseq.Queue(name, server.client())
        # kills in random order, spread over the run (4-6k items/s here), then a
        # watch until the queue is drained
        events = ["w"] * worker_kills + ["s"] * server_kills
        rng.shuffle(events)
        gap = max(0.1, items / 8000 / max(1, len(events) + 1))
        done_kills = Counter[str]()
        while time.monotonic() - started < timeout:
            time.sleep(rng.uniform(0.5, 1.5) * gap if events else 0.2)
            try:
                s = admin.stats()
            except leaseq.LeaseqConnectionError:
                continue
            if s.pending + s.delayed + s.leased == 0:
                break
            if events:
                kind = events.pop()
                if kind == "w":
                    victim = rng.randrange(len(procs))
                    procs[victim].send_signal(signal.SIGKILL)
                    procs[victim].wait()
                    procs[victim] = spawn()
                else:
                    server.kill()
                    time.sleep(rng.uniform(0.05, 0.3))
                    server.restart()
                done_kills[kind] += 1
        s = admin.stats()
    finally:
        for p in procs:
            p.send_signal(signal.SIGKILL)
            p.wait()
        server.close()
    executed: Counter[int] = Counter()
    completed: Counter[int] = Counter()
    for log in Path(logdir).glob("w*.log"):
        for line in log.read_text().splitlines():
            kind, _, value = line.partition(" ")
            if value.isdigit():
                (executed if kind == "x" else completed)[int(value)] += 1
    return {
        "items": items, "workers": workers, "seconds": round(time.monotonic() - started, 1),
        "worker_kills": done_kills["w"], "server_kills": done_kills["s"],
        "left_in_queue": s.pending + s.delayed + s.leased + s.dead,
        "completed_on_server": s.counter("completed"),
        "lost": items - s.counter("completed") - s.dead,
        "completions_reported_twice": sum(1 for v in completed.values() if v > 1),
        "completions_unrecorded": items - len(completed),
        "executions": sum(executed.values()),
        "duplicate_executions": sum(executed.values()) - len(executed),
        "expired_leases": s.counter("expired"),
        "logs": logdir,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--worker-kills", type=int, default=10)
    ap.add_argument("--server-kills", type=int, default=3)
    ap.add_argument("--lease", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=int(os.environ.get("CHAOS_SEED", "1")))
    ap.add_argument("--timeout", type=float, default=600.0)
    args = ap.parse_args(argv)
    report = run(args.items, args.workers, args.worker_kills, args.server_kills, args.lease,
                 args.seed, args.timeout)
    print(json.dumps(report, indent=2))
    ok = (report["lost"] == 0 and report["left_in_queue"] == 0
          and report["completed_on_server"] == args.items
          and report["completions_reported_twice"] == 0)
    print("chaos:", "OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
