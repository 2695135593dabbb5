"""Chaos run: workers SIGKILLed at random and restarted, the server SIGKILLed and restarted from
its AOF (appendfsync always), and at the end: nothing lost, nothing completed twice, dead letters
only where the policy puts them, no key left behind.

    python bench/chaos.py                    # 100k items, 4 workers, ~2-4 minutes here
    python bench/chaos.py --items 5000       # the CI variant (tests/reliability/test_chaos.py)
    python bench/chaos.py --cluster          # a 3-master cluster; the queue's master is killed

Each worker process appends every execution and every completion that `complete` answered True
to its own file outside Redis (flushed per line), so the counts survive its SIGKILL. A worker
killed between `complete` returning True and writing that line leaves one completion unrecorded:
the server's own `completed` counter is the reference for "exactly once".

Every `--poison-every`-th item (value % N == 0) is a poison item: its handler fails it, so the
policy (`--max-attempts` leases) must dead-letter it, and it alone; any other item may only be
dead-lettered if its leases ran out `--max-attempts` times (its worker killed each time).
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

import redis  # noqa: E402

import leaseq  # noqa: E402
from leaseq.keys import QueueKeys  # noqa: E402
from leaseq.server.cluster import LocalCluster  # noqa: E402
from leaseq.server.process import ServerProcess  # noqa: E402

DOWN = (leaseq.LeaseqError, redis.RedisError)  # what a caller may see while a server is down

WORKER = """
import os, sys, time
sys.path.insert(0, {root!r})
import redis, redis.cluster, leaseq
out = open(os.path.join({logdir!r}, f"w{{os.getpid()}}.log"), "a", buffering=1)
while True:
    try:  # (a cluster client cannot start while the node it asks is down)
        client = {client}
        break
    except redis.RedisError:
        time.sleep(0.2)
q = leaseq.Queue({name!r}, client, lease={lease}, max_attempts={max_attempts})
poison_every = {poison_every}
while True:
    try:
        got = q.lease_many(8, timeout=1)
        good = []
        for lease in got:
            out.write(f"x {{lease.data}}\\n")
            if poison_every and lease.data % poison_every == 0:
                q.fail(lease, error="poison", retry_in=0)
            else:
                good.append(lease)
        for lease, ok in zip(good, q.complete_many(good)):
            if ok:
                out.write(f"c {{lease.data}}\\n")
    except (leaseq.LeaseqConnectionError, redis.RedisError):
        time.sleep(0.05)
