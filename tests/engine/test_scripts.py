"""Table tests of the Lua scripts, one script call per row.

Each :class:`Case` is: the seed (the exact contents of every key of one queue), one call of a
script (name and ARGV; KEYS are always ``QueueKeys.all_fixed`` plus the result keys of
``results``), the expected reply, and the expected contents of EVERY key of the queue afterwards.
:func:`dump` reads all keys ``leaseq:{<queue>}:*`` with SCAN and the test compares the whole
dict, so an unexpected key, member or field fails the case.

Time: the scripts' clock is server TIME + the meta field ``clock_offset``; every seed sets it to
:data:`OFFSET`. Expected values that depend on the script's "now" are written ``At(delta)``
(``At(delta, text=True)`` where the reply carries a decimal string): every ``At`` of one case
must resolve to one and the same "now", which must lie between the wall clock (+ OFFSET) read
just before and just after the call. ``Rel(delta)`` is the wall clock (+ OFFSET) when the seed
was written, plus delta: usable in seeds and, meaning the very same number, in expectations.
:data:`PAST` and :data:`FUTURE` are absolute times long gone / far ahead.

Dump values: HASH -> {field: value} with decimal strings as int; ZSET -> {member: score} (int
when whole); STRING -> (value, pttl) matched by :class:`Result`. Non-string keys must not have a
TTL, except ``acked``, which expires one ack window after the last call that wrote to it.

Items are written in tables as three logical hashes: ``items`` (id -> ``inc:prio:seq:att:tok``,
plus ``:holder`` when one is kept), ``data`` (id -> payload) and ``errors`` (id -> last error).
:func:`seed` joins them into the two ``items`` fields per id the scripts keep, the value and the
lease state (``lua/includes/record.lua``), and :func:`dump` splits them again. The meta field
``due`` (``lua/includes/timers.lua``) is not written in most rows: :func:`dump` takes it out of
``meta`` (unless a row names it) and always checks what it promises, that no time in
``delayed`` or ``leased`` is below it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from leaseq import scripts
from leaseq.keys import QueueKeys

BAND = 2**42
OFFSET = 86_400_000  # clock_offset of every seed: the scripts' clock runs one day ahead
PAST = 1_000_000_000  # 1970-01-12: long gone
FUTURE = 4_000_000_000_000  # 2096: far ahead
LEASE = 30_000
SLACK_MS = 5

HASHES = frozenset({"meta", "items"})
ZSETS = frozenset({"pending", "delayed", "leased", "dead", "acked", "wake"})
WAKE = {"w": 0}


# ------------------------------------------------------------------------------ value helpers

@dataclass(frozen=True)
class At:
    """Expected: the script's now + delta (ms); ``text`` when the reply holds it as a string."""

    delta: int = 0
    text: bool = False

    def __repr__(self) -> str:
        return f"<now{self.delta:+d}{' (str)' if self.text else ''}>"


def T(delta: int = 0) -> At:
    """The script's now + delta, as a decimal string in a reply."""
    return At(delta, text=True)


@dataclass(frozen=True)
class Rel:
    """The seed's wall clock (+ OFFSET) + delta, in a seed and in expectations alike."""

    delta: int


@dataclass(frozen=True)
class Result:
    """A kept result: a STRING key holding ``value`` with a TTL of at most ``ttl`` ms."""

    value: str
    ttl: int

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Result):
            return (self.value, self.ttl) == (other.value, other.ttl)
        if not isinstance(other, tuple) or len(other) != 2:
            return NotImplemented
        value, pttl = other
        return bool(value == self.value and self.ttl - 10_000 < pttl <= self.ttl)

    def __hash__(self) -> int:
        return hash((self.value, self.ttl))


def ps(prio: int, seq: int) -> int:
    """Pending score of an item of priority ``prio`` and sequence ``seq``."""
    return (1000 - prio) * BAND + seq


def rec(inc: int, prio: int, seq: int, att: int, tok: int) -> str:
    """An item record ``inc:prio:seq:attempts:token``."""
    return f"{inc}:{prio}:{seq}:{att}:{tok}"


def meta(seq: int | None = None, **counters: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"clock_offset": OFFSET}
    if seq is not None:
        out["seq"] = seq
    out.update(counters)
    return out


def pol(max_att: int = 0, dead_max: int = 0, dead_ttl: int = 0) -> list[int]:
    return [max_att, dead_max, dead_ttl]


def wall_ms() -> int:
    return int(time.time() * 1000) + OFFSET


# ------------------------------------------------------------------------------ seed / dump

def _prefix(keys: QueueKeys) -> str:
    return keys.meta[: -len("meta")]


def _resolve_rel(value: Any, t_seed: int) -> Any:
    if isinstance(value, Rel):
        return t_seed + value.delta
    if isinstance(value, dict):
        return {k: _resolve_rel(v, t_seed) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_resolve_rel(v, t_seed) for v in value)
    return value


ACK_WINDOW_MS = 60_000


_LOGICAL = ("items", "data", "errors")
_VALUE = re.compile(r"(\d+):(-?\d+):(\d+):")
_STATE = re.compile(r"(\d+):(\d+):(\d+):(\d+):")
LS = "\x01"  # prefix of the lease state field of an item


def join_items(items: dict[str, str], data: dict[str, str],
               errors: dict[str, str]) -> dict[str, str]:
    """The stored ``items`` hash of the logical items / data / errors of a table: the value
    ``inc:prio:seq:payload`` and, when the item has a token, holder or error, its lease state
    ``inc:att:tok:hlen:holder error``."""
    strays = (set(data) | set(errors)) - set(items)
    assert not strays, f"payloads or errors without a record cannot be stored: {strays}"
    out = {}
    for item_id, logical in items.items():
        inc, prio, seq, att, tok, *rest = logical.split(":", 5)
        holder, err = rest[0] if rest else "", errors.get(item_id, "")
        out[item_id] = f"{inc}:{prio}:{seq}:{data.get(item_id, '')}"
        if tok != "0" or holder or err:
            out[LS + item_id] = f"{inc}:{att}:{tok}:{len(holder.encode())}:{holder}{err}"
        else:
            assert att == "0", f"{item_id}: attempts without a token cannot be stored"
    return out


def split_items(stored: dict[str, str]) -> dict[str, dict[str, str]]:
    """The logical items / data / errors (each only when not empty) of a stored items hash."""
    out: dict[str, dict[str, str]] = {"items": {}, "data": {}, "errors": {}}
    for item_id, value in stored.items():
        if item_id.startswith(LS):
            assert item_id[1:] in stored, f"a lease state without its item: {item_id!r}"
            continue
        m = _VALUE.match(value)
        assert m, f"bad value for {item_id}: {value!r}"
        inc, prio, seq = m.groups()
        att, tok, holder, err = "0", "0", "", ""
        if LS + item_id in stored:
            state = stored[LS + item_id]
            s = _STATE.match(state)
            assert s and s.group(1) == inc, f"bad lease state for {item_id}: {state!r}"
            raw = state.encode()[s.end():]
            hl = int(s.group(4))
            att, tok, holder, err = s.group(2), s.group(3), raw[:hl].decode(), raw[hl:].decode()
            assert tok != "0" or holder or err, f"an empty lease state for {item_id}"
        out["items"][item_id] = f"{inc}:{prio}:{seq}:{att}:{tok}" + (f":{holder}" if holder else "")
        if err:
            out["errors"][item_id] = err
        if value[m.end():]:
            out["data"][item_id] = value[m.end():]
    return {k: v for k, v in out.items() if v}


def seed(client: Any, keys: QueueKeys, content: dict[str, Any]) -> int:
    """Write ``content`` ({key suffix: value}) as the queue's keys; returns the seed time."""
    t_seed = wall_ms()
    prefix = _prefix(keys)
    content = dict(content)
    if any(part in content for part in _LOGICAL):
        parts = [content.pop(part, None) or {} for part in _LOGICAL]
        content["items"] = join_items(*parts)
    for suffix, raw in content.items():
        key, value = prefix + suffix, _resolve_rel(raw, t_seed)
        if suffix in HASHES:
            assert value, f"empty hash {suffix} cannot be seeded"
            client.hset(key, mapping=value)
        elif suffix in ZSETS:
            assert value, f"empty zset {suffix} cannot be seeded"
            client.zadd(key, value)
            if suffix == "acked":
                client.pexpire(key, ACK_WINDOW_MS)
        elif suffix.startswith("result:") and isinstance(value, Result):
            client.set(key, value.value, px=value.ttl)
        else:
            raise AssertionError(f"cannot seed {suffix}: {value!r}")
    return t_seed


_INT = re.compile(r"-?\d+")


def _num(text: str) -> int | str:
    return int(text) if _INT.fullmatch(text) else text


def _score(score: float) -> int | float:
    return int(score) if score == int(score) else score


def dump(client: Any, keys: QueueKeys, keep_due: bool = False) -> dict[str, Any]:
    """Every key of the queue, as {suffix: python value} (see the module docstring); meta due is
    checked, and left in meta only when ``keep_due``."""
    prefix = _prefix(keys)
    out: dict[str, Any] = {}
    for key in client.scan_iter(match=prefix + "*", count=1000):
        suffix = key[len(prefix) :]
        kind = client.type(key)
        pttl = client.pttl(key)
        if kind == "string":
            out[suffix] = (client.get(key), pttl)
            continue
        if suffix == "acked":  # expires a window after the last finishing call
            assert 0 < pttl <= ACK_WINDOW_MS, f"{key} should expire within the ack window"
        else:
            assert pttl == -1, f"{key} has a TTL ({pttl} ms)"
        if kind == "hash":
            out[suffix] = {f: _num(v) for f, v in client.hgetall(key).items()}
        elif kind == "zset":
            out[suffix] = {m: _score(s) for m, s in client.zrange(key, 0, -1, withscores=True)}
        else:
            raise AssertionError(f"unexpected {kind} key {key}")
    if "items" in out:
        out.update(split_items(out.pop("items")))
    due = out.get("meta", {}).get("due")
    if not keep_due:
        out.get("meta", {}).pop("due", None)
    if due is not None:
        times = [*out.get("delayed", {}).values(), *out.get("leased", {}).values()]
        assert all(due <= t for t in times), f"meta due {due} is above a time in {times}"
    return out


