"""How fast the dashboard renders its pages with a 1M-item queue (not a test).

Starts a fresh valkey server (free loopback port, stopped at the end), builds queue ``big`` with
``--items`` items (default 1,000,000: mostly pending, plus leased, delayed and dead ones) and
``--small`` small queues beside it, serves the dashboard with uvicorn on a free loopback port
(in this process, a thread) and times each page over ``--runs`` sequential GETs over HTTP. The
overview is read afresh on every request (its sample cache and the queue discovery cache are set
to 0), so each figure is the worst case, not a cached one.

    python bench/dashboard.py                 # ~1-2 min on 2 cores
    python bench/dashboard.py --items 100000 --runs 5     # smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import uvicorn

import leaseq
import leaseq.aio
from leaseq.dashboard import bound_socket, create_app
from leaseq.server.process import ServerProcess

BATCH = 20_000


async def build(url: str, items: int, small: int) -> dict[str, int]:
    """Queue ``big``: ``items`` added, 1% leased (1 h), 5% delayed (1 h), 1% dead."""
    q = leaseq.aio.Queue("big", url=url, max_attempts=1)
    leased, dead, delayed = items // 100, items // 100, items // 20
    pending = items - leased - dead - delayed
    t = time.perf_counter()
    payload = {"to": "someone@example.com", "subject": "hello", "body": "x" * 64}
    for start in range(0, pending + leased + dead, BATCH):
        n = min(BATCH, pending + leased + dead - start)
        await q.add_many([leaseq.Item(payload, id=f"job-{start + i:07d}") for i in range(n)])
    for start in range(0, delayed, BATCH):
        n = min(BATCH, delayed - start)
        await q.add_many([leaseq.Item(payload, id=f"later-{start + i:07d}", delay=3600)
                          for i in range(n)])
    for _ in range(0, dead, 1000):
        got = await q.lease_many(min(1000, dead), lease=3600, block=False)
        await asyncio.gather(*(q.fail(x, error=f"ValueError: bad address {x.id!r}\n"
                                               + "  at step\n" * 5) for x in got))
        dead -= len(got)
        if dead <= 0:
            break
    left = leased
    while left > 0:
        got = await q.lease_many(min(1000, left), lease=3600, block=False)
        left -= len(got)
    for k in range(small):
        s = leaseq.aio.Queue(f"small-{k:02d}", q.client)
        await s.add_many(range(100))
    stats = await q.stats()
    await q.close()
    print(f"built in {time.perf_counter() - t:.1f} s: pending {stats.pending:,}, "
          f"delayed {stats.delayed:,}, leased {stats.leased:,}, dead {stats.dead:,}; "
          f"{small} small queues")
    return {"pending": stats.pending, "delayed": stats.delayed, "leased": stats.leased,
            "dead": stats.dead}


def get(url: str) -> tuple[float, int, int]:
    t = time.perf_counter()
    with urllib.request.urlopen(url, timeout=30) as r:
        body = r.read()
        status = r.status
    return time.perf_counter() - t, status, len(body)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--small", type=int, default=20)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--page", type=int, default=50, help="rows per queue window")
    args = ap.parse_args()

    with ServerProcess(kind="valkey") as server:
        sizes = asyncio.run(build(server.url, args.items, args.small))
        app = create_app(server.url)
        reader = app.state.dashboard.reader
        reader.sample_every = 0.0
        reader.discover_every = 0.0
        sock = bound_socket("127.0.0.1", 0)
        base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        srv = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        while not srv.started:
            time.sleep(0.02)
        n = args.page
        deep = max(0, sizes["pending"] - 10 * n)
        pages: list[tuple[str, str]] = [
            (f"overview ({args.small + 1} queues)", "/"),
            ("queue, pending, first window", f"/queue?q=big&n={n}"),
            (f"queue, pending, window at {deep:,}", f"/queue?q=big&n={n}&start={deep}"),
            ("queue, delayed, first window", f"/queue?q=big&which=delayed&n={n}"),
            ("queue, leased, first window", f"/queue?q=big&which=leased&n={n}"),
            ("queue, dead, first window", f"/queue?q=big&which=dead&n={n}"),
            ("queue, dead, last window", f"/queue?q=big&which=dead&n={n}"
                                          f"&start={max(0, sizes['dead'] - n)}"),
            ("item page (pending item)", "/item?q=big&id=job-0500000"),
            ("item page (dead item)", "/item?q=big&id=" +
             urllib.request.quote(_first_dead(server.url))),
            ("live fragment (overview)", "/fragment?view=overview"),
        ]
        load = os.getloadavg()
        print(f"{args.runs} runs per page, {n} rows per window, uvicorn in-process, "
              f"load average {load[0]:.1f}")
        print(f"{'page':38} {'p50 ms':>8} {'p90 ms':>8} {'max ms':>8} {'bytes':>9}")
        worst = 0.0
        for label, path in pages:
            get(base + path)  # warm: templates compiled, scripts loaded
            times = []
            size = 0
            for _ in range(args.runs):
                dt, status, size = get(base + path)
                if status != 200:
                    print(f"{label}: HTTP {status}")
                    return 1
                times.append(dt * 1000)
            times.sort()
            p90 = times[min(len(times) - 1, int(len(times) * 0.9))]
            worst = max(worst, times[-1])
            print(f"{label:38} {statistics.median(times):8.1f} {p90:8.1f} {times[-1]:8.1f} "
                  f"{size:9,}")
        srv.should_exit = True
        thread.join(10)
        sock.close()
        print(f"slowest single render: {worst:.1f} ms")
    return 0


def _first_dead(url: str) -> str:
    q = leaseq.Queue("big", url=url)
    try:
        return q.dead(1)[1][0].id
    finally:
        q.close()


if __name__ == "__main__":
    sys.exit(main())