"""


class Single:
    """One valkey-server with an AOF (appendfsync always)."""

    def __init__(self) -> None:
        self.proc = ServerProcess(kind="valkey", appendonly=True, appendfsync="always")
        self.proc.start()

    def client(self) -> Any:
        return self.proc.client()

    def worker_client(self) -> str:
        return f"redis.Redis(port={self.proc.port}, socket_timeout=3, socket_connect_timeout=1)"

    def kill_and_restart(self, pause: float) -> None:
        self.proc.kill()
        time.sleep(pause)
        self.proc.restart()

    def nodes(self) -> list[Any]:
        return [self.proc.client()]

    def close(self) -> None:
        self.proc.close()


class Cluster:
    """A 3-master valkey cluster with AOFs; a kill hits the master that serves the queue."""

    def __init__(self, name: str) -> None:
        self.cluster = LocalCluster(3, kind="valkey", appendonly=True, appendfsync="always")
        self.cluster.start()
        port = self.cluster.client().get_node_from_key(QueueKeys.of(name).meta).port
        self.owner = next(i for i, n in enumerate(self.cluster.nodes) if n.port == port)

    def client(self) -> Any:
        return self.cluster.client()

    def worker_client(self) -> str:
        nodes = ", ".join(f"redis.cluster.ClusterNode('127.0.0.1', {p})"
                          for _, p in self.cluster.addresses)
        return (f"redis.cluster.RedisCluster(startup_nodes=[{nodes}], socket_timeout=3, "
                "socket_connect_timeout=1)")

    def kill_and_restart(self, pause: float) -> None:
        self.cluster.kill_node(self.owner)
        time.sleep(pause)
        self.cluster.restart_node(self.owner)

    def nodes(self) -> list[Any]:
        return [n.client() for n in self.cluster.nodes]

    def close(self) -> None:
        self.cluster.close()


def run(items: int, workers: int, worker_kills: int, server_kills: int, lease: float,
        seed: int, timeout: float, max_attempts: int = 3,
        poison_every: int = 100, cluster: bool = False) -> dict[str, Any]:
    rng = random.Random(seed)
    logdir = tempfile.mkdtemp(prefix="leaseq-chaos-")
    name = "chaos"
    server: Single | Cluster = Cluster(name) if cluster else Single()
    procs: list[subprocess.Popen[bytes]] = []
    crashed = 0
    started = time.monotonic()
    try:
        leaseq.Queue(name, server.client()).add_many(range(items))
        code = WORKER.format(root=str(ROOT), logdir=logdir, client=server.worker_client(),
                             name=name, lease=lease, max_attempts=max_attempts,
                             poison_every=poison_every)

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
            for i, p in enumerate(procs):  # a worker that died on its own: counted, replaced
                if p.poll() is not None:
                    crashed += 1
                    procs[i] = spawn()
            try:
                s = admin.stats()
            except DOWN:
                continue
            if s.pending + s.delayed + s.leased == 0:
                break
            if events:
                # a worker is only a victim once it is at work (it has run an item), so a
                # kill lands while it holds leases, not while it is still starting up
                busy = [i for i, p in enumerate(procs) if has_run(logdir, p.pid)]
                if events[-1] == "w" and not busy:
                    continue
                kind = events.pop()
                if kind == "w":
                    victim = rng.choice(busy)
                    procs[victim].send_signal(signal.SIGKILL)
                    procs[victim].wait()
                    procs[victim] = spawn()
                else:
                    server.kill_and_restart(rng.uniform(0.05, 0.3))
                done_kills[kind] += 1
        s = admin.stats()
        dead = dead_letters(admin)
        admin.dead_purge()
        # what a drained queue leaves: its counters, and, for 60 s, the recent lease tokens and
        # the replies of recent calls without a token (all with a TTL)
        leftover = sorted(k.decode() for raw in server.nodes() for k in raw.scan_iter()
                          if not k.endswith(b":meta")
                          and not ((k.endswith(b":acked") or b"}:call:" in k)
                                   and raw.pttl(k) > 0))
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
    poison = {i for i in range(items) if poison_every and i % poison_every == 0}
    expired_out = {v for v, (error, attempts) in dead.items()
                   if v not in poison and error.startswith("lease expired")
                   and attempts >= max_attempts}
    return {
        "server": "3-master cluster" if cluster else "single", "worker_crashes": crashed,
        "items": items, "workers": workers, "seconds": round(time.monotonic() - started, 1),
        "worker_kills": done_kills["w"], "server_kills": done_kills["s"],
        "left_in_queue": s.pending + s.delayed + s.leased,
        "completed_on_server": s.counter("completed"),
        "lost": items - s.counter("completed") - s.dead,
        "poison_items": len(poison),
        "dead_lettered": s.dead,
        "dead_poison": len(poison & set(dead)),
        "dead_after_expiring_max_attempts": len(expired_out),
        "dead_against_policy": len(set(dead) - poison - expired_out),
        "poison_not_dead": len(poison - set(dead)),
        "completed_poison": len(poison & set(completed)),
        "leftover_keys": len(leftover),
        "completions_reported_twice": sum(1 for v in completed.values() if v > 1),
        "completions_unrecorded": s.counter("completed") - len(completed),
        "executions": sum(executed.values()),
        "duplicate_executions": sum(v - 1 for k, v in executed.items() if k not in poison),
        "poison_executions": sum(v for k, v in executed.items() if k in poison),
        "expired_leases": s.counter("expired"),
        "logs": logdir,
    }


def has_run(logdir: str, pid: int) -> bool:
    """Whether worker ``pid`` has logged an execution."""
    log = Path(logdir) / f"w{pid}.log"
    return log.exists() and log.stat().st_size > 0


def dead_letters(q: leaseq.Queue) -> dict[int, tuple[str, int]]:
    """Every dead letter: value -> (last error, attempts)."""
    out: dict[int, tuple[str, int]] = {}
    while True:
        _, rows = q.dead(1000, start=len(out))
        out.update({row.data: (row.last_error or "", row.attempts) for row in rows})
        if len(rows) < 1000:
            return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--worker-kills", type=int, default=10)
    ap.add_argument("--server-kills", type=int, default=3)
    ap.add_argument("--lease", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=int(os.environ.get("CHAOS_SEED", "1")))
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--max-attempts", type=int, default=3)
    ap.add_argument("--poison-every", type=int, default=100, help="0: no poison items")
    ap.add_argument("--cluster", action="store_true",
                    help="a 3-master cluster; server kills hit the queue's master")
    args = ap.parse_args(argv)
    report = run(args.items, args.workers, args.worker_kills, args.server_kills, args.lease,
                 args.seed, args.timeout, args.max_attempts, args.poison_every, args.cluster)
    print(json.dumps(report, indent=2))
    ok = ok_report(report)
    print("chaos:", "OK" if ok else "FAILED")
    return 0 if ok else 1


def ok_report(r: dict[str, Any]) -> bool:
    """The run's promises: nothing lost or left, nothing completed twice, dead letters exactly
    where the policy puts them, no key left behind."""
    return (r["lost"] == 0 and r["left_in_queue"] == 0 and r["leftover_keys"] == 0
            and r["worker_crashes"] == 0
            and r["completed_on_server"] + r["dead_lettered"] == r["items"]
            and r["completions_reported_twice"] == 0 and r["dead_against_policy"] == 0
            and r["poison_not_dead"] == 0 and r["completed_poison"] == 0)


if __name__ == "__main__":
    raise SystemExit(main())