def check(expected: Any, actual: Any, lo: int, hi: int, t_seed: int) -> None:
    """Compare, resolving Rel to the seed time and every At to one common "now" in [lo, hi]."""
    nows: dict[int, list[At]] = {}

    def walk(e: Any, a: Any) -> Any:
        if isinstance(e, Rel):
            return t_seed + e.delta
        if isinstance(e, At):
            ok_type = isinstance(a, str) if e.text else type(a) is int
            if ok_type and _INT.fullmatch(str(a)):
                nows.setdefault(int(a) - e.delta, []).append(e)
                return a
            return e
        if isinstance(e, dict):
            return {k: walk(v, a.get(k) if isinstance(a, dict) else None) for k, v in e.items()}
        if isinstance(e, list | tuple):
            seq = a if isinstance(a, list | tuple) else []
            return type(e)(walk(v, seq[i] if i < len(seq) else None) for i, v in enumerate(e))
        return e

    resolved = walk(expected, actual)
    assert resolved == actual
    assert len(nows) <= 1, f"the script's 'now' differs between values: {nows}"
    for now in nows:
        assert lo - SLACK_MS <= now <= hi + SLACK_MS, (
            f"now {now} outside the call's window [{lo}, {hi}] (clock_offset not applied?)"
        )


# ------------------------------------------------------------------------------ the table

@dataclass(frozen=True)
class Case:
    id: str
    seed: dict[str, Any]
    script: str
    args: list[Any]
    reply: Any
    after: dict[str, Any] | None  # None: every key exactly as seeded
    results: tuple[str, ...] = ()  # ids whose result keys follow the fixed keys
    shape: Callable[[Any], Any] | None = None  # applied to the reply before comparing
    xfail: str | None = None
    keep_due: bool = False  # compare meta due too (always so when the expected meta names it)


CASES: list[Case] = []


def case(*args: Any, **kw: Any) -> None:
    CASES.append(Case(*args, **kw))


def lease_args(n: int, lease_ms: int = LEASE, **policy: int) -> list[int]:
    return [*pol(**policy), n, lease_ms]


# ---------------------------------------------------------------------------- add

case(
    "add/new ready item into an empty queue",
    {"meta": meta()},
    "add", [1, "a", "A", 0, 0],
    [0],
    {"meta": meta(seq=1, added=1), "pending": {"a": ps(0, 1)}, "items": {"a": rec(1, 0, 1, 0, 0)},
     "data": {"a": "A"}, "wake": WAKE},
)
case(
    "add/batch: priority bands and FIFO seq in the scores",
    {"meta": meta(seq=10)},
    "add", [5, "a", "A", 0, 0, "b", "B", 5, 0, "c", "C", -5, 0, "d", "D", 1000, 0,
            "e", "E", -1000, 0],
    [0, 0, 0, 0, 0],
    {"meta": meta(seq=15, added=5),
     "pending": {"a": ps(0, 11), "b": ps(5, 12), "c": ps(-5, 13), "d": 14,
                 "e": 2000 * BAND + 15},
     "items": {"a": rec(11, 0, 11, 0, 0), "b": rec(12, 5, 12, 0, 0), "c": rec(13, -5, 13, 0, 0),
               "d": rec(14, 1000, 14, 0, 0), "e": rec(15, -1000, 15, 0, 0)},
     "data": {"a": "A", "b": "B", "c": "C", "d": "D", "e": "E"}, "wake": WAKE},
)
_EACH_STATE: dict[str, Any] = {
    "meta": meta(seq=9, added=5),
    "pending": {"a": ps(0, 1)},
    "delayed": {"b": FUTURE},
    "leased": {"c": FUTURE},
    "dead": {"d": PAST},
    "items": {"a": rec(1, 0, 1, 0, 0), "b": rec(2, 0, 2, 0, 0), "c": rec(3, 0, 3, 1, 8),
              "d": rec(4, 0, 4, 2, 9), "e": rec(5, 0, 5, 0, 0)},
    "data": {"a": "A", "b": "B", "c": "C", "d": "D", "e": "E"},
    "errors": {"d": "boom"},
    "wake": WAKE,
}
case(
    "add/existing id in each state is left unchanged; a new one is added",
    _EACH_STATE,
    "add", [6, "a", "new", 7, 0, "b", "new", 7, 0, "c", "new", 7, 5000, "d", "new", 7, 0,
            "e", "new", 7, 0, "f", "F", 0, 0],
    [1, 2, 3, 4, 5, 0],
    {**_EACH_STATE,
     "meta": meta(seq=15, added=6),
     "pending": {"a": ps(0, 1), "f": ps(0, 15)},
     "items": {**_EACH_STATE["items"], "f": rec(15, 0, 15, 0, 0)},
     "data": {**_EACH_STATE["data"], "f": "F"}},
)
case(
    "add/only existing ids: no wake key, seq still advances",
    {"meta": meta(seq=2, added=1), "delayed": {"b": FUTURE},
     "items": {"b": rec(2, 0, 2, 0, 0)}, "data": {"b": "B"}},
    "add", [1, "b", "B2", 0, 0],
    [2],
    {"meta": meta(seq=3, added=1), "delayed": {"b": FUTURE},
     "items": {"b": rec(2, 0, 2, 0, 0)}, "data": {"b": "B"}},
)
case(
    "add/delayed item goes to delayed at now+delay and wakes (new earliest)",
    {"meta": meta(seq=3)},
    "add", [1, "a", "A", 0, 5000],
    [0],
    {"meta": meta(seq=4, added=1), "delayed": {"a": At(5000)},
     "items": {"a": rec(4, 0, 4, 0, 0)}, "data": {"a": "A"}, "wake": WAKE},
)
case(
    "add/delayed item later than the earliest one: no wake",
    {"meta": meta(seq=1, added=1), "delayed": {"x": Rel(1000)},
     "items": {"x": rec(1, 0, 1, 0, 0)}, "data": {"x": "X"}},
    "add", [1, "a", "A", 0, 60_000],
    [0],
    {"meta": meta(seq=2, added=2), "delayed": {"x": Rel(1000), "a": At(60_000)},
     "items": {"x": rec(1, 0, 1, 0, 0), "a": rec(2, 0, 2, 0, 0)},
     "data": {"x": "X", "a": "A"}},
)
case(
    "add/ready and delayed in one call, priorities kept in the records",
    {"meta": meta()},
    "add", [2, "a", "A", 3, 0, "b", "B", -2, 1000],
    [0, 0],
    {"meta": meta(seq=2, added=2), "pending": {"a": ps(3, 1)}, "delayed": {"b": At(1000)},
     "items": {"a": rec(1, 3, 1, 0, 0), "b": rec(2, -2, 2, 0, 0)},
     "data": {"a": "A", "b": "B"}, "wake": WAKE},
)
case(
    "add/same id twice in one call: the first wins",
    {"meta": meta()},
    "add", [2, "a", "A1", 0, 0, "a", "A2", 9, 0],
    [0, 1],
    {"meta": meta(seq=2, added=1), "pending": {"a": ps(0, 1)},
     "items": {"a": rec(1, 0, 1, 0, 0)}, "data": {"a": "A1"}, "wake": WAKE},
)

# ---------------------------------------------------------------------------- lease

