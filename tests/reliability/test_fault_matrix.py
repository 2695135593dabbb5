"""The connection-fault matrix: every public operation of ``leaseq.Queue`` and
``leaseq.aio.Queue`` x the moment the connection breaks (``before`` the command reaches the
server, reply lost ``after`` it ran, ``mid``-reply, reply ``stall``-ed past the client's socket
timeout) x {redis-py's default retry, no retry}.

Each cell builds the same small queue (pending p1 p2 p3, leased l1 l2, delayed d1, dead x1),
breaks the one script call of the operation through :class:`tests.faults.CuttingProxy`, and
compares with a reference run of the same operation on an unbroken connection:

* what the caller sees: ``LeaseqConnectionError`` chained to redis-py's error (no retry), the
  reference answer (a transparent retry), or the documented answer of a repeat (``RETRIED``);
* the queue afterwards, read through a fresh client: exactly the reference state (the call took
  effect once: every counter, set, attempt count and error equal), or the state before the call
  when it never reached the server; the calls that lease also hold the items their lost reply
  named, until the deadline. And in every cell: each item in exactly one set, ``stats()`` equal
  to the tally of ``state(id)``, ``added`` = items left + completed + removed + purged.

The second part breaks a call while *another client acts* before the retry arrives, and shows
that no repeat applies twice: a call with a lease token is recognised by it, a call without one
by its call key (the first run's reply, kept 60 s: lua/includes/calls.lua).
"""

from __future__ import annotations

import asyncio
import inspect
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis
import redis.asyncio
import redis.asyncio.retry
from redis.backoff import NoBackoff
from redis.retry import Retry

import leaseq
import leaseq.aio
from leaseq import FailOutcome, Item, ItemState, Lease, Peeked, State, Stats
from leaseq.keys import QueueKeys
from leaseq.protocol import split_item, split_state
from leaseq.scripts import library, load_library, script
from tests.faults import MOMENTS, CuttingProxy, Moment

SOCKET_TIMEOUT = 0.25  # a stalled reply costs this much per cell
QUEUE_KW: dict[str, Any] = {"lease": 30, "max_attempts": 2}
KNOWN = ("p1", "p2", "p3", "l1", "l2", "d1", "x1", "n1", "n2", "late", "job")
SCRIPTS = ("add", "lease", "complete", "extend", "fail", "requeue", "remove", "state", "stats",
           "peek", "purge", "sweep", "dead_requeue", "dead_purge")
CLOCK_JUMP_MS = 2_000_000  # for sweep: d1 (1000 s) due, l1 l2 (30 s) expired


# ------------------------------------------------------------------------------ the queue


def build(raw: Any, name: str) -> dict[str, Lease]:
    """pending p1 p2 p3, leased l1 l2 (attempt 1), delayed d1, dead x1; the leases of l1, l2."""
    q = leaseq.Queue(name, raw, **QUEUE_KW)
    q.add("x", id="x1")
    for _ in range(2):
        got = q.lease(block=False)
        assert got is not None and got.id == "x1"
        q.fail(got, error="boom", retry_in=0)
    q.add_many([Item("l1", id="l1"), Item("l2", id="l2")])
    leases = {x.id: x for x in q.lease_many(2, block=False)}
    q.add_many([Item(i, id=i) for i in ("p1", "p2", "p3")])
    q.add("d1", id="d1", delay=1000)
    return leases


def drop(raw: Any, name: str) -> None:
    raw.delete(*QueueKeys.of(name).all_fixed)


