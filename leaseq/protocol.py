"""Pure translation between leaseq operations and script calls: no I/O here.

Each function validates its input (raising before anything is sent), returns a :class:`Call`
naming the script, its KEYS and ARGV, and a parser that turns the server's reply into a typed
result. The sync and asyncio queues only run these calls; the asyncio coalescer merges the
entries of many concurrent calls into one :class:`Call`.
"""

from __future__ import annotations

import math
import os
import re
import time
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .codec import HEADERS, Codec, content_id, parse_headers, rewrap, split, wrap
from .errors import InvalidArgument, InvalidToken, SerializationError
from .keys import QueueKeys, validate_id
from .models import (
    AddResult,
    Backoff,
    FailOutcome,
    Item,
    ItemState,
    Lease,
    Peeked,
    State,
    Stats,
    token_of,
)
from .scripts import Arg

T = TypeVar("T")

MAX_PRIORITY = 1000
MAX_BATCH = 1000  # items per script call at most (Lua unpack limits, short scripts)
MAX_DURATION = 10 * 365 * 86400.0
STATES = {1: State.PENDING, 2: State.DELAYED, 3: State.LEASED, 4: State.DEAD, 6: State.COMPLETED}


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One script call: run ``script`` with ``keys``/``args``, then ``parse`` the reply."""

    script: str
    keys: Sequence[str]
    args: Sequence[Arg]
    parse: Callable[[Any], T]


@dataclass(frozen=True, slots=True)
class Config:
    """A queue's settings, fixed at construction (see :class:`leaseq.Queue`)."""

    keys: QueueKeys
    codec: Codec
    lease: float
    max_attempts: int
    backoff: Backoff
    dead_max: int
    dead_ttl: float
    result_ttl: float
    unique_by_content: bool
    holder: str = ""  # named in every lease this queue takes ("": none)
    policy: tuple[int, int, int] = (0, 0, 0)  # ARGV[1..3] of the scripts that dead-letter
    lease_ms: int = 0  # the default lease in ms

    def __post_init__(self) -> None:
        policy = (self.max_attempts, self.dead_max, ms(self.dead_ttl, "dead_ttl", zero=True))
        object.__setattr__(self, "policy", policy)
        object.__setattr__(self, "lease_ms", ms(self.lease, "lease"))
        h = self.holder
        if not isinstance(h, str) or len(h) > MAX_HOLDER or any(
                ord(c) < 32 or ord(c) == 127 for c in h):
            raise InvalidArgument(f"holder must be text of at most {MAX_HOLDER} printable "
                                  f"characters, not {h!r}")


MAX_HOLDER = 200