case(
    "lease/empty queue: nothing, next_due -1",
    {"meta": meta(seq=4)},
    "lease", lease_args(1),
    [T(), "-1", T(LEASE)],
    None,
)
_WAITING: dict[str, Any] = {
    "meta": meta(seq=2), "delayed": {"a": FUTURE}, "leased": {"b": FUTURE + 5},
    "items": {"a": rec(1, 0, 1, 0, 0), "b": rec(2, 0, 2, 1, 2)}, "data": {"a": "A", "b": "B"},
}
case(
    "lease/nothing ready: next_due = earliest delayed due",
    _WAITING,
    "lease", lease_args(3),
    [T(), str(FUTURE), T(LEASE)],
    None,
)
case(
    "lease/nothing ready: next_due = earliest lease deadline",
    {**_WAITING, "leased": {"b": FUTURE - 5}},
    "lease", lease_args(3),
    [T(), str(FUTURE - 5), T(LEASE)],
    None,
)
_ABC: dict[str, Any] = {
    "meta": meta(seq=3, added=3),
    "pending": {"a": ps(0, 1), "b": ps(0, 2), "c": ps(0, 3)},
    "items": {"a": rec(1, 0, 1, 0, 0), "b": rec(2, 0, 2, 0, 0), "c": rec(3, 0, 3, 0, 0)},
    "data": {"a": "A", "b": "B", "c": "C"},
    "wake": WAKE,
}
case(
    "lease/FIFO within a priority; fresh tokens from seq; wake kept while work remains",
    _ABC,
    "lease", lease_args(2),
    [T(), 0, T(LEASE), "a", "A", 1, "1", "4", "b", "B", 1, "2", "5"],
    {**_ABC, "meta": meta(seq=5, added=3, leased=2), "pending": {"c": ps(0, 3)},
     "leased": {"a": At(LEASE), "b": At(LEASE)},
     "items": {"a": rec(1, 0, 1, 1, 4), "b": rec(2, 0, 2, 1, 5), "c": rec(3, 0, 3, 0, 0)}},
)
case(
    "lease/higher priority first; taking the last ready item removes the wake key",
    {**_ABC, "pending": {"a": ps(0, 1), "b": ps(10, 2), "c": ps(-3, 3)},
     "items": {"a": rec(1, 0, 1, 0, 0), "b": rec(2, 10, 2, 0, 0), "c": rec(3, -3, 3, 0, 0)}},
    "lease", lease_args(3, 1000),
    [T(), 0, T(1000), "b", "B", 1, "2", "4", "a", "A", 1, "1", "5", "c", "C", 1, "3", "6"],
    {"meta": meta(seq=6, added=3, leased=3),
     "leased": {"a": At(1000), "b": At(1000), "c": At(1000)},
     "items": {"a": rec(1, 0, 1, 1, 5), "b": rec(2, 10, 2, 1, 4), "c": rec(3, -3, 3, 1, 6)},
     "data": {"a": "A", "b": "B", "c": "C"}},
)
FIXED = 2_000_000_000_000  # a clock_fixed time (2033): the scripts read it instead of TIME
case(
    "lease/clock_fixed stops the queue's clock: now and deadlines come from it, not TIME",
    {"meta": {**meta(seq=1), "clock_fixed": FIXED}, "pending": {"a": ps(0, 1)},
     "delayed": {"d": FIXED}, "items": {"a": rec(1, 0, 1, 0, 0), "d": rec(2, 0, 2, 0, 0)},
     "data": {"a": "A", "d": "D"}, "wake": WAKE},
    "lease", lease_args(1),
    [str(FIXED), 0, str(FIXED + LEASE), "a", "A", 1, "1", "2"],
    {"meta": {**meta(seq=2, leased=1), "clock_fixed": FIXED}, "pending": {"d": ps(0, 2)},
     "leased": {"a": FIXED + LEASE},
     "items": {"a": rec(1, 0, 1, 1, 2), "d": rec(2, 0, 2, 0, 0)}, "data": {"a": "A", "d": "D"},
     "wake": WAKE},
)
case(
    "lease/a holder named by the lease is kept in each record; a lease naming none clears it",
    {"meta": meta(seq=5), "pending": {"a": ps(0, 1), "b": ps(0, 2)},
     "items": {"a": rec(1, 0, 1, 0, 0), "b": rec(2, 0, 2, 1, 4) + ":old:1"},
     "data": {"a": "A", "b": "B"}, "wake": WAKE},
    "lease", [*lease_args(2), "host-7:99"],
    [T(), 0, T(LEASE), "a", "A", 1, "1", "6", "b", "B", 2, "2", "7"],
    {"meta": meta(seq=7, leased=2), "leased": {"a": At(LEASE), "b": At(LEASE)},
     "items": {"a": rec(1, 0, 1, 1, 6) + ":host-7:99", "b": rec(2, 0, 2, 2, 7) + ":host-7:99"},
     "data": {"a": "A", "b": "B"}},
)
case(
    "lease/without a holder a stale one is dropped from the record",
    {"meta": meta(seq=5), "pending": {"b": ps(0, 2)}, "items": {"b": rec(2, 0, 2, 1, 4) + ":old:1"},
     "data": {"b": "B"}, "wake": WAKE},
    "lease", lease_args(1),
    [T(), 0, T(LEASE), "b", "B", 2, "2", "6"],
    {"meta": meta(seq=6, leased=1), "leased": {"b": At(LEASE)},
     "items": {"b": rec(2, 0, 2, 2, 6)}, "data": {"b": "B"}},
)
case(
    "lease/fewer ready than n: takes what there is",
    {"meta": meta(seq=1), "pending": {"a": ps(0, 1)}, "items": {"a": rec(1, 0, 1, 0, 0)},
     "data": {"a": "A"}, "wake": WAKE},
    "lease", lease_args(5),
    [T(), 0, T(LEASE), "a", "A", 1, "1", "2"],
    {"meta": meta(seq=2, leased=1), "leased": {"a": At(LEASE)},
     "items": {"a": rec(1, 0, 1, 1, 2)}, "data": {"a": "A"}},
)
case(
    "lease/attempts +1 on top of earlier ones; last error kept",
    {"meta": meta(seq=7), "pending": {"a": ps(2, 1)}, "items": {"a": rec(1, 2, 1, 2, 7)},
     "data": {"a": "A"}, "errors": {"a": "boom"}, "wake": WAKE},
    "lease", lease_args(1),
    [T(), 0, T(LEASE), "a", "A", 3, "1", "8"],
    {"meta": meta(seq=8, leased=1), "leased": {"a": At(LEASE)},
     "items": {"a": rec(1, 2, 1, 3, 8)}, "data": {"a": "A"}, "errors": {"a": "boom"}},
)
case(
    "lease/a due delayed item is promoted at its place and leased first",
    {"meta": meta(seq=3), "delayed": {"a": PAST, "c": FUTURE}, "pending": {"b": ps(0, 2)},
     "items": {"a": rec(1, 0, 1, 0, 0), "b": rec(2, 0, 2, 0, 0), "c": rec(3, 0, 3, 0, 0)},
     "data": {"a": "A", "b": "B", "c": "C"}, "wake": WAKE},
    "lease", lease_args(1),
    [T(), 0, T(LEASE), "a", "A", 1, "1", "4"],
    {"meta": meta(seq=4, leased=1), "delayed": {"c": FUTURE}, "pending": {"b": ps(0, 2)},
     "leased": {"a": At(LEASE)},
     "items": {"a": rec(1, 0, 1, 1, 4), "b": rec(2, 0, 2, 0, 0), "c": rec(3, 0, 3, 0, 0)},
     "data": {"a": "A", "b": "B", "c": "C"}, "wake": WAKE},
)
case(
    "lease/n=0 only maintains: promotes, reclaims, sets the wake key",
    {"meta": meta(seq=5), "delayed": {"a": PAST}, "leased": {"b": PAST},
     "items": {"a": rec(1, 0, 1, 0, 0), "b": rec(2, 0, 2, 1, 5)},
     "data": {"a": "A", "b": "B"}},
    "lease", lease_args(0, 1000),
    [T(), "-1", T(1000)],
    {"meta": meta(seq=5, expired=1), "pending": {"a": ps(0, 1), "b": ps(0, 2)},
     "items": {"a": rec(1, 0, 1, 0, 0), "b": rec(2, 0, 2, 1, 5)},
     "data": {"a": "A", "b": "B"}, "errors": {"b": "lease expired (attempt 1)"},
     "wake": WAKE},
)
case(
    "lease/n=0 with nothing ready removes a stale wake key",
    {"meta": meta(seq=1), "delayed": {"a": FUTURE}, "items": {"a": rec(1, 0, 1, 0, 0)},
     "data": {"a": "A"}, "wake": WAKE},
    "lease", lease_args(0, 1000),
    [T(), str(FUTURE), T(1000)],
    {"meta": meta(seq=1), "delayed": {"a": FUTURE}, "items": {"a": rec(1, 0, 1, 0, 0)},
     "data": {"a": "A"}},
)
case(
    "lease/an expired lease is reclaimed at its original score (ahead of later items)",
    {"meta": meta(seq=6), "leased": {"a": PAST}, "pending": {"b": ps(0, 2)},
     "items": {"a": rec(1, 0, 1, 1, 5), "b": rec(2, 0, 2, 0, 0)},
     "data": {"a": "A", "b": "B"}, "wake": WAKE},
    "lease", lease_args(1, max_att=3),
    [T(), 0, T(LEASE), "a", "A", 2, "1", "7"],
    {"meta": meta(seq=7, expired=1, leased=1), "leased": {"a": At(LEASE)},
     "pending": {"b": ps(0, 2)},
     "items": {"a": rec(1, 0, 1, 2, 7), "b": rec(2, 0, 2, 0, 0)},
     "data": {"a": "A", "b": "B"}, "errors": {"a": "lease expired (attempt 1)"}, "wake": WAKE},
)
case(
    "lease/a reclaim at max_attempts dead-letters with 'lease expired (attempt N)'",
    {"meta": meta(seq=5), "leased": {"a": PAST}, "items": {"a": rec(1, 0, 1, 3, 5)},
     "data": {"a": "A"}},
    "lease", lease_args(1, max_att=3),
    [T(), "-1", T(LEASE)],
    {"meta": meta(seq=5, expired=1, dead=1), "dead": {"a": At(0)},
     "items": {"a": rec(1, 0, 1, 3, 5)}, "data": {"a": "A"},
     "errors": {"a": "lease expired (attempt 3)"}},
)
case(
    "lease/a reclaim dead-letter applies dead_max, dropping the oldest and its data",
    {"meta": meta(seq=9, dead=2), "leased": {"a": PAST}, "dead": {"x": PAST + 1, "y": PAST + 2},
     "items": {"a": rec(1, 0, 1, 1, 9), "x": rec(2, 0, 2, 1, 7), "y": rec(3, 0, 3, 1, 8)},
     "data": {"a": "A", "x": "X", "y": "Y"}, "errors": {"x": "ex", "y": "ey"}},
    "lease", lease_args(1, max_att=1, dead_max=2),
    [T(), "-1", T(LEASE)],
    {"meta": meta(seq=9, dead=3, expired=1), "dead": {"y": PAST + 2, "a": At(0)},
     "items": {"a": rec(1, 0, 1, 1, 9), "y": rec(3, 0, 3, 1, 8)},
     "data": {"a": "A", "y": "Y"},
     "errors": {"a": "lease expired (attempt 1)", "y": "ey"}},
)


def _bounded_reclaim() -> None:
    ids = [f"e{i:02d}" for i in range(12)]
    items = {x: rec(i + 1, 0, i + 1, 1, 20 + i) for i, x in enumerate(ids)}
    data = {x: x.upper() for x in ids}
    after_items = dict(items, e00=rec(1, 0, 1, 2, 41))
    case(
        "lease/reclaim is bounded to n+2 expired leases per call",
        {"meta": meta(seq=40), "leased": {x: PAST + i for i, x in enumerate(ids)},
         "items": items, "data": data},
        "lease", lease_args(1),
        [T(), 0, T(LEASE), "e00", "E00", 2, "1", "41"],
        {"meta": meta(seq=41, expired=3, leased=1, due=PAST + 2),
         "leased": {"e00": At(LEASE), **{x: PAST + i for i, x in enumerate(ids) if i >= 3}},
         "pending": {x: ps(0, i + 1) for i, x in enumerate(ids) if 1 <= i <= 2},
         "items": after_items, "data": data,
         "errors": {x: "lease expired (attempt 1)" for x in ids[:3]}, "wake": WAKE},
    )
    fresh = {x: rec(i + 1, 0, i + 1, 0, 0) for i, x in enumerate(ids)}
    case(
        "lease/promotion is bounded to n+2 due items per call",
        {"meta": meta(seq=12), "delayed": {x: PAST + i for i, x in enumerate(ids)},
         "items": fresh, "data": data},
        "lease", lease_args(1),
        [T(), 0, T(LEASE), "e00", "E00", 1, "1", "13"],
        {"meta": meta(seq=13, leased=1), "leased": {"e00": At(LEASE)},
         "delayed": {x: PAST + i for i, x in enumerate(ids) if i >= 3},
         "pending": {x: ps(0, i + 1) for i, x in enumerate(ids) if 1 <= i <= 2},
         "items": dict(fresh, e00=rec(1, 0, 1, 1, 13)), "data": data, "wake": WAKE},
    )


