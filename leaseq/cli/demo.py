"""``leaseq demo``: the live view and the summary table of :mod:`leaseq.demo`."""

from __future__ import annotations

import sys

import click
from rich.console import Group
from rich.live import Live
from rich.panel import Panel
from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn
from rich.table import Table

from ..demo import Demo, Snapshot, Summary
from .common import console, mask, print_json, url_option


def _view(snap: Snapshot, title: str, progress: Progress, task: TaskID) -> Panel:
    s = snap.stats
    progress.update(task, completed=snap.done, total=snap.total)
    rate = s.counter("completed") / snap.elapsed if snap.elapsed > 0 else 0.0
    t = Table(box=None, pad_edge=False)
    for col in ("pending", "delayed", "leased", "completed", "retried", "dead",
                "leases reclaimed", "items/s"):
        t.add_column(col, justify="right")
    t.add_row(*(f"{v:,}" for v in (s.pending, s.delayed, s.leased, s.counter("completed"),
                                   s.counter("retried"), s.dead, s.counter("expired"))),
              f"{rate:,.0f}")
    events = Table(box=None, show_header=False, pad_edge=False)
    for at, text in snap.events[-5:]:
        events.add_row(f"[dim]{at:6.2f}s[/]", text)
    pids = ", ".join(map(str, snap.pids)) or "-"
    return Panel(Group(progress, t, f"[dim]worker pids:[/] {pids}", events), title=title,
                 title_align="left")


def _summary(s: Summary) -> Table:
    t = Table(title=f"leaseq demo: {'OK' if s.ok else 'FAILED'}", title_justify="left",
              show_header=False)
    t.add_column("what")
    t.add_column("value", justify="right")
    good, bad = "[green]", "[bold red]"
    rows = [
        ("items added", f"{s.items:,}"),
        ("completed", f"{s.completed:,}"),
        ("  by the killed worker after its last record (server-checked)",
         f"{s.unrecorded:,}"),
        ("retried (failed attempts given another try)", f"{s.retried:,}"),
        ("dead-lettered (poison items)", f"{s.dead_lettered:,}"),
        ("lost (must be 0)", f"{good if s.lost == 0 else bad}{s.lost:,}[/]"),
        ("duplicates completed (must be 0)",
         f"{good if s.duplicates == 0 else bad}{s.duplicates:,}[/]"),
        ("killed worker (SIGKILL)", str(s.killed_pid or "-")),
        ("leases reclaimed after the kill", f"{s.leases_reclaimed:,}"),
        ("worker restarts", f"{s.restarts:,}"),
        ("time", f"{s.seconds:.2f} s"),
        ("throughput", f"{s.throughput:,.0f} items/s"),
    ]
    for what, value in rows:
        t.add_row(what, value)
    return t


@click.command()
@click.option("--items", type=click.IntRange(10, 1_000_000), default=20_000,
              show_default=True, help="Items to enqueue.")
@click.option("--processes", type=click.IntRange(1, 64), default=2, show_default=True)
@click.option("--concurrency", type=click.IntRange(1, 10_000), default=100,
              show_default=True, help="Jobs at once per worker process.")
@click.option("--lease", type=click.FloatRange(0.1), default=2.0, show_default=True,
              help="Lease seconds (how soon a killed worker's items come back).")
@click.option("--kill/--no-kill", default=True, show_default=True,
              help="SIGKILL one worker process mid-run.")
@click.option("--timeout", type=click.FloatRange(1), default=120.0, show_default=True)
@click.option("--keep", is_flag=True, help="Keep the demo queue afterwards (for inspection).")
@click.option("--json", "as_json", is_flag=True, help="No live view; print a JSON summary.")
@url_option
def demo(items: int, processes: int, concurrency: int, lease: float, kill: bool,
         timeout: float, keep: bool, as_json: bool, url: str | None) -> None:
    """Run a mixed workload through supervised workers, kill one mid-run, and check that
    nothing was lost or completed twice (exit 1 otherwise)."""
    run = Demo(items, processes=processes, concurrency=concurrency, lease=lease, url=url,
               kill=kill, timeout=timeout, keep=keep)
    if as_json:
        summary = run.run()
        print_json(summary.as_dict())
    else:
        title = (f"leaseq demo: {items:,} items on {run.name} at {mask(run.url)}, "
                 f"{processes} processes x {concurrency}")
        console.print(f"[dim]enqueueing {items:,} items…[/]")
        progress = Progress(TextColumn("done"), BarColumn(), TaskProgressColumn(),
                            TextColumn("{task.completed:,}/{task.total:,}"), console=console)
        task = progress.add_task("done", total=items)
        with Live(console=console, refresh_per_second=8, transient=False) as live:
            summary = run.run(lambda snap: live.update(_view(snap, title, progress, task)))
        console.print()
        console.print(_summary(summary))
        if keep:
            console.print(f"kept queue {run.name}: try `leaseq stats {run.name}` or "
                          f"`leaseq dead list {run.name}`", highlight=False)
    sys.exit(0 if summary.ok else 1)
