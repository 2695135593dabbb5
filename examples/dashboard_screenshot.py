"""Make docs/dashboard.png: the dashboard's overview with a demo-like workload running.

Starts a fresh valkey server, three queues with traffic (worker threads leasing, completing and
failing items), the dashboard on a free loopback port, and Debian's chromium (Playwright,
``executable_path``) to take the screenshot once the chart has some history.

    python examples/dashboard_screenshot.py [--out docs/dashboard.png] [--seconds 40]
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import uvicorn
from playwright.sync_api import sync_playwright

import leaseq
from leaseq.dashboard import bound_socket, create_app
from leaseq.server.process import ServerProcess

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ERRORS = ["SMTPServerDisconnected: Connection unexpectedly closed",
          "TimeoutError: upstream did not answer in 10 s",
          "ValueError: invalid address 'joe@@example'"]


def worker(url: str, name: str, stop: threading.Event, fail_rate: float, seed: int,
           attempts: int = 3, hold: float = 0.0) -> None:
    """Leases and completes in batches, at a rate that swings over time; fails some."""
    rng = random.Random(seed)
    q = leaseq.Queue(name, url=url, max_attempts=attempts, backoff=leaseq.Backoff(base=2.0))
    t0 = time.monotonic()
    while not stop.is_set():
        got = q.lease_many(20, lease=30, timeout=0.5)
        time.sleep(hold)
        done = []
        for lease in got:
            if rng.random() < fail_rate:
                q.fail(lease, error=rng.choice(ERRORS))
            else:
                done.append(lease)
        q.complete_many(done, result={"ok": True})
        swing = 1.5 + math.sin((time.monotonic() - t0) / 6.0)
        time.sleep(0.02 * swing)
    q.close()


def producer(url: str, name: str, stop: threading.Event, per_second: int) -> None:
    q = leaseq.Queue(name, url=url)
    n = 0
    while not stop.is_set():
        q.add_many({"to": f"new{n + i}@example.com"} for i in range(per_second // 10))
        n += per_second // 10
        time.sleep(0.1)
    q.close()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "docs" /
                                         "dashboard.png"))
    ap.add_argument("--seconds", type=float, default=40.0)
    args = ap.parse_args()
    with ServerProcess(kind="valkey") as server:
        emails = leaseq.Queue("emails", url=server.url)
        emails.add_many({"to": f"user{i}@example.com"} for i in range(60_000))
        thumbs = leaseq.Queue("thumbnails", url=server.url)
        thumbs.add_many(leaseq.Item({"image": f"img/{i}.jpg"}, delay=30 + i % 600)
                        for i in range(1_200))
        thumbs.add_many({"image": f"img/x{i}.jpg"} for i in range(3_000))
        hooks = leaseq.Queue("webhooks", url=server.url, max_attempts=1)
        hooks.add_many({"url": f"https://example.com/hook/{i}"} for i in range(2_000))
        stop = threading.Event()
        threads = [threading.Thread(target=worker, args=(server.url, name, stop, rate, k, *more))
                   for k, (name, rate, *more) in enumerate([
                       ("emails", 0.01), ("emails", 0.01), ("thumbnails", 0.0, 3, 0.4),
                       ("webhooks", 0.05, 1, 0.05)])]
        threads += [threading.Thread(target=producer, args=(server.url, name, stop, rate))
                    for name, rate in (("webhooks", 150), ("thumbnails", 40))]
        for t in threads:
            t.start()
        app = create_app(server.url, refresh=1.0, chart_span=60.0)
        sock = bound_socket("127.0.0.1", 0)
        srv = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on",
                                            timeout_graceful_shutdown=1))
        st = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
        st.start()
        while not srv.started:
            time.sleep(0.05)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            page = browser.new_page(viewport={"width": 1100, "height": 560})
            page.goto(f"http://127.0.0.1:{sock.getsockname()[1]}/")
            page.wait_for_timeout(args.seconds * 1000)
            page.screenshot(path=args.out)
            browser.close()
        stop.set()
        for t in threads:
            t.join()
        srv.should_exit = True
        st.join(5)
        sock.close()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