_bounded_reclaim()

# The meta field due: a lower bound of every time in delayed and leased (lua/includes/timers.lua)
_TIMED: dict[str, Any] = {
    "leased": {"x": Rel(20_000)}, "pending": {"a": ps(0, 1)},
    "items": {"a": rec(1, 0, 1, 0, 0), "x": rec(2, 0, 2, 1, 3)}, "data": {"a": "A", "x": "X"},
    "wake": WAKE,
}
_TIMED_AFTER: dict[str, Any] = {
    "leased": {"x": Rel(20_000), "a": At(LEASE)},
    "items": {"a": rec(1, 0, 1, 1, 4), "x": rec(2, 0, 2, 1, 3)}, "data": {"a": "A", "x": "X"},
}
case(
    "lease/due still ahead: no search, due stays (it is not raised to the earliest time)",
    {**_TIMED, "meta": meta(seq=3, due=Rel(10_000))},
    "lease", lease_args(1),
    [T(), 0, T(LEASE), "a", "A", 1, "1", "4"],
    {**_TIMED_AFTER, "meta": meta(seq=4, leased=1, due=Rel(10_000))},
)
case(
    "lease/due reached: search, then due = the earliest time left",
    {**_TIMED, "meta": meta(seq=3, due=Rel(-1))},
    "lease", lease_args(1),
    [T(), 0, T(LEASE), "a", "A", 1, "1", "4"],
    {**_TIMED_AFTER, "meta": meta(seq=4, leased=1, due=Rel(20_000))},
)
case(
    "lease/due unknown (absent): search, then due = the earliest time left",
    {**_TIMED, "meta": meta(seq=3)},
    "lease", lease_args(1),
    [T(), 0, T(LEASE), "a", "A", 1, "1", "4"],
    {**_TIMED_AFTER, "meta": meta(seq=4, leased=1, due=Rel(20_000))},
)
case(
    "lease/nothing timed before: due = the new lease deadline",
    {"meta": meta(seq=1), "pending": {"a": ps(0, 1)}, "items": {"a": rec(1, 0, 1, 0, 0)},
     "data": {"a": "A"}, "wake": WAKE},
    "lease", lease_args(1, 5_000),
    [T(), 0, T(5_000), "a", "A", 1, "1", "2"],
    {"meta": meta(seq=2, leased=1, due=At(5_000)), "leased": {"a": At(5_000)},
     "items": {"a": rec(1, 0, 1, 1, 2)}, "data": {"a": "A"}},
)
case(
    "lease/a lease shorter than due lowers it",
    {**_TIMED, "meta": meta(seq=3, due=Rel(10_000))},
    "lease", lease_args(1, 1_000),
    [T(), 0, T(1_000), "a", "A", 1, "1", "4"],
    {**_TIMED_AFTER, "leased": {"x": Rel(20_000), "a": At(1_000)},
     "meta": meta(seq=4, leased=1, due=At(1_000))},
)
case(
    "lease/the last timer gone: due is dropped (unknown)",
    {"meta": meta(seq=3, due=PAST), "delayed": {"d": PAST}, "items": {"d": rec(1, 0, 1, 0, 0)},
     "data": {"d": "D"}},
    "lease", lease_args(0),
    [T(), "-1", T(LEASE)],
    {"meta": meta(seq=3), "pending": {"d": ps(0, 1)}, "items": {"d": rec(1, 0, 1, 0, 0)},
     "data": {"d": "D"}, "wake": WAKE},
    keep_due=True,
)
case(
    "add/a delayed item below due lowers it",
    {**_TIMED, "meta": meta(seq=3, due=Rel(10_000))},
    "add", [1, "d", "D", 0, 1_000],
    [0],
    {**_TIMED, "meta": meta(seq=4, added=1, due=At(1_000)), "delayed": {"d": At(1_000)},
     "items": {**_TIMED["items"], "d": rec(4, 0, 4, 0, 0)},
     "data": {**_TIMED["data"], "d": "D"}},
)
case(
    "add/a delayed item while due is unknown leaves it unknown",
    {**_TIMED, "meta": meta(seq=3)},
    "add", [1, "d", "D", 0, 1_000],
    [0],
    {**_TIMED, "meta": meta(seq=4, added=1), "delayed": {"d": At(1_000)},
     "items": {**_TIMED["items"], "d": rec(4, 0, 4, 0, 0)},
     "data": {**_TIMED["data"], "d": "D"}},
    keep_due=True,
)
case(
    "extend/a deadline below due lowers it",
    {"meta": meta(seq=5, due=Rel(60_000)), "leased": {"a": Rel(60_000)},
     "items": {"a": rec(1, 0, 1, 1, 5)}, "data": {"a": "A"}},
    "extend", [1_000, 1, "a", 1, 5],
    [T(1_000)],
    {"meta": meta(seq=5, due=At(1_000)), "leased": {"a": At(1_000)},
     "items": {"a": rec(1, 0, 1, 1, 5)}, "data": {"a": "A"}},
)

# ---------------------------------------------------------------------------- complete


def complete_args(*items: tuple[str, int, int, str, int], next_n: int = 0,
                  lease_ms: int = LEASE, **policy: int) -> list[Any]:
    args: list[Any] = [*pol(**policy), next_n, lease_ms, len(items)]
    for item in items:
        args += item
    return args