def snapshot(raw: Any, name: str) -> dict[str, Any]:
    """Every item (its sets, attempts, priority, error, payload, time left to its deadline or
    due time in tens of seconds) and every counter."""
    k = QueueKeys.of(name)
    secs, micros = raw.time()
    now = secs * 1000 + micros // 1000 + int(raw.hget(k.meta, "clock_offset") or 0)
    where: dict[str, list[str]] = defaultdict(list)
    left: dict[str, int] = {}  # leased / delayed: time to the deadline / due time, in 10 s
    for which, key in (("pending", k.pending), ("delayed", k.delayed), ("leased", k.leased),
                       ("dead", k.dead)):
        for member, score in raw.zrange(key, 0, -1, withscores=True):
            where[member.decode()].append(which)
            if which in ("leased", "delayed"):
                left[member.decode()] = round((score - now) / 10_000)

    def table(key: str) -> dict[str, bytes]:
        return {f.decode(): v for f, v in raw.hgetall(key).items()}

    recs, errors, data = {}, {}, {}
    stored = table(k.items)
    for i, value in stored.items():
        if i.startswith("\x01"):
            continue
        inc, prio, seq, data[i] = split_item(value)
        att, tok, err = 0, 0, b""
        if "\x01" + i in stored:
            _, att, tok, _, err = split_state(stored["\x01" + i])
        recs[i] = f"{inc}:{prio}:{seq}:{att}:{tok}".encode()
        if err:
            errors[i] = err
    ids = set(where) | set(recs)
    unknown = [i for i in ids if i not in KNOWN]
    assert len(unknown) <= 1, unknown  # at most one generated id per scenario
    items = {}
    for i in ids:
        parts = recs[i].decode().split(":") if i in recs else [None] * 5
        items[i if i in KNOWN else "*"] = (tuple(sorted(where[i])) or ("none",), parts[3],
                                           parts[1], errors.get(i), data.get(i), left.get(i))
    counters = {f: int(v) for f, v in table(k.meta).items()
                if f not in ("seq", "clock_offset", "due")}
    return {"items": items, "counters": counters}


def check_consistent(raw: Any, name: str) -> None:
    """Each item in exactly one set, stats() equal to the tally of state(id), and every item
    ever added accounted for."""
    snap = snapshot(raw, name)
    for item_id, (sets, att, _, _, payload, _) in snap["items"].items():
        assert len(sets) == 1 and sets != ("none",), (item_id, sets)
        assert att is not None and payload is not None, item_id  # a record and a payload
    q = leaseq.Queue(name, raw, **QUEUE_KW)
    ids = [f.decode() for f in raw.hkeys(QueueKeys.of(name).items) if f[:1] != b"\x01"]
    tally = Counter(q.state(i).state for i in ids)
    s = q.stats()
    assert (s.pending, s.delayed, s.leased, s.dead) == (
        tally[State.PENDING], tally[State.DELAYED], tally[State.LEASED], tally[State.DEAD])
    gone = sum(s.counter(c) for c in ("completed", "removed", "purged", "dead_purged"))
    assert s.counter("added") == len(ids) + gone


# ------------------------------------------------------------------------------ the operations


@dataclass(frozen=True)
class Op:
    """One public call: ``call(queue, leases)`` (a coroutine on the asyncio queue) and the
    script whose request the proxy breaks."""

    name: str
    script: str
    call: Callable[[Any, dict[str, Lease]], Any]
    leases: bool = False  # takes leases: a repeat leases other items
    clock: int = 0  # ms the queue's clock jumps before the call


OPS = [
    Op("add", "add", lambda q, L: q.add("new", id="n1")),
    Op("add(no id)", "add", lambda q, L: q.add("new")),
    Op("add_many", "add", lambda q, L: q.add_many([Item("a", id="n1"), Item("b", id="n2"), "c"])),
    Op("lease", "lease", lambda q, L: q.lease(block=False), leases=True),
    Op("lease_many", "lease", lambda q, L: q.lease_many(2, block=False), leases=True),
    Op("complete", "complete", lambda q, L: q.complete(L["l1"])),
    Op("complete(bare id)", "complete", lambda q, L: q.complete("l1")),
    Op("complete_many", "complete", lambda q, L: q.complete_many([L["l1"], L["l2"]])),
    Op("complete_and_lease", "complete", lambda q, L: q.complete_and_lease(L["l1"], n=1),
       leases=True),
    Op("complete_many_and_lease", "complete",
       lambda q, L: q.complete_many_and_lease([L["l1"], L["l2"]], n=2), leases=True),
    Op("extend", "extend", lambda q, L: q.extend(L["l1"], 60)),
    Op("extend_many", "extend", lambda q, L: q.extend_many([L["l1"], L["l2"]], 60)),
    Op("fail", "fail", lambda q, L: q.fail(L["l1"], error="bad", retry_in=0)),
    Op("requeue", "requeue", lambda q, L: q.requeue(L["l1"])),
    Op("requeue(bare id)", "requeue", lambda q, L: q.requeue("l1")),
    Op("remove", "remove", lambda q, L: q.remove("p2")),
    Op("remove_many", "remove", lambda q, L: q.remove_many(["p1", "l1", "zz"])),
    Op("state", "state", lambda q, L: q.state("l1")),
    Op("stats", "stats", lambda q, L: q.stats()),
    Op("peek", "peek", lambda q, L: q.peek(5)),
    Op("purge", "purge", lambda q, L: q.purge()),
    Op("sweep", "sweep", lambda q, L: q.sweep(), clock=CLOCK_JUMP_MS),
    Op("dead", "peek", lambda q, L: q.dead()),
    Op("dead_requeue(ids)", "dead_requeue", lambda q, L: q.dead_requeue(["x1"])),
    Op("dead_requeue(all)", "dead_requeue", lambda q, L: q.dead_requeue()),
    Op("dead_purge(ids)", "dead_purge", lambda q, L: q.dead_purge(["x1"])),
    Op("dead_purge(all)", "dead_purge", lambda q, L: q.dead_purge()),
]
BY_NAME = {op.name: op for op in OPS}

