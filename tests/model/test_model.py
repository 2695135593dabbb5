"""Model-based test: random operation sequences against a real server and a plain-Python model.

After every step the observable state (stats, state(id) of every id, what lease returns) must
match the model. The queue's clock is held still at the model's (the meta field clock_fixed,
which the scripts read instead of TIME) and moved only by the ``advance`` rule, never by
sleeping: however slow the machine, no real time passes for the queue between two steps.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

import leaseq
from leaseq import FailOutcome, Item, State
from leaseq.keys import QueueKeys
from leaseq.server.process import ServerProcess

IDS = ["a", "b", "c", "d", "e", "f"]
BAND = 2**42
LEASE = 10.5
MAX_ATT = 3
ACK_WINDOW = 60.0
EXAMPLES = int(os.environ.get("LEASEQ_MODEL_EXAMPLES", "180"))
STEPS = int(os.environ.get("LEASEQ_MODEL_STEPS", "70"))

_server: ServerProcess | None = None
_runs = {"examples": 0, "steps": 0}


@dataclass
class It:
    """The model of one item."""

    inc: int
    prio: int
    seq: int
    data: Any
    state: State = State.PENDING
    att: int = 0
    tok: int = 0
    at: float = 0.0  # due time (delayed), deadline (leased), death time (dead)
    error: str | None = None


@dataclass
class Held:
    lease: leaseq.Lease
    inc: int
    tok: int


@dataclass
class Model:
    now: float = 0.0
    seq: int = 0
    items: dict[str, It] = field(default_factory=dict)
    acked: dict[str, float] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)

    def next_seq(self, n: int) -> int:
        self.seq += n
        return self.seq - n + 1

    def count(self, name: str, n: int = 1) -> None:
        if n:
            self.counters[name] = self.counters.get(name, 0) + n

    def in_state(self, s: State) -> list[str]:
        return [i for i, x in self.items.items() if x.state is s]

    def pending_order(self) -> list[str]:
        ready = self.in_state(State.PENDING)
        return sorted(ready, key=lambda i: ((1000 - self.items[i].prio) * BAND
                                            + self.items[i].seq, i))

    def ack_seen(self, key: str) -> bool | None:
        """True/False, or None when too close to the window's edge to say."""
        if key not in self.acked:
            return False
        age = self.now - self.acked[key]
        if abs(age - ACK_WINDOW) < 1:
            return None
        return age < ACK_WINDOW

    def maintain(self, limit: int) -> None:
        due = sorted((x.at, i) for i, x in self.items.items()
                     if x.state is State.DELAYED and x.at <= self.now)[:limit]
        for _, i in due:
            self.items[i].state = State.PENDING
        gone = sorted((x.at, i) for i, x in self.items.items()
                      if x.state is State.LEASED and x.at <= self.now)[:limit]
        for _, i in gone:
            x = self.items[i]
            x.error = f"lease expired (attempt {x.att})"
            if x.att >= MAX_ATT:
                x.state, x.at = State.DEAD, self.now
                self.count("dead")
            else:
                x.state = State.PENDING
        self.count("expired", len(gone))


class QueueMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        assert _server is not None
        self.raw = _server.client()
        _runs["examples"] += 1
        self.name = f"model-{_runs['examples']}-{os.getpid()}"
        self.q = leaseq.Queue(self.name, self.raw, lease=LEASE, max_attempts=MAX_ATT,
                              dead_max=0, dead_ttl=0)
        self.m = Model()
        self.held: list[Held] = []
        self.meta = QueueKeys.of(self.name).meta
        self.base_ms = self.server_ms()

    def server_ms(self) -> int:
        secs, micros = self.raw.time()
        return int(secs) * 1000 + int(micros) // 1000

    def pin_clock(self) -> None:
        """Hold the queue's clock at the model's (the scripts then read no TIME at all)."""
        self.raw.hset(self.meta, "clock_fixed", self.base_ms + round(self.m.now * 1000))

    @initialize()
    def start(self) -> None:
        self.q.purge()

    def teardown(self) -> None:
        self.q.purge()
        self.raw.delete(self.meta, QueueKeys.of(self.name).acked)
        self.raw.close()

    def step(self) -> None:
        _runs["steps"] += 1
        self.pin_clock()

    # -------------------------------------------------------------------- produce

    @rule(item_id=st.sampled_from(IDS), prio=st.sampled_from([-1, 0, 2]),
          delay=st.sampled_from([0, 5.5, 20.5]), data=st.integers(0, 9))
    def add(self, item_id: str, prio: int, delay: float, data: int) -> None:
        self.step()
        got = self.q.add(data, id=item_id, priority=prio, delay=delay or None)
        first = self.m.next_seq(1)
        if item_id in self.m.items:
            assert not got.added and got.state is self.m.items[item_id].state
            return
        assert got.added
        x = It(inc=first, prio=prio, seq=first, data=data)
        if delay:
            x.state, x.at = State.DELAYED, self.m.now + delay
        self.m.items[item_id] = x
        self.m.count("added")

    @rule(pair=st.lists(st.sampled_from(IDS), min_size=2, max_size=2))
    def add_many(self, pair: list[str]) -> None:
        self.step()
        got = self.q.add_many([Item(k, id=k) for k in pair])
        first = self.m.next_seq(2)
        for k, (item_id, res) in enumerate(zip(pair, got, strict=True)):
            if item_id in self.m.items:
                assert not res.added
                continue
            assert res.added
            self.m.items[item_id] = It(inc=first + k, prio=0, seq=first + k, data=item_id)
            self.m.count("added")

    # -------------------------------------------------------------------- consume

    def _take(self, n: int) -> list[tuple[str, int, int]]:
        self.m.maintain(n + 2)
        order = self.m.pending_order()[:n]
        out = []
        if order:
            tok = self.m.next_seq(len(order))
            for k, i in enumerate(order):
                x = self.m.items[i]
                x.state, x.att, x.tok, x.at = State.LEASED, x.att + 1, tok + k, self.m.now + LEASE
                out.append((i, x.att, x.inc))
            self.m.count("leased", len(order))
        return out

    def _hold(self, leases: list[leaseq.Lease], expected: list[tuple[str, int, int]]) -> None:
        assert [(x.id, x.attempt) for x in leases] == [(i, a) for i, a, _ in expected]
        for lease in leases:
            x = self.m.items[lease.id]
            assert lease.data == x.data
            self.held.append(Held(lease, x.inc, x.tok))

    @rule(n=st.integers(1, 3))
    def lease_many(self, n: int) -> None:
        self.step()
        got = self.q.lease_many(n, block=False)
        self._hold(got, self._take(n))

    def _complete_model(self, h: Held) -> bool | None:
        x = self.m.items.get(h.lease.id)
        if x is not None and x.inc == h.inc:
            del self.m.items[h.lease.id]
            self.m.acked[f"c{h.tok}"] = self.m.now
            self.m.count("completed")
            return True
        return self.m.ack_seen(f"c{h.tok}")

    @precondition(lambda self: self.held)
    @rule(k=st.integers(0, 20), and_lease=st.booleans())
    def complete(self, k: int, and_lease: bool) -> None:
        self.step()
        h = self.held.pop(k % len(self.held))
        if and_lease:
            ok, nxt = self.q.complete_and_lease(h.lease)
            expected = self._complete_model(h)
            self._hold(nxt, self._take(1))
        else:
            ok = self.q.complete(h.lease)
            expected = self._complete_model(h)
        assert expected is None or ok is expected

    def _current(self, h: Held) -> It | None:
        x = self.m.items.get(h.lease.id)
        if x and x.inc == h.inc and x.tok == h.tok and x.state is State.LEASED:
            return x
        return None

    @precondition(lambda self: self.held)
    @rule(k=st.integers(0, 20))
    def extend(self, k: int) -> None:
        self.step()
        h = self.held[k % len(self.held)]
        ok = self.q.extend(h.lease, LEASE)
        x = self._current(h)
        assert ok is (x is not None)
        if x is not None:
            x.at = self.m.now + LEASE

    @precondition(lambda self: self.held)
    @rule(k=st.integers(0, 20), retry=st.sampled_from([0, 5.5]))
    def fail(self, k: int, retry: float) -> None:
        self.step()
        h = self.held.pop(k % len(self.held))
        got = self.q.fail(h.lease, error=f"e{k}", retry_in=retry)
        x = self._current(h)
        if x is None:
            seen = self.m.ack_seen(f"f{h.tok}")
            if seen is not None:
                assert got is (FailOutcome.REPEATED if seen else FailOutcome.STALE)
            return
        self.m.acked[f"f{h.tok}"] = self.m.now
        self.m.count("failed")
        x.error = f"e{k}"
        if x.att >= MAX_ATT:
            x.state, x.at = State.DEAD, self.m.now
            self.m.count("dead")
            assert got is FailOutcome.DEAD
        else:
            self.m.count("retried")
            x.state = State.DELAYED if retry else State.PENDING
            x.at = self.m.now + retry
            assert got is FailOutcome.RETRIED

    @precondition(lambda self: self.held)
    @rule(k=st.integers(0, 20), delay=st.sampled_from([0, 5.5]))
    def requeue(self, k: int, delay: float) -> None:
        self.step()
        h = self.held.pop(k % len(self.held))
        ok = self.q.requeue(h.lease, delay)
        x = self._current(h)
        if x is None:
            seen = self.m.ack_seen(f"f{h.tok}")
            if seen is not None:
                assert ok is seen
            return
        assert ok is True
        self.m.acked[f"f{h.tok}"] = self.m.now
        self.m.count("requeued")
        x.att = max(x.att - 1, 0)
        x.seq = self.m.next_seq(1)
        x.state = State.DELAYED if delay else State.PENDING
        x.at = self.m.now + delay

    # -------------------------------------------------------------------- admin

    @rule(item_id=st.sampled_from(IDS))
    def remove(self, item_id: str) -> None:
        self.step()
        ok = self.q.remove(item_id)
        assert ok is (item_id in self.m.items)
        if ok:
            del self.m.items[item_id]
            self.m.count("removed")

    @rule()
    def sweep(self) -> None:
        self.step()
        self.q.sweep()
        self.m.maintain(1000)

    @rule()
    def dead_requeue(self) -> None:
        self.step()
        moved = self.q.dead_requeue()
        dead = sorted((x.at, i) for i, x in self.m.items.items() if x.state is State.DEAD)
        assert moved == len(dead)
        for _, i in dead:
            x = self.m.items[i]
            x.att, x.seq, x.state, x.error = 0, self.m.next_seq(1), State.PENDING, None
        self.m.count("requeued", len(dead))

    @rule(seconds=st.sampled_from([3, 7, 31]))
    def advance(self, seconds: int) -> None:
        self.step()
        self.m.now += seconds
        self.pin_clock()

    # -------------------------------------------------------------------- observe

    @invariant()
    def observable_state_matches(self) -> None:
        self.pin_clock()
        s = self.q.stats()
        counts = {st_: len(self.m.in_state(st_)) for st_ in
                  (State.PENDING, State.DELAYED, State.LEASED, State.DEAD)}
        assert (s.pending, s.delayed, s.leased, s.dead) == (
            counts[State.PENDING], counts[State.DELAYED], counts[State.LEASED],
            counts[State.DEAD])
        assert {k: v for k, v in s.counters.items() if v} == self.m.counters
        for item_id in IDS:
            got = self.q.state(item_id)
            x = self.m.items.get(item_id)
            if x is None:
                assert got.state is State.UNKNOWN
                continue
            assert (got.state, got.attempts, got.priority) == (x.state, x.att, x.prio)
            assert got.last_error == x.error
        assert [p.id for p in self.q.peek(10)] == self.m.pending_order()


QueueMachine.TestCase.settings = settings(
    max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None,
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(scope="module", autouse=True)
def _model_server() -> Any:
    global _server
    server = ServerProcess(kind="valkey")
    server.start()
    _server = server
    yield server
    print(f"\nmodel run: {_runs['examples']} examples, {_runs['steps']} steps")
    server.close()
    _server = None


@pytest.mark.timeout(360)  # ~10k steps: about a minute alone, several on a loaded machine
def test_queue_matches_the_model() -> None:
    QueueMachine.TestCase().runTest()
    assert _runs["steps"] > 0