def ms(seconds: object, what: str, *, zero: bool = False) -> int:
    """Seconds -> whole milliseconds (at least 1 unless zero is allowed); validated."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise InvalidArgument(f"{what} must be a number of seconds, not {seconds!r}")
    if math.isnan(seconds) or seconds < 0 or (seconds == 0 and not zero):
        raise InvalidArgument(f"{what} must be {'>= 0' if zero else '> 0'}, not {seconds!r}")
    if seconds > MAX_DURATION:
        raise InvalidArgument(f"{what} must be at most {MAX_DURATION:.0f} s, not {seconds!r}")
    return 0 if seconds == 0 else max(1, round(seconds * 1000))


def count(n: object, what: str = "n") -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1 or n > MAX_BATCH:
        raise InvalidArgument(f"{what} must be an int from 1 to {MAX_BATCH}, not {n!r}")
    return n


def _s(value: bytes | str | None) -> str | None:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _i(value: Any) -> int:
    return int(value) if value is not None else 0


# ---------------------------------------------------------------------------------- tokens

_STATE = re.compile(rb"(\d+):(\d+):(\d+):(\d+):")


def split_item(value: bytes) -> tuple[int, int, int, bytes]:
    """(incarnation, priority, sequence, payload) of an item's value in the ``items`` hash
    (``lua/includes/record.lua``; for tools and tests that read keys directly)."""
    inc, prio, seq, payload = value.split(b":", 3)
    return int(inc), int(prio), int(seq), payload


def split_state(state: bytes) -> tuple[int, int, int, bytes, bytes]:
    """(incarnation, attempts, token, holder, last error) of an item's lease state, the field
    ``"\x01" + id`` of the ``items`` hash (``lua/includes/record.lua``)."""
    m = _STATE.match(state)
    if m is None:
        raise ValueError(f"not a lease state: {state[:60]!r}")
    at, hl = m.end(), int(m.group(4))
    return (int(m.group(1)), int(m.group(2)), int(m.group(3)), state[at : at + hl],
            state[at + hl :])


def new_id() -> str:
    """A generated item id: 26 hex digits (104 random bits). Shorter than a uuid4's 32, so that
    each of the two copies a pending item keeps (its ``items`` field and its ``pending`` member)
    fits a 32-byte allocation on the server."""
    return os.urandom(13).hex()


def make_token(item_id: str, inc: int | str, tok: int | str) -> str:
    """The token of lease ``tok`` of incarnation ``inc`` of ``item_id``."""
    return token_of(item_id, int(inc), int(tok))


Target = tuple[str, int, int]  # (id, incarnation or 0, token or 0)


def target(lease: Lease | str, token: str | None = None) -> Target:
    """The (id, inc, tok) a finishing call names; a bare id means any incarnation, no token."""
    if isinstance(lease, Lease):
        if token is None:
            return (lease.id, lease.inc, lease.lease_no)
        item_id = lease.id
    else:
        item_id = validate_id(lease)
    if token is None:
        return (item_id, 0, 0)
    if not isinstance(token, str):
        raise InvalidToken(f"token must be a str, not {type(token).__name__}")
    parts = token.split(".")
    if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
        raise InvalidToken(f"malformed lease token {token!r}")
    if parts[2] != f"{zlib.crc32(item_id.encode('utf-8')):08x}":
        raise InvalidToken(f"lease token {token!r} belongs to another item than {item_id!r}")
    return (item_id, int(parts[0]), int(parts[1]))


def fenced(lease: Lease | str, token: str | None = None) -> Target:
    """Validate a lease for a call that must name the current lease (extend, fail, requeue)."""
    t = target(lease, token)
    if t[1] == 0:
        raise InvalidToken("this call needs a Lease (or an id and its token)")
    return t


# ---------------------------------------------------------------------------------- add

Entry = tuple[str, bytes, int, int, bool]  # id, payload, priority, delay_ms, id was generated


def entry(cfg: Config, value: Any, item_id: str | None = None, delay: float | None = None,
          priority: int = 0, headers: Mapping[str, str] | None = None) -> Entry:
    """Validate and encode one item to add (an :class:`Item`'s own headers win over
    ``headers``); a content id is taken from the payload without its headers."""
    if isinstance(value, Item):
        own = value.headers
        value, item_id, delay, priority = value.data, value.id, value.delay, value.priority
        if own:
            headers = {**headers, **own} if headers else own
    payload = cfg.codec.encode(value)
    if isinstance(priority, bool) or not isinstance(priority, int) or not (
        -MAX_PRIORITY <= priority <= MAX_PRIORITY
    ):
        raise InvalidArgument(f"priority must be an int from -1000 to 1000, not {priority!r}")
    delay_ms = 0 if delay is None else ms(delay, "delay", zero=True)
    if item_id is not None:
        item_id, generated = validate_id(item_id), False
    elif cfg.unique_by_content:
        item_id, generated = content_id(payload), False
    else:
        item_id, generated = new_id(), True
    if headers:
        payload = wrap(headers, payload)
    return (item_id, payload, priority, delay_ms, generated)


def unwrap(stored: bytes) -> tuple[bytes, bytes]:
    """(headers' JSON or b"", payload without headers) of a stored payload read from the
    server. A malformed envelope is left whole, so decoding it fails where the data is read
    (a lease is never lost to a parse error)."""
    if stored[:1] != HEADERS:
        return b"", stored
    try:
        return split(stored)
    except SerializationError:
        return b"", stored


def headers_of(stored: bytes | None) -> tuple[bytes | None, Mapping[str, str]]:
    """(payload without headers, headers as a dict) for the read-only snapshots; unreadable
    headers read as none."""
    if stored is None or stored[:1] != HEADERS:
        return stored, {}
    blob, inner = unwrap(stored)
    try:
        return inner, dict(parse_headers(blob))
    except SerializationError:
        return inner, {}


def once(cfg: Config, keys: Sequence[str]) -> list[str]:
    """``keys`` and a fresh call key: the script stores its reply there, so a repeat of this
    same call (a retry after a lost reply) answers as the first run did instead of running
    again. For the calls no lease token identifies."""
    return [*keys, cfg.keys.call(os.urandom(9).hex())]


def add(cfg: Config, entries: Sequence[Entry]) -> Call[list[AddResult]]:
    args: list[Arg] = [len(entries)]
    for item_id, payload, prio, delay_ms, _ in entries:
        args += (item_id, payload, prio, delay_ms)

    def parse(reply: list[int]) -> list[AddResult]:
        out = []
        for (item_id, _, _, _, generated), code in zip(entries, reply, strict=True):
            # A generated id can only exist if an earlier try of this very call added it
            # (a client retry after a lost reply), so that counts as added.
            added = code == 0 or generated
            out.append(AddResult(item_id, added, None if added else STATES.get(code)))
        return out

    return Call("add", once(cfg, cfg.keys.all_fixed), args, parse)


# ---------------------------------------------------------------------------------- lease

@dataclass(frozen=True, slots=True)
class Leased:
    """A lease reply: the items, the server's time, and when to look again if empty."""

    items: list[Lease]
    now_ms: int
    next_due_ms: int


def _parse_leased(cfg: Config, reply: Sequence[Any], start: int) -> Leased:
    now, next_due, deadline = int(reply[start]), int(reply[start + 1]), int(reply[start + 2])
    name, codec = cfg.keys.name, cfg.codec
    items = []
    for i in range(start + 3, len(reply), 4):
        inc, _, _, payload = reply[i + 1].split(b":", 3)  # the stored "inc:prio:seq:" + payload
        hraw = b""
        if payload[:1] == HEADERS:
            hraw, payload = unwrap(payload)
        items.append(Lease(name, reply[i].decode("utf-8"), payload, int(reply[i + 2]), int(inc),
                           int(reply[i + 3]), deadline, codec, hraw, now))
    return Leased(items, now, next_due)


def lease(cfg: Config, n: int, seconds: float | None) -> Call[Leased]:
    lease_ms = cfg.lease_ms if seconds is None else ms(seconds, "lease")
    args: list[Arg] = [*cfg.policy, count(n), lease_ms]
    if cfg.holder:
        args.append(cfg.holder)
    return Call("lease", cfg.keys.all_fixed, args, lambda reply: _parse_leased(cfg, reply, 0))


def resync(cfg: Config) -> Call[None]:
    """A lease of nothing: maintenance only, and the wake key set again if work is ready."""
    return Call("lease", cfg.keys.all_fixed, [*cfg.policy, 0, 1000], lambda reply: None)


def deadline(timeout: float | None) -> float | None:
    """The monotonic time at which a wait of ``timeout`` seconds ends (None: never)."""
    if timeout is None:
        return None
    return time.monotonic() + ms(timeout, "timeout", zero=True) / 1000.0


def remaining(end: float | None) -> float | None:
    return None if end is None else end - time.monotonic()


def block_for(got: Leased, remaining: float | None, cap: float) -> float | None:
    """How long an empty-handed blocking lease may wait for the wake key (None: give up)."""
    wait = cap if remaining is None else min(cap, remaining)
    if got.next_due_ms > 0:
        wait = min(wait, max(0.0, (got.next_due_ms - got.now_ms) / 1000.0))
    if remaining is not None and remaining <= 0:
        return None
    return max(wait, 0.0)


# ---------------------------------------------------------------------------------- finish

Done = tuple[Target, bytes | None, int]  # target, encoded result, result ttl ms


def done(cfg: Config, lease: Lease | str, token: str | None, result: Any,
         result_ttl: float | None) -> Done:
    """Validate one completion."""
    t = target(lease, token)
    if result is None:
        return (t, None, 0)
    ttl = ms(cfg.result_ttl if result_ttl is None else result_ttl, "result_ttl")
    return (t, cfg.codec.encode(result), ttl)


def complete(cfg: Config, items: Sequence[Done], next_n: int = 0,
             seconds: float | None = None) -> Call[tuple[list[bool], Leased | None]]:
    keys = list(cfg.keys.all_fixed)
    lease_ms = cfg.lease_ms if seconds is None else ms(seconds, "lease")
    args: list[Arg] = [*cfg.policy, next_n, lease_ms, len(items)]
    for (item_id, inc, tok), result, ttl in items:
        args += (item_id, inc, tok, result or b"", ttl if result is not None else 0)
        if result is not None:
            keys.append(cfg.keys.result(item_id))
    m = len(items)
    if next_n > 0 and cfg.holder:
        args.append(cfg.holder)
    if any(tok == 0 for (_, _, tok), _, _ in items):
        keys = once(cfg, keys)  # a bare id: no token tells a repeat from a first run

    def parse(reply: list[Any]) -> tuple[list[bool], Leased | None]:
        flags = [code != 0 for code in reply[:m]]
        return flags, (_parse_leased(cfg, reply, m) if next_n > 0 else None)

    return Call("complete", keys, args, parse)


def extend(cfg: Config, leases: Sequence[Target], seconds: float | None) -> Call[list[int]]:
    args: list[Arg] = [ms(cfg.lease if seconds is None else seconds, "lease"), len(leases)]
    for t in leases:
        args += t
    return Call("extend", cfg.keys.all_fixed, args, lambda reply: [int(x) for x in reply])


FAIL_CODES = {1: FailOutcome.RETRIED, 2: FailOutcome.DEAD, 3: FailOutcome.REPEATED}


def failure(cfg: Config, lease: Lease | str, token: str | None, error: object,
            retry_in: float | None) -> tuple[Target, str, int]:
    """Validate one failure; the retry delay defaults to the queue's backoff for the attempt."""
    t = fenced(lease, token)
    if retry_in is None:
        attempt = lease.attempt if isinstance(lease, Lease) else 1
        retry_ms = ms(cfg.backoff.delay(attempt), "backoff", zero=True)
    else:
        retry_ms = ms(retry_in, "retry_in", zero=True)
    text = error if isinstance(error, str) else repr(error)
    return (t, text[:4000], retry_ms)


def fail(cfg: Config, items: Sequence[tuple[Target, str, int]]) -> Call[list[FailOutcome]]:
    args: list[Arg] = [*cfg.policy, len(items)]
    for t, text, retry_ms in items:
        args += (*t, text, retry_ms)
    return Call("fail", cfg.keys.all_fixed, args,
                lambda reply: [FAIL_CODES.get(int(x), FailOutcome.STALE) for x in reply])


class Keep:
    """The default of ``requeue(data=...)``: keep the stored payload."""

    def __repr__(self) -> str:
        return "KEEP"


KEEP: Any = Keep()
Giveback = tuple[Target, int, bytes]  # target, delay ms, new payload (b"": keep)


def giveback(cfg: Config, lease: Lease | str, token: str | None, delay: float,
             data: Any = KEEP) -> Giveback:
    """Validate one requeue: a Lease (or id and token) names that lease; a bare id names
    whatever lease the item has now. A new payload keeps a Lease's headers."""
    payload = b"" if data is KEEP else cfg.codec.encode(data)
    if payload and isinstance(lease, Lease):
        payload = rewrap(lease._hraw, payload)
    return (target(lease, token), ms(delay, "delay", zero=True), payload)


def requeue(cfg: Config, items: Sequence[Giveback]) -> Call[list[bool]]:
    args: list[Arg] = [len(items)]
    for t, delay_ms, payload in items:
        args += (*t, delay_ms, payload)
    keys: Sequence[str] = cfg.keys.all_fixed
    if any(t[2] == 0 for t, _, _ in items):
        keys = once(cfg, keys)  # a bare id: no token tells a repeat from a first run
    return Call("requeue", keys, args, lambda reply: [x != 0 for x in reply])


# ---------------------------------------------------------------------------------- inspect

def ids(values: Iterable[str]) -> list[str]:
    return [validate_id(v) for v in values]


def remove(cfg: Config, item_ids: Sequence[str]) -> Call[list[bool]]:
    return Call("remove", once(cfg, cfg.keys.all_fixed), list(item_ids),
                lambda reply: [x == 1 for x in reply])


def state(cfg: Config, item_id: str) -> Call[ItemState]:
    item_id = validate_id(item_id)

    def parse(r: list[Any]) -> ItemState:
        code, score = int(r[1]), int(float(r[3] or 0))
        st = STATES.get(code, State.UNKNOWN if code == 0 else State.PENDING)
        payload, headers = headers_of(r[10] if len(r) > 10 and isinstance(r[10], bytes)
                                      else None)
        return ItemState(
            id=item_id, state=st, attempts=_i(r[2]), priority=_i(r[5]),
            deadline_ms=score if st is State.LEASED else None,
            due_ms=score if st is State.DELAYED else None,
            dead_since_ms=score if st is State.DEAD else None,
            last_error=_s(r[7]), has_result=r[8] == 1,
            result=cfg.codec.decode(r[9]) if r[8] == 1 else None, now_ms=int(r[0]),
            payload=payload, headers=headers,
            holder=(_s(r[11]) or None) if st is State.LEASED and len(r) > 11 else None,
        )

    keys = [*cfg.keys.all_fixed, cfg.keys.result(item_id)]
    return Call("state", keys, [item_id], parse)


# meta fields that are bookkeeping, not lifetime counters
_META_INTERNAL = ("seq", "due", "clock_offset", "clock_fixed")


def stats(cfg: Config) -> Call[Stats]:
    def parse(r: list[Any]) -> Stats:
        meta = {_s(r[i]) or "": int(r[i + 1]) for i in range(7, len(r) - 1, 2)}
        for internal in _META_INTERNAL:
            meta.pop(internal, None)
        return Stats(cfg.keys.name, int(r[1]), int(r[2]), int(r[3]), int(r[4]), int(r[5]),
                     int(r[6]), meta, int(r[0]))

    return Call("stats", cfg.keys.all_fixed, [], parse)


PEEKABLE = ("pending", "delayed", "leased", "dead")


def peek(cfg: Config, which: str, start: int, n: int) -> Call[tuple[int, list[Peeked]]]:
    if which not in PEEKABLE:
        raise InvalidArgument(f"can peek at {', '.join(PEEKABLE)}, not {which!r}")
    if isinstance(start, bool) or not isinstance(start, int) or start < 0:
        raise InvalidArgument(f"start must be an int >= 0, not {start!r}")

    def parse(r: list[Any]) -> tuple[int, list[Peeked]]:
        rows = []
        for i in range(1, len(r), 9):
            payload, headers = headers_of(r[i + 1])
            rows.append(Peeked(r[i].decode("utf-8"), payload or b"", int(r[i + 2]),
                               int(r[i + 3]), float(r[i + 4]), _s(r[i + 5]), int(r[i + 6]),
                               int(r[i + 7]), cfg.codec, headers, _s(r[i + 8]) or None))
        return int(r[0]), rows

    return Call("peek", cfg.keys.all_fixed, [which, start, count(n)], parse)


def purge(cfg: Config) -> Call[int]:
    return Call("purge", once(cfg, cfg.keys.all_fixed), [], int)


def sweep(cfg: Config, limit: int) -> Call[tuple[int, int]]:
    return Call("sweep", cfg.keys.all_fixed, [*cfg.policy, count(limit, "limit")],
                lambda r: (int(r[0]), int(r[1])))


def dead_op(cfg: Config, script: str, item_ids: Sequence[str] | None,
            limit: int) -> Call[int]:
    """dead_requeue / dead_purge of the given ids, or of up to ``limit`` oldest when None."""
    args: list[Arg] = ["all", count(limit, "limit")] if item_ids is None else ["ids", *item_ids]
    return Call(script, once(cfg, cfg.keys.all_fixed), args, int)


# ---------------------------------------------------------------------------------- coalescing

def per_entry(call: Call[tuple[list[bool], Leased | None]]) -> Call[list[bool]]:
    """A complete call whose parse returns only the per-item flags."""
    return Call(call.script, call.keys, call.args, lambda reply: call.parse(reply)[0])


def lease_split(cfg: Config, wants: Sequence[int], seconds: float | None) -> Call[list[Leased]]:
    """One lease call serving several callers: caller k gets the next ``wants[k]`` items."""
    call = lease(cfg, min(sum(wants), MAX_BATCH), seconds)

    def parse(reply: Any) -> list[Leased]:
        got, out, i = call.parse(reply), [], 0
        for n in wants:
            out.append(Leased(got.items[i : i + n], got.now_ms, got.next_due_ms))
            i += n
        return out

    return Call(call.script, call.keys, call.args, parse)
