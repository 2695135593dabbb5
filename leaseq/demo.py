"""``leaseq demo``: a mixed workload run by supervised worker processes, one of which is
SIGKILLed mid-run; then every added item is accounted for.

Handlers record each ``complete()`` outcome as a line ``<id>\\t<1|0>`` in a per-process
append-only file; the summary checks them against the added ids: lost = added - completed -
dead must be 0 and no id may have two successful completions. (An id whose completion the
SIGKILL cut off before it was written down is checked against the server's completed counter.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import shutil
import signal
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from .connection import server_url
from .models import Backoff, Item, Lease, State, Stats
from .queue import Queue
from .worker import JobResult, Outcome, Supervisor, WorkerSpec

DIR_ENV = "LEASEQ_DEMO_DIR"
_RECORDS: IO[str] | None = None


# ---------------------------------------------------------------------------------- workload

def workload(n: int, seed: int = 7) -> list[Item]:
    """``n`` items: mostly quick jobs, some slower ones, 5% delayed by 0.5-3 s, 10% urgent
    (priority 5), 3% failing once then succeeding, and a few poison items that always fail."""
    rng = random.Random(seed)
    poison = set(rng.sample(range(n), min(n, max(3, n // 2000))))
    items = []
    for i in range(n):
        r = rng.random()
        kind = "poison" if i in poison else "flaky" if r < 0.03 else "ok"
        work = rng.choice((1, 2, 5, 10)) if rng.random() < 0.2 else 0
        delay = rng.uniform(0.5, 3.0) if rng.random() < 0.05 else None
        prio = 5 if rng.random() < 0.10 else 0
        data = {"n": i, "kind": kind, "work_ms": work, "email": f"user{i}@example.com"}
        items.append(Item(data, id=f"job-{i:06d}", delay=delay, priority=prio))
    return items


async def handle(lease: Lease) -> None:
    """The demo's job: some take a few ms, flaky ones fail on their first attempt, poison
    ones always fail (and end as dead letters)."""
    data = lease.data
    if data["work_ms"]:
        await asyncio.sleep(data["work_ms"] / 1000.0)
    if data["kind"] == "poison":
        raise ValueError(f"cannot render the template for job {data['n']} (poison item)")
    if data["kind"] == "flaky" and lease.attempt == 1:
        raise ConnectionError("mail relay timed out (transient: fails once)")


def record(result: JobResult) -> None:
    """Worker hook: append ``id\\t1`` (complete() returned True) or ``id\\t0`` to this
    process's record file, one unbuffered line each (a SIGKILL loses no written line)."""
    global _RECORDS
    if result.outcome not in (Outcome.COMPLETED, Outcome.STALE):
        return
    if _RECORDS is None:
        _RECORDS = open(Path(os.environ[DIR_ENV]) / f"{os.getpid()}.log", "a", buffering=1)  # noqa: SIM115
    _RECORDS.write(f"{result.lease.id}\t{int(result.outcome is Outcome.COMPLETED)}\n")


def read_records(folder: Path) -> tuple[Counter[str], int]:
    """(successful completions per id, unsuccessful complete() calls) from every file."""
    done: Counter[str] = Counter()
    stale = 0
    for path in folder.glob("*.log"):
        for line in path.read_text().splitlines():
            item_id, _, flag = line.partition("\t")
            if flag == "1":
                done[item_id] += 1
            elif flag == "0":
                stale += 1
    return done, stale


# ---------------------------------------------------------------------------------- the run

@dataclass
class Snapshot:
    """What the display shows at one moment."""

    stats: Stats
    elapsed: float
    done: int
    total: int
    pids: list[int]
    events: list[tuple[float, str]]
    finished: bool


