"""Shared plumbing of the Python peer adapters (standard library only).

An adapter is a script run by ``bench/peers/run.py`` in its peer's venv. Protocol on stdio:

* after its setup (imports, connections, worker objects) it prints ``READY`` and waits for a
  line on stdin (``GO``); the harness snapshots the server (CONFIG RESETSTAT, INFO) in between,
  so set-up commands are not counted;
* ``enqueue``: adds ``--items`` payloads (one by one, or with the peer's bulk API with
  ``--bulk``), then prints ``RESULT {"seconds": ...}``;
* ``consume``: handles items with a no-op handler that records each payload's sequence number;
  stops once idle for ``IDLE_STOP`` seconds, writes the numbers to ``--out`` (one a line) and
  prints ``RESULT {"handled": n, "first_ns": t, "last_ns": t}`` (CLOCK_MONOTONIC, shared by all
  processes of the host, so the harness can time a run over several processes);
* ``latency-consumer``: waits for items and prints ``H <seq> <monotonic_ns>`` as each arrives;
  runs until the harness kills it;
* ``latency-producer``: for each ``<seq>`` line on stdin, takes ``monotonic_ns`` and adds one
  item, then prints ``A <seq> <t_ns>``.

Payloads are ~100-byte JSON objects ``{"seq": n, "kind": "bench", "pad": "..."}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

IDLE_STOP = 1.0  # a consumer that handled items stops after this long without one
START_GRACE = 15.0  # ... and one that handled none stops after this long
PAYLOAD_BYTES = 100


def parse_args(
    extra: Callable[[argparse.ArgumentParser], None] | None = None,
) -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("role", choices=["enqueue", "consume", "latency-consumer", "latency-producer"])
    ap.add_argument("--url", required=True)
    ap.add_argument("--queue", required=True)
    ap.add_argument("--items", type=int, default=0)
    ap.add_argument("--start", type=int, default=0, help="first sequence number")
    ap.add_argument("--bulk", action="store_true")
    ap.add_argument("--chunk", type=int, default=1000, help="items per bulk call")
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--variant", default="")
    ap.add_argument("--out", default="")
    if extra:
        extra(ap)
    return ap.parse_args()


def payload(seq: int) -> dict[str, Any]:
    """A JSON object of about PAYLOAD_BYTES bytes carrying ``seq``."""
    base = {"seq": seq, "kind": "bench", "pad": ""}
    fill = PAYLOAD_BYTES - len(json.dumps(base, separators=(",", ":")))
    base["pad"] = "x" * max(fill, 0)
    return base


def payloads(start: int, n: int) -> list[dict[str, Any]]:
    return [payload(i) for i in range(start, start + n)]


def chunks(seq: list[Any], size: int) -> list[list[Any]]:
    return [seq[i : i + size] for i in range(0, len(seq), size)]


def emit(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def ready_and_wait() -> int:
    """Print READY, block until the harness says GO; return monotonic_ns at GO."""
    emit("READY")
    line = sys.stdin.readline()
    if not line:
        sys.exit(3)
    return time.monotonic_ns()


def result(**fields: Any) -> None:
    emit("RESULT " + json.dumps(fields))


def enqueue(a: argparse.Namespace, one: Callable[[Any], Any],
            chunk: Callable[[list[Any]], Any] | None = None, *, items: list[Any] | None = None,
            **extra: Any) -> None:
    """The ``enqueue`` role: ``items`` (default: ``--items`` payloads) added one ``one(item)``
    at a time or, with ``--bulk`` and a ``chunk``, one ``chunk(part)`` per ``--chunk`` items;
    timed from GO; prints the RESULT line (with ``extra``)."""
    todo = payloads(a.start, a.items) if items is None else items
    ready_and_wait()
    t0 = time.perf_counter()
    if a.bulk and chunk is not None:
        for part in chunks(todo, a.chunk):
            chunk(part)
    else:
        for it in todo:
            one(it)
    result(seconds=time.perf_counter() - t0, **extra)


async def aenqueue(a: argparse.Namespace, one: Callable[[Any], Awaitable[Any]],
                   chunk: Callable[[list[Any]], Awaitable[Any]] | None = None, *,
                   items: list[Any] | None = None, **extra: Any) -> None:
    """:func:`enqueue` for asyncio peers."""
    todo = payloads(a.start, a.items) if items is None else items
    ready_and_wait()
    t0 = time.perf_counter()
    if a.bulk and chunk is not None:
        for part in chunks(todo, a.chunk):
            await chunk(part)
    else:
        for it in todo:
            await one(it)
    result(seconds=time.perf_counter() - t0, **extra)


def versions(*dists: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for d in dists:
        try:
            out[d] = version(d)
        except PackageNotFoundError:
            out[d] = "?"
    return out


class Recorder:
    """Records handled sequence numbers (consume) or prints arrivals (latency-consumer)."""

    def __init__(self, latency: bool) -> None:
        self.latency = latency
        self.seqs: list[int] = []
        self.first_ns = 0
        self.last_ns = 0
        self.go_ns = time.monotonic_ns()

    def hit(self, seq: int) -> None:
        t = time.monotonic_ns()
        if self.latency:
            emit(f"H {seq} {t}")
            return
        if not self.seqs:
            self.first_ns = t
        self.seqs.append(seq)
        self.last_ns = t

    def idle(self) -> bool:
        """True once this consumer should stop (see IDLE_STOP / START_GRACE)."""
        if self.latency:
            return False
        now = time.monotonic_ns()
        if self.seqs:
            return (now - self.last_ns) / 1e9 > IDLE_STOP
        return (now - self.go_ns) / 1e9 > START_GRACE

    async def wait_idle(self) -> None:
        while not self.idle():
            await asyncio.sleep(0.05)

    def finish(self, out: str, **extra: Any) -> None:
        if out:
            with open(out, "w") as fh:
                fh.write("\n".join(map(str, self.seqs)))
                fh.write("\n")
        result(handled=len(self.seqs), first_ns=self.first_ns, last_ns=self.last_ns, **extra)


def seq_of(data: Any) -> int:
    """The sequence number of a payload (a dict, or its JSON text/bytes)."""
    if isinstance(data, (bytes, str)):
        data = json.loads(data)
    return int(data["seq"])


def producer_loop(add_one: Callable[[int], None]) -> None:
    """latency-producer: one add per stdin line."""
    emit("READY")
    for line in sys.stdin:
        line = line.strip()
        if not line or line == "GO":
            continue
        seq = int(line)
        t = time.monotonic_ns()
        add_one(seq)
        emit(f"A {seq} {t}")


async def aproducer_loop(add_one: Callable[[int], Any]) -> None:
    """latency-producer for asyncio peers (stdin read in a thread)."""
    loop = asyncio.get_running_loop()
    emit("READY")
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            return
        line = line.strip()
        if not line or line == "GO":
            continue
        seq = int(line)
        t = time.monotonic_ns()
        await add_one(seq)
        emit(f"A {seq} {t}")


def quiet_logs() -> None:
    """Peers log each job at INFO on some paths; keep the default WARNING level explicit."""
    import logging

    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
