"""Commands on one queue's items: add, peek, state, dead, purge, sweep."""

from __future__ import annotations

import json
import sys
import time
from typing import IO, Any

import click
from rich.table import Table

from ..models import Item, Peeked
from .common import (
    Session,
    console,
    decoded,
    err_console,
    json_option,
    preview,
    print_json,
    url_option,
)


def _parse(raw: bytes, is_json: bool, where: str) -> Any:
    if not is_json:
        return raw
    try:
        return json.loads(raw)
    except ValueError as exc:  # JSONDecodeError and bad UTF-8 alike
        raise click.ClickException(f"bad JSON in {where}: {exc} (use --raw for bytes)") from None


@click.command()
@click.argument("queue")
@click.argument("data", required=False)
@click.option("--file", "-f", "file", type=click.File("rb"),
              help="Read the data from FILE ('-': stdin).")
@click.option("--json/--raw", "is_json", default=True, show_default=True,
              help="The data is JSON, or raw bytes stored as they are.")
@click.option("--lines", is_flag=True, help="Add one item per non-empty line.")
@click.option("--delay", type=float, help="Seconds before the item can be leased.")
@click.option("--priority", type=int, default=0, show_default=True,
              help="-1000..1000; higher is leased first.")
@click.option("--id", "item_id", help="Item id (default: generated); an existing id is kept.")
@url_option
def add(queue: str, data: str | None, file: IO[bytes] | None, is_json: bool, lines: bool,
        delay: float | None, priority: int, item_id: str | None, url: str | None) -> None:
    """Add an item from DATA, --file or stdin; prints its id."""
    if data is not None and file is not None:
        raise click.UsageError("give DATA or --file, not both")
    if lines and item_id is not None:
        raise click.UsageError("--id cannot be used with --lines")
    if data is not None:
        raw = data.encode("utf-8")
    elif file is not None:
        raw = file.read()
    else:
        if sys.stdin is None or sys.stdin.isatty():
            raise click.UsageError("no data: give DATA, --file, or pipe it on stdin")
        raw = sys.stdin.buffer.read()
    session = Session(url)
    q = session.queue(queue, must_exist=False)
    if lines:
        chunks = [line for line in raw.splitlines() if line.strip()]
        values = [_parse(c, is_json, f"line {i + 1}") for i, c in enumerate(chunks)]
        results = q.add_many(Item(v, delay=delay, priority=priority) for v in values)
        added = sum(1 for r in results if r)
        click.echo(f"added {added} of {len(results)} items to {queue}")
        return
    got = q.add(_parse(raw, is_json, "the data"), id=item_id, delay=delay, priority=priority)
    click.echo(got.id)
    if not got:
        err_console.print(f"not added: id {got.id!r} is already in {queue!r} ({got.state})",
                          highlight=False)


def _when(p: Peeked, which: str, now_ms: int) -> str:
    if which == "pending":
        return ""
    secs = (p.score - now_ms) / 1000.0
    return f"in {secs:.1f}s" if secs >= 0 else f"{-secs:.1f}s ago"


def _rows(items: list[Peeked], which: str, now_ms: int) -> list[dict[str, Any]]:
    out = []
    for p in items:
        data, bad = decoded(p)
        out.append({"id": p.id, "attempts": p.attempts, "priority": p.priority,
                    "score": p.score, "data": data, "undecodable": bad,
                    "last_error": p.last_error, "when": _when(p, which, now_ms),
                    "headers": dict(p.headers)})
    return out


def _table(title: str, rows: list[dict[str, Any]], which: str) -> Table:
    label = {"delayed": "due", "leased": "deadline", "dead": "died"}.get(which, "")
    t = Table(title=title, title_justify="left")
    for col in ("id", "attempts", "prio", *([label] if label else []), "data", "last error"):
        t.add_column(col, overflow="fold")
    for r in rows:
        data = f"<{r['undecodable']}>" if r["undecodable"] else preview(r["data"])
        err = (r["last_error"] or "").splitlines()[0] if r["last_error"] else ""
        t.add_row(r["id"], str(r["attempts"]), str(r["priority"]),
                  *([r["when"]] if label else []), data, err[:60])
    return t


@click.command()
@click.argument("queue")
@click.option("-n", "count", type=click.IntRange(1, 10_000), default=10, show_default=True)
@click.option("--which", type=click.Choice(["pending", "delayed", "leased", "dead"]),
              default="pending", show_default=True)
