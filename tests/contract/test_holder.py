"""A lease's holder: named by the queue (``holder=``) or the worker runtime, kept in the item's
record with the token, shown by peek, state and the dashboard while the item is leased."""

from __future__ import annotations

import asyncio
import os
import socket
from typing import Any

import pytest

import leaseq
import leaseq.aio
from leaseq.errors import InvalidArgument
from leaseq.worker import Worker


def test_peek_and_state_show_who_holds_a_lease(server: Any, queue_name: str) -> None:
    client = server.client()
    w1 = leaseq.Queue(queue_name, client, holder="host-a:101")
    anon = leaseq.Queue(queue_name, client)
    w1.add_many(["x", "y", "z"])
    a = w1.lease(block=False)
    b = anon.lease(block=False)
    assert a is not None and b is not None
    rows = {r.id: r.holder for r in w1.peek(10, which="leased")}
    assert rows == {a.id: "host-a:101", b.id: None}
    assert w1.state(a.id).holder == "host-a:101"
    assert w1.state(b.id).holder is None
    ok, nxt = w1.complete_and_lease(b)  # the next lease carries this queue's holder
    assert ok and nxt and w1.state(nxt[0].id).holder == "host-a:101"
    assert w1.fail(a, error="e", retry_in=0) is leaseq.FailOutcome.RETRIED
    assert w1.state(a.id).holder is None  # pending: nobody holds it
    again = anon.lease_many(5, block=False)
    assert a.id in {x.id for x in again}
    assert anon.state(a.id).holder is None  # re-leased unnamed: the old name is gone


def test_a_holder_must_be_short_printable_text(server: Any, queue_name: str) -> None:
    for bad in ("x" * 201, "a\nb", "\x00", 5):
        with pytest.raises(InvalidArgument):
            leaseq.Queue(queue_name, server.client(), holder=bad)  # type: ignore[arg-type]


def test_the_worker_names_its_host_and_process(server: Any, queue_name: str,
                                               arun: Any) -> None:
    seen: list[str | None] = []
    q = leaseq.Queue(queue_name, server.client())
    q.add("job")

    async def go() -> None:
        async def handler(lease: leaseq.Lease) -> None:
            st = await worker.queue.state(lease.id)
            seen.append(st.holder)
            worker.stop()

        worker = Worker(queue_name, handler, client=server.async_client(), concurrency=1)
        await asyncio.wait_for(worker.run(handle_signals=False), 30)

    arun(go())
    assert seen == [f"{socket.gethostname()[:150]}:{os.getpid()}"]