P = State.PENDING
# What a repeat answers when the first run's reply was lost (after / mid / stall with the
# client's retry), where it differs from an unbroken call. The state is right in every case.
# Calls without a lease token (add, remove, purge, dead-letter calls, complete and requeue by
# bare id) are absent: the first run stored its reply under the call's key, and the repeat
# answers exactly that (lua/includes/calls.lua).
RETRIED: dict[str, Any] = {
    "lease": ("lease", "p2", 1),  # the next item; p1 (the lost reply's) comes back later
    "lease_many": [("lease", "p3", 1)],  # all that was left
    "complete_and_lease": (True, [("lease", "p2", 1)]),  # completion recognised, next item
    "complete_many_and_lease": ([True, True], [("lease", "p3", 1)]),
    "fail": str(FailOutcome.REPEATED),  # recognised by its token
    "sweep": (0, 0),
}


def norm(x: Any) -> Any:
    """An answer without what differs between two runs of the same calls (times, tokens,
    generated ids)."""
    if isinstance(x, Lease):
        return ("lease", x.id, x.attempt)
    if isinstance(x, leaseq.AddResult):
        return ("add", x.id if x.id in KNOWN else "*", x.added, x.state)
    if isinstance(x, ItemState):
        return ("state", x.id, x.state, x.attempts, x.priority, x.last_error, x.payload)
    if isinstance(x, Stats):
        return ("stats", x.pending, x.delayed, x.leased, x.dead, x.delayed_due,
                x.leases_expired, sorted(x.counters.items()))
    if isinstance(x, Peeked):
        return ("peeked", x.id, x.payload, x.attempts, x.priority, x.last_error)
    if isinstance(x, FailOutcome):
        return str(x)
    if isinstance(x, list):
        return [norm(v) for v in x]
    if isinstance(x, tuple):
        return tuple(norm(v) for v in x)
    return x


def leased_ids(answer: Any) -> set[str]:
    """The ids of the leases inside a normalized answer."""
    if isinstance(answer, tuple) and answer and answer[0] == "lease":
        return {answer[1]}
    if isinstance(answer, list | tuple):
        return set().union(*(leased_ids(v) for v in answer)) if answer else set()
    return set()


# ------------------------------------------------------------------------------ running a cell


@dataclass
class Reference:
    before: dict[str, Any]
    answer: Any
    after: dict[str, Any]


@dataclass(repr=False)
class Bench:
    server: Any
    proxy: CuttingProxy
    raw: Any
    refs: dict[str, Reference] = field(default_factory=dict)
    serial: int = 0

    def fresh_name(self, tag: str) -> str:
        self.serial += 1
        return f"fm-{tag}-{self.serial}"

    def prepare(self, name: str, op: Op) -> dict[str, Lease]:
        leases = build(self.raw, name)
        if op.clock:
            self.raw.hincrby(QueueKeys.of(name).meta, "clock_offset", op.clock)
        return leases

    def reference(self, op: Op) -> Reference:
        if op.name not in self.refs:
            name = self.fresh_name("ref")
            leases = self.prepare(name, op)
            before = snapshot(self.raw, name)
            answer = norm(op.call(leaseq.Queue(name, self.raw, **QUEUE_KW), leases))
            self.refs[op.name] = Reference(before, answer, snapshot(self.raw, name))
            drop(self.raw, name)
        return self.refs[op.name]