@dataclass
class Summary:
    """The verdict: ``ok`` iff nothing was lost and nothing completed twice."""

    items: int
    completed: int
    retried: int
    dead_lettered: int
    lost: int
    duplicates: int
    unrecorded: int
    stale_completions: int
    killed_pid: int | None
    leases_reclaimed: int
    restarts: int
    seconds: float
    throughput: float
    queue: str
    events: list[tuple[float, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.duplicates == 0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


class Demo:
    """One demo run: :meth:`start`, then :meth:`step` until a snapshot says finished (or
    the timeout passes), then :meth:`finish` for the summary."""

    def __init__(self, items: int = 20_000, *, processes: int = 2, concurrency: int = 100,
                 lease: float = 2.0, url: str | None = None, kill: bool = True,
                 timeout: float = 120.0, keep: bool = False) -> None:
        self.n, self.processes, self.concurrency = items, processes, concurrency
        self.lease, self.kill, self.timeout, self.keep = lease, kill, timeout, keep
        self.url = server_url(url)
        self.name = f"leaseq-demo-{uuid.uuid4().hex[:8]}"
        self.q = Queue(self.name, url=self.url, lease=lease)
        self.dir = Path(tempfile.mkdtemp(prefix="leaseq-demo-"))
        self.events: list[tuple[float, str]] = []
        self.killed: int | None = None
        self.expired_at_kill = 0
        self.sup: Supervisor | None = None
        self.t0 = 0.0
        self.enqueue_seconds = 0.0

    def _event(self, text: str) -> None:
        self.events.append((time.monotonic() - self.t0 if self.t0 else 0.0, text))

    def start(self) -> None:
        """Enqueue the workload and start the worker processes."""
        t = time.monotonic()
        self.added = [r.id for r in self.q.add_many(workload(self.n)) if r]
        self.enqueue_seconds = time.monotonic() - t
        spec = WorkerSpec(
            self.name, "leaseq.demo:handle", url=self.url, concurrency=self.concurrency,
            lease=self.lease, max_attempts=3, backoff=Backoff(0.2, 2.0, 2.0), grace=5.0,
            on_result="leaseq.demo:record", log_level="CRITICAL",
        )
        previous = os.environ.get(DIR_ENV)
        os.environ[DIR_ENV] = str(self.dir)
        try:
            self.sup = Supervisor(spec, self.processes, restart_delay=0.2)
            self.t0 = time.monotonic()
            self.sup.start()
        finally:
            if previous is None:
                os.environ.pop(DIR_ENV, None)
            else:
                os.environ[DIR_ENV] = previous
        self._event(f"enqueued {len(self.added):,} items in {self.enqueue_seconds:.2f} s; "
                    f"started {self.processes} worker processes: {self.sup.pids}")

    def step(self) -> Snapshot:
        """Poll the queue and the workers (restarting dead ones); SIGKILL one worker once
        30% of the items are done."""
        assert self.sup is not None
        known = set(self.sup.pids)
        self.sup.poll()
        for pid in set(self.sup.pids) - known:
            self._event(f"supervisor restarted the killed worker as pid {pid}")
        s = self.q.stats()
        done = s.counter("completed") + s.dead
        if self.kill and self.killed is None and done >= 0.3 * self.n and self.sup.pids:
            self.killed = self.sup.pids[0]
            self.expired_at_kill = s.counter("expired")
            os.kill(self.killed, signal.SIGKILL)
            self._event(f"SIGKILLed worker pid {self.killed} holding {s.leased} leases "
                        f"(all workers); its items come back when their {self.lease:g} s "
                        "leases run out")
        finished = s.pending + s.delayed + s.leased == 0 and done >= len(self.added)
        return Snapshot(s, time.monotonic() - self.t0, done, len(self.added),
                        self.sup.pids, self.events, finished)

    def run(self, on_step: Any = None, interval: float = 0.2) -> Summary:
        """start, step until finished or timed out (``on_step(snapshot)`` each time),
        finish."""
        sup_log = logging.getLogger("leaseq.worker.supervisor")
        level = sup_log.level
        sup_log.setLevel(logging.ERROR)  # the kill is shown as an event, not a log line
        try:
            self.start()
            while True:
                snap = self.step()
                if on_step is not None:
                    on_step(snap)
                if snap.finished or snap.elapsed > self.timeout:
                    break
                time.sleep(interval)
            return self.finish()
        except BaseException:
            self.close()
            raise
        finally:
            sup_log.setLevel(level)

    def finish(self) -> Summary:
        """Stop the workers and account for every added id."""
        seconds = time.monotonic() - self.t0
        assert self.sup is not None
        restarts = self.sup.restarts
        self.sup.stop(timeout=15.0)
        s = self.q.stats()
        done, stale = read_records(self.dir)
        dead_ids: set[str] = set()
        while len(dead_ids) < s.dead:
            _, page = self.q.dead(1000, start=len(dead_ids))
            if not page:
                break
            dead_ids.update(p.id for p in page)
        # Ids that left the queue with no record: completed by the killed worker after its
        # last written line. The server's completed counter must account for all of them.
        gone = [i for i in self.added if i not in done and i not in dead_ids
                and self.q.state(i).state is State.UNKNOWN]
        counted, recorded = s.counter("completed"), sum(done.values())
        unrecorded = min(len(gone), max(0, counted - recorded))
        completed = len(done) + unrecorded
        twice = sum(c - 1 for c in done.values() if c > 1)
        twice += max(0, counted - recorded - len(gone))  # completions beyond distinct ids
        expired = s.counter("expired") - self.expired_at_kill if self.killed else 0
        summary = Summary(
            items=len(self.added), completed=completed, retried=s.counter("retried"),
            dead_lettered=len(dead_ids), lost=len(self.added) - completed - len(dead_ids),
            duplicates=twice, unrecorded=unrecorded,
            stale_completions=stale, killed_pid=self.killed, leases_reclaimed=expired,
            restarts=restarts, seconds=round(seconds, 3),
            throughput=round(completed / seconds if seconds > 0 else 0.0, 1),
            queue=self.name, events=list(self.events),
        )
        self.close()
        return summary

    def close(self) -> None:
        """Stop workers, drop the demo queue (unless ``keep``) and the record files."""
        if self.sup is not None:
            self.sup.kill()
            self.sup = None
        if not self.keep:
            with contextlib.suppress(Exception):  # best effort: the server may be gone
                self.q.client.delete(*self.q.config.keys.all_fixed)
        self.q.close()
        shutil.rmtree(self.dir, ignore_errors=True)