_LEASED_A: dict[str, Any] = {
    "meta": meta(seq=5, added=2, leased=2),
    "leased": {"a": FUTURE},
    "pending": {"b": ps(0, 2)},
    "items": {"a": rec(1, 0, 1, 2, 5), "b": rec(2, 0, 2, 0, 0)},
    "data": {"a": "A", "b": "B"},
    "errors": {"a": "boom"},
    "wake": WAKE,
}
_LEASED_A_NO_WAKE = {k: v for k, v in _LEASED_A.items() if k != "wake"}
_ONLY_B: dict[str, Any] = {
    "pending": {"b": ps(0, 2)}, "items": {"b": rec(2, 0, 2, 0, 0)}, "data": {"b": "B"},
    "wake": WAKE,
}
case(
    "complete/by matching inc: the item leaves every key; the token is acked",
    _LEASED_A,
    "complete", complete_args(("a", 1, 5, "", 0)),
    [1],
    {"meta": meta(seq=5, added=2, leased=2, completed=1), **_ONLY_B, "acked": {"c5": At(0)}},
)
case(
    "complete/by inc=0 (any incarnation) and no token: nothing acked; last item -> no wake",
    {"meta": meta(seq=1), "pending": {"a": ps(0, 1)}, "items": {"a": rec(1, 0, 1, 0, 0)},
     "data": {"a": "A"}, "wake": WAKE},
    "complete", complete_args(("a", 0, 0, "", 0)),
    [1],
    {"meta": meta(seq=1, completed=1)},
)
case(
    "complete/wrong inc -> 0, nothing changes",
    _LEASED_A,
    "complete", complete_args(("a", 3, 5, "", 0)),
    [0],
    None,
)
case(
    "complete/unknown id without token -> 0",
    {"meta": meta(seq=3)},
    "complete", complete_args(("a", 0, 0, "R", 60_000)),
    [0],
    None,
    results=("a",),
)
case(
    "complete/repeated by the same token -> 2 (from the acked set)",
    {"meta": meta(seq=5, completed=1), "acked": {"c5": Rel(-1000)}},
    "complete", complete_args(("a", 1, 5, "", 0)),
    [2],
    None,
)
case(
    "complete/an expired lease of the same incarnation still completes (first wins)",
    {**_LEASED_A, "items": {"a": rec(1, 0, 1, 3, 9), "b": rec(2, 0, 2, 0, 0)},
     "meta": meta(seq=9)},
    "complete", complete_args(("a", 1, 5, "", 0)),
    [1],
    {"meta": meta(seq=9, completed=1), **_ONLY_B, "acked": {"c5": At(0)}},
)
case(
    "complete/result kept under result:<id> with PX ttl",
    _LEASED_A,
    "complete", complete_args(("a", 1, 5, "R", 60_000)),
    [1],
    {"meta": meta(seq=5, added=2, leased=2, completed=1), **_ONLY_B, "acked": {"c5": At(0)},
     "result:a": Result("R", 60_000)},
    results=("a",),
)
case(
    "complete/result keys go with the items that keep one, in order",
    {"meta": meta(seq=5), "leased": {"a": FUTURE, "b": FUTURE},
     "items": {"a": rec(1, 0, 1, 1, 4), "b": rec(2, 0, 2, 1, 5)},
     "data": {"a": "A", "b": "B"}},
    "complete", complete_args(("a", 1, 4, "", 0), ("b", 2, 5, "RB", 5000),
                              ("c", 3, 6, "RC", 5000)),
    [1, 1, 0],
    {"meta": meta(seq=5, completed=2), "acked": {"c4": At(0), "c5": At(0)},
     "result:b": Result("RB", 5000)},
    results=("b", "c"),
)
case(
    "complete/by id in pending, delayed and dead; errors dropped too",
    {"meta": meta(seq=6), "pending": {"a": ps(0, 1)}, "delayed": {"b": FUTURE},
     "dead": {"c": PAST}, "items": {"a": rec(1, 0, 1, 0, 0), "b": rec(2, 0, 2, 1, 5),
                                    "c": rec(3, 0, 3, 4, 6)},
     "data": {"a": "A", "b": "B", "c": "C"}, "errors": {"b": "eb", "c": "ec"}, "wake": WAKE},
    "complete", complete_args(("a", 0, 0, "", 0), ("b", 0, 0, "", 0), ("c", 3, 0, "", 0)),
    [1, 1, 1],
    {"meta": meta(seq=6, completed=3)},
)
case(
    "complete/a token reaching a multiple of 16 trims acked tokens older than the 60 s window",
    {**_LEASED_A, "meta": meta(seq=16, added=2, leased=2),
     "items": {"a": rec(1, 0, 1, 2, 16), "b": rec(2, 0, 2, 0, 0)},
     "acked": {"c1": PAST, "c2": Rel(-1000)}},
    "complete", complete_args(("a", 1, 16, "", 0)),
    [1],
    {"meta": meta(seq=16, added=2, leased=2, completed=1), **_ONLY_B,
     "acked": {"c2": Rel(-1000), "c16": At(0)}},
)
case(
    "complete/other tokens leave old acked tokens to a later trim (they no longer count)",
    {**_LEASED_A, "acked": {"c1": PAST, "c2": Rel(-1000)}},
    "complete", complete_args(("a", 1, 5, "", 0)),
    [1],
    {"meta": meta(seq=5, added=2, leased=2, completed=1), **_ONLY_B,
     "acked": {"c1": PAST, "c2": Rel(-1000), "c5": At(0)}},
)
case(
    "complete/next_n leases the next items in the same reply",
    {**_LEASED_A, "pending": {"b": ps(0, 2), "c": ps(0, 3)},
     "items": {"a": rec(1, 0, 1, 2, 5), "b": rec(2, 0, 2, 0, 0), "c": rec(3, 0, 3, 0, 0)},
     "data": {"a": "A", "b": "B", "c": "C"}},
    "complete", complete_args(("a", 1, 5, "", 0), next_n=1),
    [1, T(), 0, T(LEASE), "b", "B", 1, "2", "6"],
    {"meta": meta(seq=6, added=2, leased=3, completed=1), "pending": {"c": ps(0, 3)},
     "leased": {"b": At(LEASE)},
     "items": {"b": rec(2, 0, 2, 1, 6), "c": rec(3, 0, 3, 0, 0)},
     "data": {"b": "B", "c": "C"}, "acked": {"c5": At(0)}, "wake": WAKE},
)
case(
    "complete/next_n: the holder after the items names the next leases",
    {**_LEASED_A, "pending": {"b": ps(0, 2)},
     "items": {"a": rec(1, 0, 1, 2, 5), "b": rec(2, 0, 2, 0, 0)},
     "data": {"a": "A", "b": "B"}},
    "complete", [*complete_args(("a", 1, 5, "", 0), next_n=1), "w-2:7"],
    [1, T(), 0, T(LEASE), "b", "B", 1, "2", "6"],
    {"meta": meta(seq=6, added=2, leased=3, completed=1), "leased": {"b": At(LEASE)},
     "items": {"b": rec(2, 0, 2, 1, 6) + ":w-2:7"}, "data": {"b": "B"},
     "acked": {"c5": At(0)}, "wake": WAKE},  # a chained take of all it asked leaves wake be
)
case(
    "complete/next_n: a chained take that got all it asked leaves a missing wake key missing",
    {**_LEASED_A_NO_WAKE, "pending": {"b": ps(0, 2), "c": ps(0, 3)},
     "items": {"a": rec(1, 0, 1, 2, 5), "b": rec(2, 0, 2, 0, 0), "c": rec(3, 0, 3, 0, 0)},
     "data": {"a": "A", "b": "B", "c": "C"}},
    "complete", complete_args(("a", 1, 5, "", 0), next_n=1),
    [1, T(), 0, T(LEASE), "b", "B", 1, "2", "6"],
    {"meta": meta(seq=6, added=2, leased=3, completed=1), "pending": {"c": ps(0, 3)},
     "leased": {"b": At(LEASE)},
     "items": {"b": rec(2, 0, 2, 1, 6), "c": rec(3, 0, 3, 0, 0)},
     "data": {"b": "B", "c": "C"}, "acked": {"c5": At(0)}},
)
case(
    "complete/next_n: a chained take that reclaimed an expired lease sets the wake key",
    {**_LEASED_A_NO_WAKE, "leased": {"a": FUTURE, "x": PAST}, "pending": {"b": ps(0, 2)},
     "items": {"a": rec(1, 0, 1, 2, 5), "b": rec(2, 0, 2, 0, 0), "x": rec(3, 0, 3, 1, 4)},
     "data": {"a": "A", "b": "B", "x": "X"}},
    "complete", complete_args(("a", 1, 5, "", 0), next_n=1),
    [1, T(), 0, T(LEASE), "b", "B", 1, "2", "6"],
    {"meta": meta(seq=6, added=2, leased=3, completed=1, expired=1), "pending": {"x": ps(0, 3)},
     "leased": {"b": At(LEASE)},
     "items": {"b": rec(2, 0, 2, 1, 6), "x": rec(3, 0, 3, 1, 4)},
     "data": {"b": "B", "x": "X"}, "errors": {"x": "lease expired (attempt 1)"},
     "acked": {"c5": At(0)}, "wake": WAKE},
)
case(
    "complete/next_n with nothing ready answers next_due",
    {"meta": meta(seq=5), "leased": {"a": FUTURE}, "delayed": {"x": FUTURE + 7},
     "items": {"a": rec(1, 0, 1, 1, 5), "x": rec(2, 0, 2, 0, 0)},
     "data": {"a": "A", "x": "X"}},
    "complete", complete_args(("a", 1, 5, "", 0), next_n=2, lease_ms=1000),
    [1, T(), str(FUTURE + 7), T(1000)],
    {"meta": meta(seq=5, completed=1), "delayed": {"x": FUTURE + 7},
     "items": {"x": rec(2, 0, 2, 0, 0)}, "data": {"x": "X"}, "acked": {"c5": At(0)}},
)
case(
    "complete/an acked token older than the 60 s window no longer counts",
    {"meta": meta(seq=5, completed=1), "acked": {"c5": PAST}},
    "complete", complete_args(("a", 1, 5, "", 0)),
    [0],
    {"meta": meta(seq=5, completed=1), "acked": {"c5": PAST}},
)
case(
    "complete/tokens are not checked within an incarnation: a failed lease still completes",
    {"meta": meta(seq=5, failed=1, retried=1), "pending": {"a": ps(0, 1)},
     "items": {"a": rec(1, 0, 1, 1, 5)}, "data": {"a": "A"}, "errors": {"a": "boom"},
     "acked": {"c5": Rel(-1000)}, "wake": WAKE},
    "complete", complete_args(("a", 1, 5, "", 0)),
    [1],
    {"meta": meta(seq=5, failed=1, retried=1, completed=1), "acked": {"c5": At(0)}},
)
_REINCARNATED: dict[str, Any] = {
    # "a" was leased as incarnation 1 with token 5 and finished; then added again as
    # incarnation 7 and leased with token 9.
    "meta": meta(seq=9), "leased": {"a": FUTURE}, "items": {"a": rec(7, 0, 7, 1, 9)},
    "data": {"a": "A2"},
}
case(
    "complete/no ABA: an old incarnation's lease cannot complete the new one",
    _REINCARNATED,
    "complete", complete_args(("a", 1, 5, "", 0)),
    [0],
    None,
)
case(
    "complete/no ABA: old token still in acked answers 2 but leaves the new one alone",
    {**_REINCARNATED, "acked": {"c5": Rel(-1000)}},
    "complete", complete_args(("a", 1, 5, "", 0)),
    [2],
    None,
)

# ---------------------------------------------------------------------------- extend

_EXT: dict[str, Any] = {
    "meta": meta(seq=5), "leased": {"a": Rel(1000)}, "items": {"a": rec(1, 0, 1, 1, 5)},
    "data": {"a": "A"},
}
case(
    "extend/current lease -> new deadline now+lease_ms",
    _EXT,
    "extend", [60_000, 1, "a", 1, 5],
    [T(60_000)],
    {**_EXT, "leased": {"a": At(60_000)}},
)
case(
    "extend/an expired lease not yet reclaimed is still current",
    {**_EXT, "leased": {"a": PAST}},
    "extend", [60_000, 1, "a", 1, 5],
    [T(60_000)],
    {**_EXT, "leased": {"a": At(60_000)}},
)
case(
    "extend/stale token (item leased again since) -> 0",
    {**_EXT, "meta": meta(seq=9), "items": {"a": rec(1, 0, 1, 2, 9)}},
    "extend", [60_000, 1, "a", 1, 5],
    [0],
    None,
)
case(
    "extend/after reclaim (back in pending, record keeps the token) -> 0",
    {"meta": meta(seq=5), "pending": {"a": ps(0, 1)}, "items": {"a": rec(1, 0, 1, 1, 5)},
     "data": {"a": "A"}, "errors": {"a": "lease expired (attempt 1)"}, "wake": WAKE},
    "extend", [60_000, 1, "a", 1, 5],
    [0],
    None,
)
case(
    "extend/no ABA: an old incarnation's lease -> 0",
    _REINCARNATED,
    "extend", [60_000, 1, "a", 1, 5],
    [0],
    None,
)
case(
    "extend/batch: current, dead-lettered, unknown",
    {"meta": meta(seq=6), "leased": {"a": FUTURE}, "dead": {"b": PAST},
     "items": {"a": rec(1, 0, 1, 1, 5), "b": rec(2, 0, 2, 3, 6)},
     "data": {"a": "A", "b": "B"}, "errors": {"b": "lease expired (attempt 3)"}},
    "extend", [1000, 3, "a", 1, 5, "b", 2, 6, "z", 3, 7],
    [T(1000), 0, 0],
    {"meta": meta(seq=6), "leased": {"a": At(1000)}, "dead": {"b": PAST},
     "items": {"a": rec(1, 0, 1, 1, 5), "b": rec(2, 0, 2, 3, 6)},
     "data": {"a": "A", "b": "B"}, "errors": {"b": "lease expired (attempt 3)"}},
)

# ---------------------------------------------------------------------------- fail


def fail_args(*items: tuple[str, int, int, str, int], **policy: int) -> list[Any]:
    args: list[Any] = [*pol(**policy), len(items)]
    for item in items:
        args += item
    return args