@pytest.fixture(scope="module")
def bench(valkey_server: Any) -> Iterator[Bench]:
    raw = valkey_server.client()
    proxy = CuttingProxy(valkey_server.port)
    yield Bench(valkey_server, proxy, raw)
    proxy.close()
    raw.close()


def load_scripts(raw: Any) -> None:
    """Load the library and cache every script, so the broken call runs (a "function not
    found" or NOSCRIPT reply being cut would test nothing)."""
    assert load_library(raw)
    have = raw.script_exists(*(script(name).sha for name in SCRIPTS))
    for name, cached in zip(SCRIPTS, have, strict=True):
        if not cached:
            raw.script_load(script(name).source)


def wire(name: str) -> bytes:
    """What identifies a call of script ``name`` on the wire: queues call engine scripts as
    functions of the leaseq library (FCALL)."""
    return library().functions[name].encode()


def retry_kw(retry: bool, asyncio_face: bool) -> dict[str, Any]:
    if retry:
        return {}  # redis-py's default Retry
    if asyncio_face:
        return {"retry": redis.asyncio.retry.Retry(NoBackoff(), 0)}
    return {"retry": Retry(NoBackoff(), 0)}


def call_sync(b: Bench, name: str, op: Op, leases: dict[str, Lease], retry: bool) -> Any:
    client = redis.Redis(port=b.proxy.port, socket_timeout=SOCKET_TIMEOUT,
                         **retry_kw(retry, False))
    try:
        return op.call(leaseq.Queue(name, client, **QUEUE_KW), leases)
    finally:
        b.proxy.disarm()
        client.close()


def call_async(b: Bench, name: str, op: Op, leases: dict[str, Lease], retry: bool) -> Any:
    async def go() -> Any:
        client = redis.asyncio.Redis(port=b.proxy.port, socket_timeout=SOCKET_TIMEOUT,
                                     **retry_kw(retry, True))
        q = leaseq.aio.Queue(name, client, **QUEUE_KW)
        try:
            pending = op.call(q, leases)
            assert inspect.isawaitable(pending)
            return await pending
        finally:
            b.proxy.disarm()
            await q.close()
            await client.aclose()

    return asyncio.run(go())


CALLERS = {"sync": call_sync, "asyncio": call_async}


def expected_outcome(op: Op, moment: Moment, retry: bool) -> str:
    """'error', 'same' (the reference answer) or 'repeat' (the RETRIED answer)."""
    if not retry:
        return "error"
    if moment == "before" or op.name not in RETRIED:
        return "same"
    return "repeat"


def run_cell(b: Bench, face: str, op: Op, moment: Moment, retry: bool) -> None:
    ref = b.reference(op)
    name = b.fresh_name(face)
    load_scripts(b.raw)
    leases = b.prepare(name, op)
    assert snapshot(b.raw, name) == ref.before
    cuts = b.proxy.cuts
    b.proxy.arm(wire(op.script), moment)
    try:
        answer, error = norm(CALLERS[face](b, name, op, leases, retry)), None
    except leaseq.LeaseqConnectionError as exc:
        answer, error = None, exc
    assert b.proxy.cuts == cuts + 1  # the fault did happen, once

    outcome = expected_outcome(op, moment, retry)
    if outcome == "error":
        assert error is not None, answer
        assert isinstance(error.__cause__, redis.exceptions.ConnectionError
                          | redis.exceptions.TimeoutError), repr(error.__cause__)
    else:
        assert error is None, repr(error)
        assert answer == (ref.answer if outcome == "same" else RETRIED[op.name])

    after = snapshot(b.raw, name)
    if moment == "before" and not retry:
        assert after == ref.before  # it never ran
    elif op.leases and retry and moment != "before":
        # ran twice by design: the repeat leased other items; the lost ones stay leased
        got = leased_ids(answer)
        lost = leased_ids(ref.answer)
        assert not got & lost
        for item_id, row in after["items"].items():
            if item_id in got:
                want = ref.after["items"][item_id]
                assert want[0] == ("pending",) and row[0] == ("leased",), item_id
                assert int(row[1]) == int(want[1]) + 1 and row[5] == 3  # a 30 s lease
            else:
                assert row == ref.after["items"][item_id], item_id
        extra = {**ref.after["counters"]}
        extra["leased"] = extra.get("leased", 0) + len(got)
        assert after["counters"] == extra
    else:
        assert after == ref.after  # it took effect exactly once
    check_consistent(b.raw, name)
    drop(b.raw, name)


