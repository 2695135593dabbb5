"""Item headers, run as {sync, async} x {valkey, redis 7.0, 3-master cluster}: stored with the
payload in an envelope, read back on every path (lease, peek, state, dead letters), never part
of a content id, and stored bytes of items without headers unchanged."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

import leaseq
from leaseq import FailOutcome, Item, State, hooks
from leaseq.keys import QueueKeys
from leaseq.protocol import split_item

TRACE = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}


def stored(face: Any, item_id: str) -> bytes:
    return split_item(face.raw.hget(QueueKeys.of(face.name).items, item_id))[3]


@pytest.fixture
def provider() -> Iterator[dict[str, str]]:
    """A header provider returning a dict the test can change (removed after the test)."""
    current: dict[str, str] = {}
    remove = hooks.add_header_provider(lambda: dict(current))
    yield current
    remove()


@pytest.mark.parametrize("value", [{"to": "joe", "n": [1, 2]}, b"\x00\xffraw\x80", "", b""],
                         ids=["json", "bytes", "empty-str", "empty-bytes"])
def test_headers_travel_with_the_item(make_queue: Any, face: Any, value: Any) -> None:
    q = make_queue()
    added = q.add(value, headers={**TRACE, "tenant": "ünï ✓"})
    st = q.state(added.id)
    assert st.headers == {**TRACE, "tenant": "ünï ✓"}
    assert st.payload == q.config.codec.encode(value)  # the inner payload, no envelope
    (peeked,) = q.peek()
    assert peeked.data == value and type(peeked.data) is type(value)
    assert peeked.headers == {**TRACE, "tenant": "ünï ✓"}
    lease = q.lease(block=False)
    assert lease.data == value and type(lease.data) is type(value)
    assert dict(lease.headers) == {**TRACE, "tenant": "ünï ✓"}
    assert lease.payload == q.config.codec.encode(value)
    assert stored(face, added.id).startswith(b"H")
    assert q.complete(lease)


def test_items_without_headers_are_stored_as_before(make_queue: Any, face: Any) -> None:
    q = make_queue()
    a = q.add({"x": 1})
    b = q.add(b"raw", headers={})
    assert stored(face, a.id) == b'J{"x":1}'
    assert stored(face, b.id) == b"Braw"
    lease = q.lease(block=False)
    assert lease.headers == {} and not lease.headers
    assert q.state(b.id).headers == {}


def test_add_many_headers_and_item_headers_merge(make_queue: Any) -> None:
    q = make_queue()
    q.add_many([Item(1, id="a"), Item(2, id="b", headers={"k": "item", "only": "b"}), 3],
               headers={"k": "call", "all": "yes"})
    assert q.state("a").headers == {"k": "call", "all": "yes"}
    assert q.state("b").headers == {"k": "item", "all": "yes", "only": "b"}
    got = {x.data: dict(x.headers) for x in q.lease_many(3, block=False)}
    assert got[3] == {"k": "call", "all": "yes"}


def test_headers_never_change_a_content_id(make_queue: Any) -> None:
    q = make_queue(unique_by_content=True)
    plain = q.add({"same": True})
    with_headers = q.add({"same": True}, headers=TRACE)
    assert with_headers.id == plain.id and not with_headers.added
    assert q.stats().pending == 1
    other = make_queue(name=f"{q.name}-2", unique_by_content=True)
    first = other.add({"same": True}, headers=TRACE)
    assert first.id == plain.id and first.added


@pytest.mark.parametrize("bad", [
    {"": "empty name"}, {"x" * 257: "long name"}, {"a\nb": "control"}, {"n": 1},
    {"n": "v" * 8193}, {f"h{i}": "v" for i in range(65)}, {"n": "\udc80"}, ["not", "a map"],
], ids=["empty", "long-name", "control", "int-value", "long-value", "too-many", "surrogate",
        "not-mapping"])
def test_bad_headers_are_refused_before_anything_is_sent(make_queue: Any, bad: Any) -> None:
    q = make_queue()
    with pytest.raises(leaseq.InvalidHeader):
        q.add("x", headers=bad)
    with pytest.raises(leaseq.InvalidHeader):
        q.add_many(["ok", Item("x", headers=bad)])
    assert q.stats().pending == 0 and q.stats().counter("added") == 0


def test_header_providers_run_at_every_add_and_explicit_headers_win(
        make_queue: Any, provider: dict[str, str]) -> None:
    q = make_queue()
    provider.update({"from": "provider", "k": "provider"})
    a = q.add("a")
    b = q.add("b", headers={"k": "explicit"})
    c, d = q.add_many(["c", Item("d", headers={"k": "item"})])
    assert q.state(a.id).headers == {"from": "provider", "k": "provider"}
    assert q.state(b.id).headers == {"from": "provider", "k": "explicit"}
    assert q.state(c.id).headers == {"from": "provider", "k": "provider"}
    assert q.state(d.id).headers == {"from": "provider", "k": "item"}
    provider.clear()
    e = q.add("e")
    assert q.state(e.id).headers == {}


def test_a_failing_provider_is_skipped(make_queue: Any, face: Any) -> None:
    calls = threading.local()

    def broken() -> dict[str, str]:
        calls.n = getattr(calls, "n", 0) + 1
        raise RuntimeError("provider bug")

    remove = hooks.add_header_provider(broken)
    try:
        q = make_queue()
        got = q.add({"x": 1})
        assert got.added and stored(face, got.id) == b'J{"x":1}'
    finally:
        remove()
    remove()  # idempotent
    assert hooks.PROVIDERS == ()


def test_dead_letters_and_requeue_keep_headers(make_queue: Any) -> None:
    q = make_queue(max_attempts=1)
    q.add({"v": 1}, id="d", headers=TRACE)
    assert q.fail(q.lease(block=False), error="boom") is FailOutcome.DEAD
    total, (dead,) = q.dead()
    assert total == 1 and dead.data == {"v": 1} and dead.headers == TRACE
    assert dead.last_error == "boom"
    assert q.dead_requeue(["d"]) == 1
    lease = q.lease(block=False)
    assert lease.headers == TRACE
    assert q.requeue(lease, data={"v": 2})  # a new payload keeps the lease's headers
    st = q.state("d")
    assert st.state is State.PENDING and st.headers == TRACE
    again = q.lease(block=False)
    assert again.data == {"v": 2} and again.headers == TRACE


def test_a_lease_knows_the_server_time_it_was_granted(make_queue: Any) -> None:
    q = make_queue(lease=7)
    q.add("x")
    lease = q.lease(block=False)
    assert lease.deadline_ms - lease.leased_ms == 7000