_FAIL: dict[str, Any] = {
    "meta": meta(seq=5), "leased": {"a": FUTURE}, "items": {"a": rec(1, 4, 1, 1, 5)},
    "data": {"a": "A"},
}
case(
    "fail/retry with delay -> delayed at now+retry_ms, error kept, wakes (new earliest)",
    _FAIL,
    "fail", fail_args(("a", 1, 5, "boom", 5000), max_att=3),
    [1],
    {"meta": meta(seq=5, failed=1, retried=1), "delayed": {"a": At(5000)},
     "items": {"a": rec(1, 4, 1, 1, 5)}, "data": {"a": "A"}, "errors": {"a": "boom"},
     "acked": {"f5": At(0)}, "wake": WAKE},
)
case(
    "fail/retry later than the earliest delayed item: no wake",
    {**_FAIL, "delayed": {"x": Rel(1000)},
     "items": {"a": rec(1, 4, 1, 1, 5), "x": rec(2, 0, 2, 0, 0)}, "data": {"a": "A", "x": "X"}},
    "fail", fail_args(("a", 1, 5, "boom", 60_000), max_att=3),
    [1],
    {"meta": meta(seq=5, failed=1, retried=1), "delayed": {"x": Rel(1000), "a": At(60_000)},
     "items": {"a": rec(1, 4, 1, 1, 5), "x": rec(2, 0, 2, 0, 0)},
     "data": {"a": "A", "x": "X"}, "errors": {"a": "boom"}, "acked": {"f5": At(0)}},
)
case(
    "fail/retry_ms 0 -> pending at its old score, wake set",
    {**_FAIL, "pending": {"b": ps(4, 2)},
     "items": {"a": rec(1, 4, 1, 1, 5), "b": rec(2, 4, 2, 0, 0)},
     "data": {"a": "A", "b": "B"}, "wake": WAKE},
    "fail", fail_args(("a", 1, 5, "boom", 0), max_att=3),
    [1],
    {"meta": meta(seq=5, failed=1, retried=1), "pending": {"a": ps(4, 1), "b": ps(4, 2)},
     "items": {"a": rec(1, 4, 1, 1, 5), "b": rec(2, 4, 2, 0, 0)},
     "data": {"a": "A", "b": "B"}, "errors": {"a": "boom"}, "acked": {"f5": At(0)},
     "wake": WAKE},
)
case(
    "fail/at max_attempts -> dead-lettered with the error",
    {**_FAIL, "items": {"a": rec(1, 4, 1, 3, 5)}},
    "fail", fail_args(("a", 1, 5, "boom", 5000), max_att=3),
    [2],
    {"meta": meta(seq=5, failed=1, dead=1), "dead": {"a": At(0)},
     "items": {"a": rec(1, 4, 1, 3, 5)}, "data": {"a": "A"}, "errors": {"a": "boom"},
     "acked": {"f5": At(0)}},
)
case(
    "fail/max_attempts 0 = unlimited",
    {**_FAIL, "items": {"a": rec(1, 4, 1, 50, 5)}},
    "fail", fail_args(("a", 1, 5, "boom", 0)),
    [1],
    {"meta": meta(seq=5, failed=1, retried=1), "pending": {"a": ps(4, 1)},
     "items": {"a": rec(1, 4, 1, 50, 5)}, "data": {"a": "A"}, "errors": {"a": "boom"},
     "acked": {"f5": At(0)}, "wake": WAKE},
)
case(
    "fail/stale token (item leased again since) -> 0",
    {**_FAIL, "meta": meta(seq=9), "items": {"a": rec(1, 4, 1, 2, 9)}},
    "fail", fail_args(("a", 1, 5, "boom", 0), max_att=3),
    [0],
    None,
)
case(
    "fail/repeated by the same token -> 3",
    {"meta": meta(seq=5, failed=1, retried=1), "delayed": {"a": FUTURE},
     "items": {"a": rec(1, 4, 1, 1, 5)}, "data": {"a": "A"}, "errors": {"a": "boom"},
     "acked": {"f5": Rel(-1000)}},
    "fail", fail_args(("a", 1, 5, "boom", 5000), max_att=3),
    [3],
    None,
)
case(
    "fail/no ABA: an old incarnation's lease -> 0",
    _REINCARNATED,
    "fail", fail_args(("a", 1, 5, "boom", 0), max_att=1),
    [0],
    None,
)
_DEAD_XY: dict[str, Any] = {
    "meta": meta(seq=9, dead=2), "leased": {"a": FUTURE},
    "items": {"a": rec(1, 0, 1, 1, 9), "x": rec(2, 0, 2, 1, 7), "y": rec(3, 0, 3, 1, 8)},
    "data": {"a": "A", "x": "X", "y": "Y"}, "errors": {"x": "ex", "y": "ey"},
}
case(
    "fail/dead_max: the oldest dead letter is dropped with its data",
    {**_DEAD_XY, "dead": {"x": PAST + 1, "y": PAST + 2}},
    "fail", fail_args(("a", 1, 9, "boom", 0), max_att=1, dead_max=2),
    [2],
    {"meta": meta(seq=9, dead=3, failed=1), "dead": {"y": PAST + 2, "a": At(0)},
     "items": {"a": rec(1, 0, 1, 1, 9), "y": rec(3, 0, 3, 1, 8)},
     "data": {"a": "A", "y": "Y"}, "errors": {"a": "boom", "y": "ey"}, "acked": {"f9": At(0)}},
)
case(
    "fail/dead_ttl: dead letters older than the ttl are dropped with their data",
    {**_DEAD_XY, "dead": {"x": PAST, "y": Rel(-1000)}},
    "fail", fail_args(("a", 1, 9, "boom", 0), max_att=1, dead_ttl=60_000),
    [2],
    {"meta": meta(seq=9, dead=3, failed=1), "dead": {"y": Rel(-1000), "a": At(0)},
     "items": {"a": rec(1, 0, 1, 1, 9), "y": rec(3, 0, 3, 1, 8)},
     "data": {"a": "A", "y": "Y"}, "errors": {"a": "boom", "y": "ey"}, "acked": {"f9": At(0)}},
)
case(
    "fail/batch: retried, dead-lettered, stale",
    {"meta": meta(seq=6), "leased": {"a": FUTURE, "b": FUTURE},
     "items": {"a": rec(1, 0, 1, 1, 5), "b": rec(2, 0, 2, 2, 6)},
     "data": {"a": "A", "b": "B"}},
    "fail", fail_args(("a", 1, 5, "ea", 0), ("b", 2, 6, "eb", 0), ("c", 3, 4, "ec", 0),
                      max_att=2),
    [1, 2, 0],
    {"meta": meta(seq=6, failed=2, retried=1, dead=1), "pending": {"a": ps(0, 1)},
     "dead": {"b": At(0)}, "items": {"a": rec(1, 0, 1, 1, 5), "b": rec(2, 0, 2, 2, 6)},
     "data": {"a": "A", "b": "B"}, "errors": {"a": "ea", "b": "eb"},
     "acked": {"f5": At(0), "f6": At(0)}, "wake": WAKE},
)

# ---------------------------------------------------------------------------- requeue

_RQ: dict[str, Any] = {
    "meta": meta(seq=6), "leased": {"a": FUTURE}, "pending": {"b": ps(2, 3)},
    "items": {"a": rec(1, 2, 1, 2, 5), "b": rec(3, 2, 3, 0, 0)},
    "data": {"a": "A", "b": "B"}, "errors": {"a": "boom"}, "wake": WAKE,
}
case(
    "requeue/attempt taken back, new seq (back of its priority), pending",
    _RQ,
    "requeue", [1, "a", 1, 5, 0, ""],
    [1],
    {**_RQ, "meta": meta(seq=7, requeued=1), "leased": None,
     "pending": {"b": ps(2, 3), "a": ps(2, 7)},
     "items": {"a": rec(1, 2, 7, 1, 5), "b": rec(3, 2, 3, 0, 0)}, "acked": {"f5": At(0)}},
)
case(
    "requeue/with delay -> delayed at now+delay, wakes (new earliest)",
    {**_RQ, "pending": None, "wake": None, "items": {"a": rec(1, 2, 1, 1, 5)},
     "data": {"a": "A"}},
    "requeue", [1, "a", 1, 5, 10_000, ""],
    [1],
    {"meta": meta(seq=7, requeued=1), "delayed": {"a": At(10_000)},
     "items": {"a": rec(1, 2, 7, 0, 5)}, "data": {"a": "A"}, "errors": {"a": "boom"},
     "acked": {"f5": At(0)}, "wake": WAKE},
)
case(
    "requeue/stale token -> 0",
    {**_RQ, "meta": meta(seq=9), "items": {"a": rec(1, 2, 1, 3, 9), "b": rec(3, 2, 3, 0, 0)}},
    "requeue", [1, "a", 1, 5, 0, ""],
    [0],
    None,
)
case(
    "requeue/repeated by the same token -> 3",
    {**_RQ, "leased": None, "pending": {"b": ps(2, 3), "a": ps(2, 7)}, "meta": meta(seq=7),
     "items": {"a": rec(1, 2, 7, 1, 5), "b": rec(3, 2, 3, 0, 0)}, "acked": {"f5": Rel(-1000)}},
    "requeue", [1, "a", 1, 5, 0, ""],
    [3],
    None,
)
case(
    "requeue/no ABA: an old incarnation's lease -> 0",
    _REINCARNATED,
    "requeue", [1, "a", 1, 5, 0, ""],
    [0],
    None,
)

# ---------------------------------------------------------------------------- remove

_ALL: dict[str, Any] = {
    "meta": meta(seq=7),
    "pending": {"a": ps(0, 1), "e": ps(0, 5)}, "delayed": {"b": FUTURE},
    "leased": {"c": FUTURE}, "dead": {"d": PAST},
    "items": {"a": rec(1, 0, 1, 0, 0), "b": rec(2, 0, 2, 1, 6), "c": rec(3, 0, 3, 1, 7),
              "d": rec(4, 0, 4, 3, 5), "e": rec(5, 0, 5, 0, 0)},
    "data": {"a": "A", "b": "B", "c": "C", "d": "D", "e": "E"},
    "errors": {"b": "eb", "d": "ed"},
    "acked": {"f4": Rel(-1000)},
    "wake": WAKE,
    "result:a": Result("old", 60_000),
}
case(
    "remove/in each state (and unknown); a kept result stays; wake kept while ready",
    _ALL,
    "remove", ["a", "b", "c", "d", "z"],
    [1, 1, 1, 1, 0],
    {"meta": meta(seq=7, removed=4), "pending": {"e": ps(0, 5)},
     "items": {"e": rec(5, 0, 5, 0, 0)}, "data": {"e": "E"}, "acked": {"f4": Rel(-1000)},
     "wake": WAKE, "result:a": Result("old", 60_000)},
)
case(
    "remove/the last ready item removes the wake key",
    {"meta": meta(seq=1), "pending": {"a": ps(0, 1)}, "items": {"a": rec(1, 0, 1, 0, 0)},
     "data": {"a": "A"}, "wake": WAKE},
    "remove", ["a"],
    [1],
    {"meta": meta(seq=1, removed=1)},
)
case(
    "remove/unknown ids only: nothing changes",
    {"meta": meta(seq=1), "delayed": {"a": FUTURE}, "items": {"a": rec(1, 0, 1, 0, 0)},
     "data": {"a": "A"}},
    "remove", ["x", "y"],
    [0, 0],
    None,
)