@pytest.mark.parametrize("retry", [True, False], ids=["retry", "no-retry"])
@pytest.mark.parametrize("moment", MOMENTS)
@pytest.mark.parametrize("op", [op.name for op in OPS])
@pytest.mark.parametrize("face", ["sync", "asyncio"])
def test_fault_matrix(bench: Bench, face: str, op: str, moment: Moment, retry: bool) -> None:
    run_cell(bench, face, BY_NAME[op], moment, retry)


# ------------------------------------------------------------------------------ interleaved
#
# The reply is lost, and before the client's retry arrives another client acts on the same item
# (the proxy runs ``during`` while it holds the reply). A call that names its lease (token) is
# recognised when repeated; a call that names only an id, or none, is run again from scratch.

def interleave(b: Bench, name: str, op_script: str, during: Callable[[leaseq.Queue], object],
               call: Callable[[leaseq.Queue], Any]) -> Any:
    """Run ``call`` on a proxied queue with redis-py's default retry; its first reply is lost
    and ``during`` runs on an unproxied queue before the retry."""
    load_scripts(b.raw)
    b.proxy.errors.clear()
    other = leaseq.Queue(name, b.raw, **QUEUE_KW)
    client = redis.Redis(port=b.proxy.port, socket_timeout=SOCKET_TIMEOUT)
    try:
        b.proxy.arm(wire(op_script), "after", during=lambda: during(other))
        return call(leaseq.Queue(name, client, **QUEUE_KW))
    finally:
        b.proxy.disarm()
        client.close()
        assert not b.proxy.errors, b.proxy.errors


@pytest.fixture
def fresh(bench: Bench) -> Iterator[tuple[Bench, str, leaseq.Queue]]:
    name = bench.fresh_name("il")
    yield bench, name, leaseq.Queue(name, bench.raw, **QUEUE_KW)
    drop(bench.raw, name)


def test_complete_with_a_token_is_not_repeated_on_a_readded_id(fresh: Any) -> None:
    b, name, q = fresh
    q.add("old", id="job")
    lease = q.lease(block=False)
    got = interleave(b, name, "complete", lambda o: o.add("new", id="job"),
                     lambda pq: pq.complete(lease))
    assert got is True  # recognised by its token
    assert q.state("job").state is State.PENDING  # the new incarnation is untouched
    assert q.stats().counter("completed") == 1
    check_consistent(b.raw, name)


def test_fail_with_a_token_is_not_repeated_on_a_new_lease(fresh: Any) -> None:
    b, name, q = fresh
    q.add("x", id="job")
    first = q.lease(block=False)
    taken: list[Lease | None] = []
    got = interleave(b, name, "fail", lambda o: taken.append(o.lease(block=False)),
                     lambda pq: pq.fail(first, error="bad", retry_in=0))
    second = taken[0]
    assert got is FailOutcome.REPEATED and second is not None and second.id == "job"
    assert q.extend(second, 30)  # the second holder's lease is intact
    assert q.stats().counter("failed") == 1
    check_consistent(b.raw, name)


def test_complete_by_bare_id_is_not_repeated_on_a_readded_id(fresh: Any) -> None:
    """The repeat of complete("job") completes the incarnation added meanwhile: that item is
    gone without ever being leased."""
    b, name, q = fresh
    q.add("old", id="job")
    q.lease(block=False)
    interleave(b, name, "complete", lambda o: o.add("new", id="job"),
               lambda pq: pq.complete("job"))
    assert q.state("job").state is State.PENDING
    assert q.stats().counter("completed") == 1


