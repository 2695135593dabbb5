"""``leaseq stats``: sizes and counters of one queue or of every queue, once or live."""

from __future__ import annotations

import time
from typing import Any

import click
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from ..discovery import scrape
from ..models import Stats
from ..queue import Queue
from .common import Session, console, json_option, print_json, url_option

SIZES = ("pending", "delayed", "leased", "dead")
COUNTERS = ("added", "completed", "failed", "retried", "expired", "dead")
RATES = COUNTERS


class Snapshots:
    """Reads the stats of the watched queues and the rates since the previous read."""

    def __init__(self, session: Session, queue: str | None) -> None:
        self.session = session
        self.fixed = queue
        self.queues: dict[str, Queue] = {}
        self.previous: dict[str, Stats] = {}
        if queue is not None:
            self.queues[queue] = session.queue(queue)

    def read(self) -> list[dict[str, Any]]:
        if self.fixed is None:  # every queue, in one round trip (a queue that cannot be read
            # -- a key of the wrong type, say -- is listed as such and hides none of the others)
            stats, failed = scrape(self.session.client, self.session.queue_names())
            errors = {u.queue: str(u.error) for u in failed}
        else:
            stats, errors = [self.queues[self.fixed].stats()], {}
        rows = [{"queue": name, "error": err} for name, err in errors.items()]
        for s in stats:
            row: dict[str, Any] = {"queue": s.queue, **{k: getattr(s, k) for k in SIZES},
                                   "delayed_due": s.delayed_due,
                                   "leases_expired": s.leases_expired,
                                   "counters": dict(s.counters)}
            before = self.previous.get(s.queue)
            if before is not None and s.now_ms > before.now_ms:
                dt = (s.now_ms - before.now_ms) / 1000.0
                row["rates"] = {k: (s.counter(k) - before.counter(k)) / dt for k in RATES}
            self.previous[s.queue] = s
            rows.append(row)
        return sorted(rows, key=lambda r: str(r["queue"]))


def render(rows: list[dict[str, Any]], title: str, one: bool) -> Table:
    """One queue: a row per size and counter (with rates when known); all queues: a row
    per queue."""
    t = Table(title=title, title_justify="left")
    if one:
        t.add_column("")
        t.add_column("count", justify="right")
        t.add_column("per second", justify="right")
        r = rows[0] if rows else {"counters": {}, "rates": {}}
        rates = r.get("rates", {})
        for k in SIZES:
            t.add_row(k, f"{r.get(k, 0):,}", "")
        for k in COUNTERS:
            rate = f"{rates[k]:,.0f}" if k in rates else ""
            t.add_row(f"{k} (total)", f"{r['counters'].get(k, 0):,}", rate)
        return t
    t.add_column("queue", no_wrap=True)
    errors: list[str] = []
    for col in (*SIZES, "completed", "completed/s"):
        t.add_column(col, justify="right")
    for r in rows:
        if "error" in r:
            t.add_row(r["queue"], "[red]unreadable[/red]", *[""] * (len(t.columns) - 2))
            errors.append(f"{escape(r['queue'])}: {escape(r['error'])}")
            continue
        rate = r.get("rates", {}).get("completed")
        t.add_row(r["queue"], *(f"{r[k]:,}" for k in SIZES),
                  f"{r['counters'].get('completed', 0):,}",
                  "" if rate is None else f"{rate:,.0f}")
    if not rows:
        t.add_row("(no queues)", *[""] * (len(t.columns) - 1))
    if errors:
        t.caption = "[red]" + "\n".join(errors) + "[/red]"
        t.caption_justify = "left"
    return t


@click.command()
@click.argument("queue", required=False)
@click.option("--watch", "-w", is_flag=True, help="Refresh until ^C, with rates.")
@click.option("--interval", type=click.FloatRange(0.1), default=1.0, show_default=True,
              help="Seconds between refreshes.")
@click.option("--count", type=click.IntRange(1), help="With --watch: stop after N refreshes.")
@json_option
@url_option
def stats(queue: str | None, watch: bool, interval: float, count: int | None, as_json: bool,
          url: str | None) -> None:
    """Pending, delayed, leased and dead counts and lifetime counters of QUEUE, or of every
    queue on the server."""
    snaps = Snapshots(Session(url), queue)
    rows = snaps.read()
    if not watch:
        if as_json:
            print_json(rows[0] if queue is not None else rows)
        else:
            console.print(render(rows, queue or "all queues", queue is not None))
        return
    done = 0
    try:
        if as_json:
            while count is None or done < count:
                time.sleep(interval)
                print_json({"time": time.time(), "queues": snaps.read()})
                done += 1
            return
        one = queue is not None
        with Live(render(rows, "…", one), console=console, auto_refresh=False) as live:
            while count is None or done < count:
                time.sleep(interval)
                stamp = time.strftime("%H:%M:%S")
                live.update(render(snaps.read(), f"{queue or 'all queues'} at {stamp}", one),
                            refresh=True)
                done += 1
    except KeyboardInterrupt:
        pass
