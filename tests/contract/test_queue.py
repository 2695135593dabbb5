"""The queue contract, run as {sync, async} x {valkey, redis 7.0, 3-master cluster}.

Time-dependent cases move the queue's clock (``face.advance``) instead of sleeping.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import leaseq
from leaseq import FailOutcome, Item, State
from leaseq.keys import QueueKeys


def keys_of(face: Any, name: str | None = None) -> dict[str, Any]:
    """Every key of the queue that exists, with its type."""
    k = QueueKeys.of(name or face.name)
    out = {}
    for key in (*k.all_fixed,):
        t = face.raw.type(key)
        if t != b"none":
            out[key.rsplit(":", 1)[1]] = t.decode()
    return out


# ---------------------------------------------------------------------------- basics


@pytest.mark.parametrize(
    "value",
    [{"a": [1, 2, {"b": None}]}, "text", "", 0, {}, [], False, 3.5, "ünïcødé ✓ {}",
     b"\x00\xff raw \x80 bytes", b""],
    ids=["dict", "str", "empty-str", "zero", "empty-dict", "empty-list", "false", "float",
         "unicode", "bytes", "empty-bytes"],
)
def test_payload_round_trips_exactly(make_queue: Any, value: Any) -> None:
    q = make_queue()
    added = q.add(value)
    assert added and added.added
    lease = q.lease(block=False)
    assert lease is not None
    assert lease.data == value and type(lease.data) is type(value)
    assert lease.id == added.id and lease.attempt == 1
    assert q.complete(lease)


def test_complete_leaves_nothing_behind(make_queue: Any, face: Any) -> None:
    q = make_queue()
    q.add({"x": 1}, delay=0)
    q.complete(q.lease(block=False))
    left = keys_of(face)
    # meta keeps counters; acked keeps the finishing token for a minute (repeat detection).
    assert set(left) <= {"meta", "acked"}, left
    assert face.raw.hlen(QueueKeys.of(face.name).items) == 0


def test_fifo_within_priority_and_higher_priority_first(make_queue: Any) -> None:
    q = make_queue()
    for i in range(3):
        q.add(f"low{i}", priority=-5)
    for i in range(3):
        q.add(f"mid{i}")
    q.add("top", priority=1000)
    got = [q.lease(block=False).data for _ in range(7)]
    assert got == ["top", "mid0", "mid1", "mid2", "low0", "low1", "low2"]
    assert q.lease(block=False) is None


def test_add_with_id_is_idempotent_in_every_state(make_queue: Any, face: Any) -> None:
    q = make_queue(max_attempts=1)
    assert q.add("a", id="p")
    again = q.add("b", id="p")
    assert not again and again.state is State.PENDING
    assert q.add("d", id="d", delay=60).added
    assert q.add("x", id="d").state is State.DELAYED
    lease = q.lease(block=False)
    assert lease.id == "p" and lease.data == "a"
    assert q.add("c", id="p").state is State.LEASED
    assert q.fail(lease, error="boom") is FailOutcome.DEAD
    assert q.add("c", id="p").state is State.DEAD
    assert q.state("p").last_error == "boom"
    # once completed, the id may be added again as a new item
    assert q.complete("p")
    assert q.add("new", id="p").added


def test_unique_by_content(make_queue: Any) -> None:
    q = make_queue(unique_by_content=True)
    first = q.add({"job": 1})
    assert first.added
    dup = q.add({"job": 1})
    assert not dup.added and dup.id == first.id
    assert q.add({"job": 2}).added
    assert q.stats().pending == 2


def test_add_many_reports_each_item(make_queue: Any) -> None:
    q = make_queue()
    res = q.add_many(["a", Item("b", id="fixed"), Item("c", id="fixed"),
                      Item("d", priority=3), Item("e", delay=30)])
    assert [r.added for r in res] == [True, True, False, True, True]
    assert res[2].state is State.PENDING
    s = q.stats()
    assert (s.pending, s.delayed) == (3, 1)
    assert q.lease(block=False).data == "d"


def test_lease_many_and_complete_many(make_queue: Any) -> None:
    q = make_queue()
    q.add_many(range(25))
    leases = q.lease_many(10, block=False)
    assert [x.data for x in leases] == list(range(10))
    assert len({x.token for x in leases}) == 10
    assert q.complete_many(leases) == [True] * 10
    assert q.complete_many(leases[:3]) == [True] * 3  # repeated by the same tokens
    rest = q.lease_many(100, block=False)
    assert [x.data for x in rest] == list(range(10, 25))
    s = q.stats()
    assert (s.pending, s.leased, s.counter("completed")) == (0, 15, 10)


def test_complete_and_lease_takes_the_next_item_in_the_same_call(make_queue: Any) -> None:
    q = make_queue()
    q.add_many(["a", "b", "c"])
    lease = q.lease(block=False)
    ok, nxt = q.complete_and_lease(lease)
    assert ok and [x.data for x in nxt] == ["b"]
    ok, nxt = q.complete_and_lease(nxt[0], n=5)
    assert ok and [x.data for x in nxt] == ["c"]
    ok, nxt = q.complete_and_lease(nxt[0])
    assert ok and nxt == []
    assert q.stats().counter("completed") == 3


# ---------------------------------------------------------------------------- leases


def test_expired_lease_comes_back_and_counts_an_attempt(make_queue: Any, face: Any) -> None:
    q = make_queue(lease=5)
    q.add("job")
    first = q.lease(block=False)
    assert q.lease(block=False) is None
    face.advance(5.1)
    second = q.lease(block=False)
    assert second is not None and second.id == first.id and second.attempt == 2
    assert second.token != first.token
    st = q.state(first.id)
    assert st.state is State.LEASED and st.attempts == 2
    assert st.last_error == "lease expired (attempt 1)"
    assert q.stats().counter("expired") == 1


def test_first_completer_wins_even_with_an_expired_lease(make_queue: Any, face: Any) -> None:
    q = make_queue(lease=1)
    q.add("job")
    old = q.lease(block=False)
    face.advance(2)
    new = q.lease(block=False)
    assert q.complete(old) is True  # late holder finishes first: at-least-once
    assert q.complete(new) is False  # exactly one True per item
    assert q.extend(new) is False


def test_stale_token_cannot_touch_a_new_incarnation(make_queue: Any) -> None:
    q = make_queue()
    q.add("v1", id="same")
    old = q.lease(block=False)
    assert q.complete(old)
    q.add("v2", id="same")
    new = q.lease(block=False)
    assert new.data == "v2"
    assert q.complete(old) is True  # a repeat of old's own completion, answered the same
    assert q.extend(old) is False
    assert q.fail(old, error="x") is FailOutcome.STALE  # old finished by completing, not failing
    assert q.state("same").state is State.LEASED  # untouched
    assert q.complete(new) is True


def test_extend_is_fenced(make_queue: Any, face: Any) -> None:
    q = make_queue(lease=2)
    q.add("job")
    lease = q.lease(block=False)
    assert q.extend(lease, 10)
    face.advance(5)
    assert q.lease(block=False) is None  # extended past the original deadline
    face.advance(6)
    other = q.lease(block=False)
    assert other is not None
    assert q.extend(lease) is False
    assert q.extend(other) is True


def test_sub_second_lease_and_timeout(make_queue: Any) -> None:
    q = make_queue(lease=0.15)
    q.add("job")
    first = q.lease(block=False)
    t0 = time.monotonic()
    again = q.lease(timeout=2, lease=5)
    waited = time.monotonic() - t0
    assert again is not None and again.id == first.id and again.attempt == 2
    assert waited < 1.5
    t0 = time.monotonic()
    assert q.lease(timeout=0.2) is None  # (the item is leased again)
    assert 0.15 <= time.monotonic() - t0 < 1.5


def test_blocking_lease_wakes_on_add(make_queue: Any, face: Any) -> None:
    q = make_queue()
    producer = leaseq.Queue(face.name, face.server.client())
    timer = threading.Timer(0.3, lambda: producer.add("late"))
    timer.start()
    t0 = time.monotonic()
    got = q.lease(timeout=5)
    elapsed = time.monotonic() - t0
    timer.join()
    assert got is not None and got.data == "late"
    assert 0.2 < elapsed < 2.0


def test_blocking_lease_wakes_when_a_delayed_item_is_due(make_queue: Any) -> None:
    q = make_queue()
    q.add("soon", delay=0.4)
    t0 = time.monotonic()
    got = q.lease(timeout=5)
    assert got is not None and got.data == "soon"
    assert 0.3 < time.monotonic() - t0 < 1.5


# ---------------------------------------------------------------------------- retries


def test_fail_retries_with_delay_then_dead_letters(make_queue: Any, face: Any) -> None:
    q = make_queue(max_attempts=3)
    q.add({"n": 1}, id="poison")
    for attempt in (1, 2):
        lease = q.lease(block=False)
        assert lease.attempt == attempt
        assert q.fail(lease, error=f"err{attempt}", retry_in=10) is FailOutcome.RETRIED
        st = q.state("poison")
        assert st.state is State.DELAYED and st.last_error == f"err{attempt}"
        assert q.lease(block=False) is None
        face.advance(10.5)
    lease = q.lease(block=False)
    assert lease.attempt == 3
    assert q.fail(lease, error=ValueError("bad")) is FailOutcome.DEAD
    st = q.state("poison")
    assert st.state is State.DEAD and st.attempts == 3 and "bad" in (st.last_error or "")
    total, page = q.dead()
    assert total == 1 and page[0].id == "poison" and page[0].data == {"n": 1}
    s = q.stats()
    assert (s.counter("failed"), s.counter("retried"), s.counter("dead")) == (3, 2, 1)


def test_default_backoff_delays_the_retry(make_queue: Any) -> None:
    q = make_queue(backoff=leaseq.Backoff(base=30, jitter=0))
    q.add("job")
    assert q.fail(q.lease(block=False), error="x") is FailOutcome.RETRIED
    st = q.state(q.peek(1, which="delayed")[0].id)
    assert st.due_ms is not None and 29_000 <= st.due_ms - st.now_ms <= 30_000


def test_expired_leases_dead_letter_a_poison_item(make_queue: Any, face: Any) -> None:
    q = make_queue(lease=1, max_attempts=2)
    q.add("kills its worker", id="k")
    for _ in range(2):
        assert q.lease(block=False).id == "k"
        face.advance(1.5)
    assert q.lease(block=False) is None
    st = q.state("k")
    assert st.state is State.DEAD and st.last_error == "lease expired (attempt 2)"


def test_requeue_does_not_count_an_attempt(make_queue: Any, face: Any) -> None:
    q = make_queue()
    q.add_many(["a", "b"])
    a = q.lease(block=False)
    assert q.requeue(a)
    assert q.requeue(a) is True  # repeat answers as the first did
    assert q.lease(block=False).data == "b"  # a went to the back
    again = q.lease(block=False)
    assert again.data == "a" and again.attempt == 1
    assert q.requeue(again, delay=5)
    assert q.state(again.id).state is State.DELAYED
    face.advance(6)
    assert q.lease(block=False).attempt == 1


# ---------------------------------------------------------------------------- dead letters


def test_dead_letters_requeue_and_purge(make_queue: Any) -> None:
    q = make_queue(max_attempts=1)
    q.add_many([Item(i, id=f"d{i}") for i in range(5)])
    for lease in q.lease_many(5, block=False):
        q.fail(lease, error="nope")
    total, page = q.dead(2, start=1)
    assert total == 5 and [p.id for p in page] == ["d1", "d2"]
    assert q.dead_requeue(["d0", "zzz"]) == 1
    st = q.state("d0")
    assert st.state is State.PENDING and st.attempts == 0 and st.last_error is None
    assert q.dead_purge(["d1"]) == 1 and q.state("d1").state is State.UNKNOWN
    assert q.dead_requeue() == 3
    assert q.stats().pending == 4 and q.stats().dead == 0
    for lease in q.lease_many(4, block=False):
        q.fail(lease, error="again")
    assert q.dead_purge() == 4
    assert q.stats().dead == 0


def test_dead_letter_count_cap(make_queue: Any) -> None:
    q = make_queue(max_attempts=1, dead_max=3)
    q.add_many([Item(i, id=f"d{i}") for i in range(5)])
    for lease in q.lease_many(5, block=False):
        q.fail(lease, error="x")
    total, page = q.dead()
    assert total == 3 and [p.id for p in page] == ["d2", "d3", "d4"]
    assert q.state("d0").state is State.UNKNOWN


def test_dead_letter_age_cap(make_queue: Any, face: Any) -> None:
    q = make_queue(max_attempts=1, dead_ttl=100)
    q.add("old", id="old")
    q.fail(q.lease(block=False), error="x")
    face.advance(101)
    q.add("young", id="young")
    q.fail(q.lease(block=False), error="x")
    assert [p.id for p in q.dead()[1]] == ["young"]


# ---------------------------------------------------------------------------- inspection


def test_state_through_the_life_of_an_item(make_queue: Any, face: Any) -> None:
    q = make_queue(lease=10)
    assert q.state("nope").state is State.UNKNOWN
    q.add("x", id="i", delay=5, priority=7)
    st = q.state("i")
    assert st.state is State.DELAYED and st.priority == 7 and st.due_ms is not None
    face.advance(6)
    lease = q.lease(block=False)
    st = q.state("i")
    assert st.state is State.LEASED and st.attempts == 1
    assert st.deadline_ms == lease.deadline_ms
    assert q.complete(lease, result={"answer": 42}, result_ttl=60)
    st = q.state("i")
    assert st.state is State.COMPLETED and st.result == {"answer": 42}
    ttl = face.raw.pttl(QueueKeys.of(face.name).result("i"))
    assert 0 < ttl <= 60_000


def test_stats_peek_remove_purge_sweep(make_queue: Any, face: Any) -> None:
    q = make_queue(lease=1)
    q.add_many([Item("a", id="a"), Item("b", id="b"), Item("c", id="c", delay=1)])
    assert [p.id for p in q.peek(5)] == ["a", "b"]
    assert [p.id for p in q.peek(5, which="delayed")] == ["c"]
    lease = q.lease(block=False)
    face.advance(2)
    s = q.stats()
    assert (s.pending, s.delayed, s.leased, s.delayed_due, s.leases_expired) == (1, 1, 1, 1, 1)
    assert q.sweep() == (1, 1)
    s = q.stats()
    assert (s.pending, s.delayed, s.leased) == (3, 0, 0)
    assert q.remove("b") is True and q.remove("b") is False
    assert q.complete(lease) is True  # reclaimed but not re-leased: the holder may finish
    assert q.purge() == 1
    s = q.stats()
    assert (s.pending, s.delayed, s.leased, s.dead) == (0, 0, 0, 0)
    assert s.counter("added") == 3 and s.counter("purged") == 1
    assert set(keys_of(face)) <= {"meta", "acked"}


def test_removed_item_cannot_be_finished_by_its_holder(make_queue: Any) -> None:
    q = make_queue()
    q.add("x")
    lease = q.lease(block=False)
    assert q.remove(lease.id)
    assert q.complete(lease) is False
    assert q.extend(lease) is False
    assert q.fail(lease, error="e") is FailOutcome.STALE


# ---------------------------------------------------------------------------- faults


def test_scripts_reload_after_script_flush(make_queue: Any, face: Any) -> None:
    q = make_queue()
    q.add("before")
    if face.server.is_cluster:
        for node in face.server.backend.nodes:
            node.client().script_flush()
    else:
        face.raw.script_flush()
    lease = q.lease(block=False)
    assert lease.data == "before" and q.complete(lease)


def test_peeked_leases_carry_their_token(make_queue: Any) -> None:
    q = make_queue()
    q.add_many(["a", "b"])
    held = q.lease(block=False)
    (row,) = q.peek(5, which="leased")
    assert row.id == held.id and row.token == held.token
    assert q.peek(5)[0].token is None  # never leased
    # an operator that does not hold the lease can still fail it, fenced by the token
    assert q.fail(row.id, token=row.token, error="stuck", retry_in=0) is FailOutcome.RETRIED
    assert q.extend(held) is False


def test_requeue_can_replace_the_payload_and_take_a_bare_id(make_queue: Any) -> None:
    q = make_queue()
    q.add({"step": 1}, id="job")
    lease = q.lease(block=False)
    assert q.requeue(lease, data={"step": 2})
    st = q.state("job")
    assert st.state is State.PENDING and st.payload is not None
    again = q.lease(block=False)
    assert again.data == {"step": 2} and again.attempt == 1
    assert q.requeue("job")  # a bare id gives back whatever lease the item has
    assert q.requeue("job") is False  # not leased any more
    assert q.extend(again) is False
    assert q.lease(block=False).data == {"step": 2}


def test_complete_many_and_lease_in_one_call(make_queue: Any) -> None:
    q = make_queue()
    q.add_many(range(7))
    first = q.lease_many(3, block=False)
    flags, nxt = q.complete_many_and_lease(first, n=3)
    assert flags == [True] * 3 and [x.data for x in nxt] == [3, 4, 5]
    flags, nxt = q.complete_many_and_lease(nxt, n=3)
    assert flags == [True] * 3 and [x.data for x in nxt] == [6]
    assert q.stats().counter("completed") == 6