def test_remove_is_not_repeated_on_a_readded_id(fresh: Any) -> None:
    """The repeat of remove("job") removes the item added again meanwhile."""
    b, name, q = fresh
    q.add("old", id="job")
    interleave(b, name, "remove", lambda o: o.add("new", id="job"),
               lambda pq: pq.remove("job"))
    assert q.state("job").state is State.PENDING
    assert q.stats().counter("removed") == 1


def test_add_with_an_id_is_not_repeated_after_its_completion(fresh: Any) -> None:
    """add(id="job") is repeated after a worker leased and completed "job": the item is added
    (and executed) a second time."""
    b, name, q = fresh

    def work(o: leaseq.Queue) -> None:
        lease = o.lease(block=False)
        assert lease is not None and o.complete(lease)

    interleave(b, name, "add", work, lambda pq: pq.add("job", id="job"))
    assert q.state("job").state is not State.PENDING
    assert q.stats().counter("added") == 1


def test_add_without_an_id_is_not_repeated_after_its_completion(fresh: Any) -> None:
    """The same with a generated id: the repeat adds a second copy, reported as added."""
    b, name, q = fresh

    def work(o: leaseq.Queue) -> None:
        lease = o.lease(block=False)
        assert lease is not None and o.complete(lease)

    interleave(b, name, "add", work, lambda pq: pq.add("job"))
    assert q.stats().pending == 0
    assert q.stats().counter("added") == 1


def test_requeue_by_bare_id_is_not_repeated_on_a_new_lease(fresh: Any) -> None:
    """The repeat of requeue("job") takes away the lease another worker took meanwhile."""
    b, name, q = fresh
    q.add("x", id="job")
    q.lease(block=False)
    taken: list[Lease | None] = []
    interleave(b, name, "requeue", lambda o: taken.append(o.lease(block=False)),
               lambda pq: pq.requeue("job"))
    second = taken[0]
    assert second is not None and second.id == "job"
    assert q.extend(second, 30)  # the second holder still holds it
    assert q.stats().counter("requeued") == 1


def test_purge_is_not_repeated_on_items_added_after_it(fresh: Any) -> None:
    """The repeat of purge() deletes an item added after the first run emptied the queue."""
    b, name, q = fresh
    q.add("old", id="job")
    interleave(b, name, "purge", lambda o: o.add("late", id="late"), lambda pq: pq.purge())
    assert q.state("late").state is State.PENDING


def test_dead_purge_is_not_repeated_on_later_dead_letters(fresh: Any) -> None:
    """The repeat of dead_purge(["x1"]) does not delete a dead letter that died after the first
    run, even one with the same id (x1 added again and dead again)."""
    b, name, q = fresh
    q.add("x", id="x1")
    for _ in range(2):
        q.fail(q.lease(block=False), error="bad", retry_in=0)  # x1 dead

    def die_again(o: leaseq.Queue) -> None:
        o.add("x again", id="x1")
        for _ in range(2):
            lease = o.lease(block=False)
            assert lease is not None and lease.id == "x1"
            o.fail(lease, error="bad", retry_in=0)

    assert interleave(b, name, "dead_purge", die_again, lambda pq: pq.dead_purge(["x1"])) == 1
    assert q.state("x1").state is State.DEAD and q.state("x1").payload == b'J"x again"'
    assert q.stats().counter("dead_purged") == 1


def test_dead_purge_of_all_counts_each_dead_letter_once(fresh: Any) -> None:
    """dead_purge() of all runs chunk after chunk: a letter that dies while it runs may go with
    a later chunk (as without any fault), but the repeat of the cut chunk is not applied twice:
    what it returns is what the counter says."""
    b, name, q = fresh
    q.add("x", id="x1")
    for _ in range(2):
        q.fail(q.lease(block=False), error="bad", retry_in=0)  # x1 dead
    q.add("y", id="late")

    def die(o: leaseq.Queue) -> None:
        for _ in range(2):
            lease = o.lease(block=False)
            assert lease is not None and lease.id == "late"
            o.fail(lease, error="bad", retry_in=0)

    total = interleave(b, name, "dead_purge", die, lambda pq: pq.dead_purge())
    assert total == q.stats().counter("dead_purged") == 2
    assert q.stats().dead == 0