@click.option("--start", type=click.IntRange(0), default=0, help="Skip that many first.")
@json_option
@url_option
def peek(queue: str, count: int, which: str, start: int, as_json: bool, url: str | None) -> None:
    """Show the next items of one set without leasing them."""
    q = Session(url).queue(queue)
    items = q.peek(count, which=which, start=start)
    rows = _rows(items, which, q.stats().now_ms if which != "pending" else 0)
    if as_json:
        print_json(rows)
    elif not rows:
        console.print(f"no {which} items in {queue}", highlight=False)
    else:
        console.print(_table(f"{queue}: {which}", rows, which))


@click.command()
@click.argument("queue")
@click.argument("item_id", metavar="ID")
@json_option
@url_option
def state(queue: str, item_id: str, as_json: bool, url: str | None) -> None:
    """Where item ID is: its state, attempts, deadline or due time, last error, result."""
    st = Session(url).queue(queue).state(item_id)
    if as_json:
        print_json(st)
        return
    t = Table(show_header=False, box=None)
    t.add_row("id", st.id)
    t.add_row("state", str(st.state))
    t.add_row("attempts", str(st.attempts))
    t.add_row("priority", str(st.priority))
    for label, ms in (("deadline", st.deadline_ms), ("due", st.due_ms),
                      ("dead since", st.dead_since_ms)):
        if ms is not None:
            secs = (ms - st.now_ms) / 1000.0
            t.add_row(label, f"in {secs:.1f}s" if secs >= 0 else f"{-secs:.1f}s ago")
    if st.last_error:
        t.add_row("last error", st.last_error)
    if st.has_result:
        t.add_row("result", preview(st.result, 200))
    for name, value in st.headers.items():
        t.add_row(f"header {name}", value)
    console.print(t)


@click.group()
def dead() -> None:
    """Dead letters: list, requeue, purge."""


@dead.command("list")
@click.argument("queue")
@click.option("-n", "count", type=click.IntRange(1, 10_000), default=100, show_default=True)
@click.option("--start", type=click.IntRange(0), default=0)
@json_option
@url_option
def dead_list(queue: str, count: int, start: int, as_json: bool, url: str | None) -> None:
    """Dead letters, oldest first, with their last error."""
    q = Session(url).queue(queue)
    total, items = q.dead(count, start=start)
    rows = _rows(items, "dead", int(time.time() * 1000))
    if as_json:
        print_json({"total": total, "items": rows})
    elif not rows:
        console.print(f"no dead letters in {queue}", highlight=False)
    else:
        console.print(_table(f"{queue}: {total} dead letters", rows, "dead"))


@dead.command("requeue")
@click.argument("queue")
@click.argument("ids", nargs=-1)
@url_option
def dead_requeue(queue: str, ids: tuple[str, ...], url: str | None) -> None:
    """Move dead letters IDS (default: all) back to pending, attempts reset."""
    moved = Session(url).queue(queue).dead_requeue(list(ids) if ids else None)
    click.echo(f"requeued {moved} dead letters")


@dead.command("purge")
@click.argument("queue")
@click.argument("ids", nargs=-1)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@url_option
def dead_purge(queue: str, ids: tuple[str, ...], yes: bool, url: str | None) -> None:
    """Delete dead letters IDS (default: all)."""
    q = Session(url).queue(queue)
    if not ids and not yes:
        click.confirm(f"Delete all {q.stats().dead} dead letters of {queue!r}?", abort=True)
    click.echo(f"deleted {q.dead_purge(list(ids) if ids else None)} dead letters")


@click.command()
@click.argument("queue")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@url_option
def purge(queue: str, yes: bool, url: str | None) -> None:
    """Delete every item of QUEUE (pending, delayed, leased and dead)."""
    q = Session(url).queue(queue)
    if not yes:
        s = q.stats()
        n = s.pending + s.delayed + s.leased + s.dead
        click.confirm(f"Delete all {n} items of {queue!r}?", abort=True)
    click.echo(f"deleted {q.purge()} items")


@click.command()
@click.argument("queue")
@json_option
@url_option
def sweep(queue: str, as_json: bool, url: str | None) -> None:
    """Promote due delayed items and reclaim expired leases now (never needed for
    correctness: leasing does it too)."""
    promoted, reclaimed = Session(url).queue(queue).sweep()
    if as_json:
        print_json({"promoted": promoted, "reclaimed": reclaimed})
    else:
        click.echo(f"promoted {promoted} delayed items, reclaimed {reclaimed} expired leases")