# ---------------------------------------------------------------------------- state


def _state(item_id: str, seed_: dict[str, Any], reply: list[Any], what: str,
           holder: str = "") -> None:
    # then, while the item has a record: the stored payload and the latest lease's holder
    recorded = item_id in seed_.get("items", {})
    tail = [seed_.get("data", {}).get(item_id), holder] if recorded else [None]
    case(f"state/{what}", seed_, "state", [item_id], [*reply, *tail], None,
         results=(item_id,))


_state("a", _ALL, [T(), 1, 0, 0, "1", 0, "0", None, 0, None],
       "pending; a kept result of an earlier incarnation is not reported")
_state("e", {"meta": meta(seq=7), "pending": {"e": ps(-7, 5)},
             "items": {"e": rec(5, -7, 5, 2, 7)}, "data": {"e": "E"}, "errors": {"e": "boom"},
             "wake": WAKE},
       [T(), 1, 2, 0, "5", -7, "7", "boom", 0, None], "pending after a retry")
_state("b", _ALL, [T(), 2, 1, str(FUTURE), "2", 0, "6", "eb", 0, None], "delayed: score = due")
_state("c", _ALL, [T(), 3, 1, str(FUTURE), "3", 0, "7", None, 0, None],
       "leased: score = deadline")
_state("c", {**_ALL, "items": {**_ALL["items"], "c": rec(3, 0, 3, 1, 7) + ":w:1"}},
       [T(), 3, 1, str(FUTURE), "3", 0, "7", None, 0, None],
       "leased: the holder (any text, colons too)", holder="w:1")
_state("d", _ALL, [T(), 4, 3, str(PAST), "4", 0, "5", "ed", 0, None],
       "dead: score = time of death")
_state("o", {"meta": meta(seq=3), "items": {"o": rec(3, 1, 3, 0, 0)}, "data": {"o": "O"}},
       [T(), 5, 0, 0, "3", 1, "0", None, 0, None], "record in no set -> 5")
_state("r", {"meta": meta(seq=3), "result:r": Result("R", 60_000)},
       [T(), 6, 0, 0, 0, 0, 0, None, 1, "R"], "completed with a kept result -> 6")
_state("z", _ALL, [T(), 0, 0, 0, 0, 0, 0, None, 0, None], "unknown -> 0")

# ---------------------------------------------------------------------------- stats


def _stats_shape(reply: list[Any]) -> list[Any]:
    return [*reply[:7], dict(zip(reply[7::2], reply[8::2], strict=True))]


case(
    "stats/sizes, due / expired counts and the whole meta hash",
    {"meta": meta(seq=20, added=7, leased=3, dead=1),
     "pending": {"a": ps(0, 1)}, "delayed": {"b": PAST, "c": FUTURE},
     "leased": {"d": PAST, "e": FUTURE, "f": Rel(60_000)}, "dead": {"g": PAST},
     "items": {x: rec(i + 1, 0, i + 1, 1, 10 + i) for i, x in enumerate("abcdefg")},
     "data": {x: x.upper() for x in "abcdefg"}, "wake": WAKE},
    "stats", [],
    [T(), 1, 2, 3, 1, 1, 1,
     {"clock_offset": str(OFFSET), "seq": "20", "added": "7", "leased": "3", "dead": "1"}],
    None,
    shape=_stats_shape,
)
case(
    "stats/empty queue",
    {"meta": meta()},
    "stats", [],
    [T(), 0, 0, 0, 0, 0, 0, {"clock_offset": str(OFFSET)}],
    None,
    shape=_stats_shape,
)

# ---------------------------------------------------------------------------- peek

_PEEK: dict[str, Any] = {
    "meta": meta(seq=9),
    "pending": {"a": ps(0, 1), "b": ps(5, 2), "c": ps(0, 3)},
    "delayed": {"x": PAST, "y": FUTURE, "z": FUTURE + 1},
    "leased": {"l": FUTURE},
    "dead": {"d": PAST},
    "items": {"a": rec(1, 0, 1, 0, 0), "b": rec(2, 5, 2, 0, 0), "c": rec(3, 0, 3, 1, 8),
              "x": rec(4, 0, 4, 0, 0), "y": rec(5, -1, 5, 0, 0), "z": rec(6, 0, 6, 0, 0),
              "l": rec(7, 2, 7, 1, 9), "d": rec(8, 0, 8, 3, 7)},
    "data": {x: x.upper() for x in "abcxyzld"},
    "errors": {"c": "boom", "d": "lease expired (attempt 3)"},
    "wake": WAKE,
}
case(
    "peek/pending in lease order, with attempts, priority, score, error, inc, token",
    _PEEK,
    "peek", ["pending", 0, 10],
    [3, "b", "B", 0, 5, str(ps(5, 2)), None, "2", "0", "", "a", "A", 0, 0, str(ps(0, 1)), None,
     "1", "0", "", "c", "C", 1, 0, str(ps(0, 3)), "boom", "3", "8", ""],
    None,
)
case(
    "peek/delayed by due time, start and count",
    _PEEK,
    "peek", ["delayed", 1, 1],
    [3, "y", "Y", 0, -1, str(FUTURE), None, "5", "0", ""],
    None,
)
case(
    "peek/leased and dead",
    _PEEK,
    "peek", ["dead", 0, 5],
    [1, "d", "D", 3, 0, str(PAST), "lease expired (attempt 3)", "8", "7", ""],
    None,
)
case(
    "peek/leased: score = deadline",
    _PEEK,
    "peek", ["leased", 0, 5],
    [1, "l", "L", 1, 2, str(FUTURE), None, "7", "9", ""],
    None,
)
case(
    "peek/leased: the holder the lease was taken under",
    {**_PEEK, "items": {**_PEEK["items"], "l": rec(7, 2, 7, 1, 9) + ":host-1:42"}},
    "peek", ["leased", 0, 5],
    [1, "l", "L", 1, 2, str(FUTURE), None, "7", "9", "host-1:42"],
    None,
)
case(
    "peek/n=0 answers the total only",
    _PEEK,
    "peek", ["delayed", 0, 0],
    [3],
    None,
)

# ---------------------------------------------------------------------------- purge

case(
    "purge/every item in every state; meta (incl. seq) and kept results stay",
    _ALL,
    "purge", [],
    5,
    {"meta": meta(seq=7, purged=5), "result:a": Result("old", 60_000)},
)
case(
    "purge/empty queue -> 0, meta untouched",
    {"meta": meta(seq=3)},
    "purge", [],
    0,
    None,
)

# ---------------------------------------------------------------------------- sweep

_SWEEP: dict[str, Any] = {
    "meta": meta(seq=20),
    "delayed": {"a": PAST + 1, "b": PAST + 2, "c": PAST + 3, "f": FUTURE},
    "leased": {"d": PAST + 1, "e": PAST + 2, "g": PAST + 3, "h": FUTURE},
    "items": {"a": rec(1, 0, 1, 0, 0), "b": rec(2, 0, 2, 0, 0), "c": rec(3, 0, 3, 0, 0),
              "d": rec(4, 0, 4, 1, 10), "e": rec(5, 0, 5, 2, 11), "f": rec(6, 0, 6, 0, 0),
              "g": rec(7, 0, 7, 1, 12), "h": rec(8, 0, 8, 1, 13)},
    "data": {x: x.upper() for x in "abcdefgh"},
}
case(
    "sweep/promotes and reclaims up to limit each; wake set",
    _SWEEP,
    "sweep", [*pol(), 2],
    [2, 2],
    {**_SWEEP, "meta": meta(seq=20, expired=2),
     "pending": {"a": ps(0, 1), "b": ps(0, 2), "d": ps(0, 4), "e": ps(0, 5)},
     "delayed": {"c": PAST + 3, "f": FUTURE}, "leased": {"g": PAST + 3, "h": FUTURE},
     "errors": {"d": "lease expired (attempt 1)", "e": "lease expired (attempt 2)"},
     "wake": WAKE},
)
case(
    "sweep/reclaim at max_attempts dead-letters",
    _SWEEP,
    "sweep", [*pol(max_att=2), 10],
    [3, 3],
    {**_SWEEP, "meta": meta(seq=20, expired=3, dead=1),
     "pending": {"a": ps(0, 1), "b": ps(0, 2), "c": ps(0, 3), "d": ps(0, 4), "g": ps(0, 7)},
     "delayed": {"f": FUTURE}, "leased": {"h": FUTURE}, "dead": {"e": At(0)},
     "errors": {"d": "lease expired (attempt 1)", "e": "lease expired (attempt 2)",
                "g": "lease expired (attempt 1)"},
     "wake": WAKE},
)
case(
    "sweep/nothing due: [0, 0], stale wake key removed",
    {"meta": meta(seq=1), "delayed": {"a": FUTURE}, "items": {"a": rec(1, 0, 1, 0, 0)},
     "data": {"a": "A"}, "wake": WAKE},
    "sweep", [*pol(), 100],
    [0, 0],
    {"meta": meta(seq=1), "delayed": {"a": FUTURE}, "items": {"a": rec(1, 0, 1, 0, 0)},
     "data": {"a": "A"}},
)

# ---------------------------------------------------------------------------- dead letters

_DEAD3: dict[str, Any] = {
    "meta": meta(seq=10, dead=3),
    "dead": {"a": PAST + 2, "b": PAST + 1, "c": PAST + 3},
    "pending": {"p": ps(0, 4)},
    "items": {"a": rec(1, 3, 1, 3, 8), "b": rec(2, 0, 2, 3, 9), "c": rec(3, 0, 3, 1, 10),
              "p": rec(4, 0, 4, 0, 0)},
    "data": {"a": "A", "b": "B", "c": "C", "p": "P"},
    "errors": {"a": "ea", "b": "eb", "c": "ec"},
    "wake": WAKE,
}
case(
    "dead_requeue/ids: attempts reset, new seq, error dropped; unknown id ignored",
    _DEAD3,
    "dead_requeue", ["ids", "a", "z"],
    1,
    {**_DEAD3, "meta": meta(seq=11, dead=3, requeued=1),
     "dead": {"b": PAST + 1, "c": PAST + 3}, "pending": {"p": ps(0, 4), "a": ps(3, 11)},
     "items": {**_DEAD3["items"], "a": rec(1, 3, 11, 0, 8)}, "errors": {"b": "eb", "c": "ec"}},
)
case(
    "dead_requeue/all with a limit takes the oldest first",
    {**_DEAD3, "pending": None, "wake": None,
     "items": {k: v for k, v in _DEAD3["items"].items() if k != "p"},
     "data": {"a": "A", "b": "B", "c": "C"}},
    "dead_requeue", ["all", 2],
    2,
    {"meta": meta(seq=12, dead=3, requeued=2), "dead": {"c": PAST + 3},
     "pending": {"b": ps(0, 11), "a": ps(3, 12)},
     "items": {"a": rec(1, 3, 12, 0, 8), "b": rec(2, 0, 11, 0, 9), "c": rec(3, 0, 3, 1, 10)},
     "data": {"a": "A", "b": "B", "c": "C"}, "errors": {"c": "ec"}, "wake": WAKE},
)
case(
    "dead_requeue/an id that is not dead is left alone",
    _DEAD3,
    "dead_requeue", ["ids", "p"],
    0,
    None,
)
case(
    "dead_purge/ids: record, payload and error gone; pending and unknown ids untouched",
    _DEAD3,
    "dead_purge", ["ids", "a", "p", "z"],
    1,
    {**_DEAD3, "meta": meta(seq=10, dead=3, dead_purged=1),
     "dead": {"b": PAST + 1, "c": PAST + 3},
     "items": {k: v for k, v in _DEAD3["items"].items() if k != "a"},
     "data": {"b": "B", "c": "C", "p": "P"}, "errors": {"b": "eb", "c": "ec"}},
)
case(
    "dead_purge/all with a limit takes the oldest first",
    _DEAD3,
    "dead_purge", ["all", 2],
    2,
    {**_DEAD3, "meta": meta(seq=10, dead=3, dead_purged=2), "dead": {"c": PAST + 3},
     "items": {"c": rec(3, 0, 3, 1, 10), "p": rec(4, 0, 4, 0, 0)},
     "data": {"c": "C", "p": "P"}, "errors": {"c": "ec"}},
)
case(
    "dead_purge/all on an empty dead set -> 0",
    {"meta": meta(seq=1)},
    "dead_purge", ["all", 10],
    0,
    None,
)


# ------------------------------------------------------------------------------ the test

def _clean(content: dict[str, Any]) -> dict[str, Any]:
    """Drop the keys a table row set to None (``{**base, "pending": None}``)."""
    return {k: v for k, v in content.items() if v is not None}


def _params() -> list[Any]:
    seen: set[str] = set()
    out = []
    for c in CASES:
        assert c.id not in seen, f"duplicate case id {c.id}"
        seen.add(c.id)
        marks = [pytest.mark.xfail(strict=True, reason=c.xfail)] if c.xfail else []
        out.append(pytest.param(c, id=c.id, marks=marks))
    return out


def lease_items_as_read(script: str, args: list[Any], reply: Any) -> Any:
    """A lease reply's items, (id, stored value, attempts, token) each, written as the tables
    expect them: (id, payload, attempts, inc, token), as the client reads them (the value is
    "inc:prio:seq:" + payload)."""
    if script == "lease":
        start = 0
    elif script == "complete" and int(args[3]) > 0:
        start = int(args[5])
    else:
        return reply
    if not isinstance(reply, list) or len(reply) < start + 3:
        return reply
    out = list(reply[: start + 3])
    for i in range(start + 3, len(reply), 4):
        item_id, value, att, tok = reply[i : i + 4]
        inc, _, _, payload = value.split(":", 3)
        out += [item_id, payload, att, inc, tok]
    return out


_CLIENTS: dict[int, Any] = {}


def _client(server: Any) -> Any:
    """One decoding client per backend for the whole module (a cluster client is slow to make)."""
    key = id(server.backend)
    if key not in _CLIENTS:
        _CLIENTS[key] = server.backend.client(decode_responses=True)
    return _CLIENTS[key]


@pytest.fixture(scope="module", autouse=True)
def _close_clients() -> Any:
    yield
    for client in _CLIENTS.values():
        client.close()
    _CLIENTS.clear()
    _LOADED.clear()


_LOADED: set[int] = set()


def _run(client: Any, via: str, script: str, keys: list[str], args: list[Any]) -> Any:
    """Run a script as EVALSHA/EVAL, or as its function of the leaseq library (FCALL)."""
    if via == "eval" or script not in scripts.ENGINE_SCRIPTS:
        return scripts.run(client, script, keys, args)
    if id(client) not in _LOADED:
        assert scripts.load_library(client)
        _LOADED.add(id(client))
    return scripts.fcall(client, script, keys, args)


@pytest.mark.parametrize("via", ["eval", "fcall"])
@pytest.mark.parametrize("row", _params())
def test_script(server: Any, queue_name: str, row: Case, via: str) -> None:
    client = _client(server)
    keys = QueueKeys.of(queue_name)
    seeded = _clean(row.seed)
    t_seed = seed(client, keys, seeded)
    assert set(dump(client, keys)) == set(seeded), "the seed did not write every key"

    all_keys = [*keys.all_fixed, *(keys.result(i) for i in row.results)]
    lo = wall_ms()
    reply = lease_items_as_read(row.script, row.args,
                                _run(client, via, row.script, all_keys, row.args))
    hi = wall_ms()
    if row.shape is not None:
        reply = row.shape(reply)

    after = seeded if row.after is None else _clean(row.after)
    keep_due = row.keep_due or "due" in after.get("meta", {})
    check((row.reply, after), (reply, dump(client, keys, keep_due)), lo, hi, t_seed)


def test_no_aba_flow(server: Any, queue_name: str) -> None:
    """The same story as the seeded no-ABA rows, driven through the scripts end to end: a lease
    of the first incarnation of "a" cannot touch the second one."""
    client = _client(server)
    keys = QueueKeys.of(queue_name)
    t_seed = seed(client, keys, {"meta": meta()})

    def step(script: str, args: list[Any], expected: Any) -> tuple[Any, int, int]:
        lo = wall_ms()
        reply = lease_items_as_read(script, args,
                                    scripts.run(client, script, keys.all_fixed, args))
        hi = wall_ms()
        check(expected, reply, lo, hi, t_seed)
        return reply, lo, hi

    step("add", [1, "a", "v1", 0, 0], [0])
    step("lease", lease_args(1), [T(), 0, T(LEASE), "a", "v1", 1, "1", "2"])
    _, lo, hi = step("complete", complete_args(("a", 1, 2, "", 0)), [1])
    step("complete", complete_args(("a", 1, 2, "", 0)), [2])  # a repeat after a lost reply
    step("add", [1, "a", "v2", 0, 0], [0])
    got, _, _ = step("lease", lease_args(1), [T(), 0, T(LEASE), "a", "v2", 1, "3", "4"])
    step("complete", complete_args(("a", 1, 2, "", 0)), [2])
    step("extend", [60_000, 1, "a", 1, 2], [0])
    # token 2 finished "a" by completing it: a fail or requeue by it is stale, not a repeat
    step("fail", fail_args(("a", 1, 2, "boom", 0), max_att=1), [0])
    step("requeue", [1, "a", 1, 2, 0, ""], [0])

    after = dump(client, keys)
    assert lo - SLACK_MS <= after["acked"].pop("c2") <= hi + SLACK_MS
    assert after == {
        "meta": meta(seq=4, added=2, leased=2, completed=1),
        "leased": {"a": int(got[2])},
        "items": {"a": rec(3, 0, 3, 1, 4)},
        "data": {"a": "v2"},
        "acked": {},
    }


@pytest.mark.parametrize("via", ["eval", "fcall"])
def test_a_call_key_makes_a_repeat_answer_as_the_first_run(server: Any, queue_name: str,
                                                           via: str) -> None:
    """add / remove / complete by bare id with a call key (includes/calls.lua): the first run
    stores its reply under the key for 20 s; the same call sent again answers it and changes
    nothing, even after the id was completed or added again; a new call key runs anew."""
    client = _client(server)
    keys = QueueKeys.of(queue_name)
    fixed = list(keys.all_fixed)
    first, again = keys.call("c1"), keys.call("c2")
    add = [1, "a", "v1", 0, 0]
    assert _run(client, via, "add", [*fixed, first], add) == [0]
    assert 0 < client.pttl(first) <= 20_000
    assert client.hget(keys.items, "a") is not None
    done = complete_args(("a", 0, 0, "", 0))  # by bare id
    assert _run(client, via, "complete", [*fixed, again], done) == [1]
    assert client.hget(keys.items, "a") is None
    # The repeats: the add does not bring "a" back; the complete answers 1 again.
    assert _run(client, via, "add", [*fixed, first], add) == [0]
    assert client.hget(keys.items, "a") is None
    assert _run(client, via, "complete", [*fixed, again], done) == [1]
    meta_now = client.hgetall(keys.meta)
    assert (meta_now["added"], meta_now["completed"]) == ("1", "1")
    # A new call is a new call.
    assert _run(client, via, "add", [*fixed, keys.call("c3")], add) == [0]
    assert _run(client, via, "remove", [*fixed, keys.call("c4")], ["a", "zz"]) == [1, 0]
    assert _run(client, via, "remove", [*fixed, keys.call("c4")], ["a", "zz"]) == [1, 0]
    assert client.hgetall(keys.meta)["removed"] == "1"
    for k in ("c1", "c2", "c3", "c4"):
        client.delete(keys.call(k))
