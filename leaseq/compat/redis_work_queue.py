"""Drop-in, wire-compatible replacement for MeVitae's Python ``redis-work-queue``.

Change ``from redis_work_queue import KeyPrefix, Item, WorkQueue`` to
``from leaseq.compat.redis_work_queue import KeyPrefix, Item, WorkQueue``; nothing else changes.

The Redis layout is the original's, byte for byte, because Go, Rust, TypeScript and C# workers of
that project share the same queues. For ``WorkQueue(KeyPrefix("jobs"))``:

=================================  ======  ===============================================
key                                type    holds
=================================  ======  ===============================================
``jobs:queue``                     LIST    waiting ids: LPUSH to add, taken from the right
``jobs:processing``                LIST    leased ids (and abandoned ones until a clean)
``jobs:item:<id>``                 STRING  raw data; the item exists exactly while this does
``jobs:leased_by_session:<id>``    STRING  the lease, expiring after the lease time
=================================  ======  ===============================================

Each state change runs as one Lua script (``leaseq/lua/compat/rwq_*.lua``), which removes the
original's races inside that layout; see ``docs/compat/redis-work-queue.md``. The layout has no
hash tag, so this works on a single Redis/Valkey node only, like the original.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any, cast

import redis
from redis import exceptions as rex
from redis.client import NEVER_DECODE, Pipeline
from redis.cluster import RedisCluster

from leaseq import scripts
from leaseq.errors import InvalidArgument, LeaseqConnectionError

__all__ = ["Item", "KeyPrefix", "WorkQueue"]

# Ids popped per lease script call before handing control back (bounds the time spent in Lua
# dropping ghost ids; the Python side simply calls again).
_MAX_POPS = 100
# How far from the head of processing the lease script looks for an id it moved with BLMOVE.
_CLAIM_WINDOW = 1000
# Ids read from processing per light_clean script call.
_CLEAN_WINDOW = 200
# Candidates checked per deep_clean script call (each costs O(queue + processing) in Lua).
_DEEP_BATCH = 16
# Longest single blocking wait; a wait longer than this is a loop of such waits.
_MAX_WAIT_SLICE = 1.0

# rwq_light_clean reply codes.
_LEASED, _REQUEUED, _GHOST, _CANDIDATE, _GONE = 0, 1, 2, 3, 4


def _b(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _s(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _chunks(seq: Sequence[bytes], size: int) -> Iterator[Sequence[bytes]]:
    for start in range(0, len(seq), size):
        yield seq[start : start + size]


def _glob_escape(raw: bytes) -> bytes:
    out = bytearray()
    for byte in raw:
        if byte in b"*?[]\\":
            out += b"\\"
        out.append(byte)
    return bytes(out)


class KeyPrefix(str):
    """A string put before a name to make a key: ``KeyPrefix("cv:").of("1") == "cv:1"``."""

    __slots__ = ()

    def of(self, name: str) -> str:
        """The key for ``name``: plain concatenation, as a ``str``."""
        return str(self) + name

    def concat(self, other: str) -> KeyPrefix:
        """A new prefix: this one followed by ``other``."""
        return KeyPrefix(str(self) + other)


class Item:
    """An item of a work queue: an id (``uuid4().hex`` unless given) and raw data bytes."""

    __slots__ = ("_data", "_id")

    def __init__(self, data: bytes | bytearray | memoryview | str, id: str | None = None) -> None:
        if isinstance(data, str):
            self._data = data.encode("utf-8")
        elif isinstance(data, bytes | bytearray | memoryview):
            self._data = bytes(data)
        else:
            raise TypeError(f"item data must be bytes or str, not {type(data).__name__}")
        if id is None:
            id = uuid.uuid4().hex
        elif not isinstance(id, str):
            raise TypeError(f"item id must be a str, not {type(id).__name__}")
        self._id = id

    @staticmethod
    def from_json_data(data: Any, id: str | None = None) -> Item:
        """An item whose data is ``data`` serialized as compact JSON (``[1,2,3]``)."""
        return Item(json.dumps(data, separators=(",", ":")), id=id)

    def data(self) -> bytes:
        """The item's data, as bytes."""
        return self._data

    def data_json(self) -> Any:
        """The item's data, parsed as JSON."""
        return json.loads(self._data)

    def id(self) -> str:
        """The item's id."""
        return self._id

    def __repr__(self) -> str:
        more = "..." if len(self._data) > 40 else ""
        return f"Item(id={self._id!r}, data={self._data[:40]!r}{more})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Item):
            return NotImplemented
        return self._id == other._id and self._data == other._data

    def __hash__(self) -> int:
        return hash((self._id, self._data))


class _Raw:
    """The ``execute_command`` that :func:`leaseq.scripts.run` needs, over a user's client.

    Replies come back as raw bytes whatever the client's ``decode_responses``. With ``once``, the
    command is not sent again after a connection error once it may have reached the server: a
    retried ``add_item``/``complete`` would answer False to the caller whose first attempt did
    the work, so a lost reply is raised as :class:`LeaseqConnectionError` instead.
    """

    __slots__ = ("_db", "_once")

    def __init__(self, db: redis.Redis, once: bool = False) -> None:
        if isinstance(db, RedisCluster):
            raise InvalidArgument(
                "the redis-work-queue layout has no hash tag: it needs a single node, not a cluster"
            )
        self._db: Any = db  # redis-py's connection methods are untyped
        self._once = once

    def execute_command(self, *args: Any) -> Any:
        db = self._db
        if not self._once or getattr(db, "connection", None) is not None:
            # A single-connection client keeps its own lock (and retry policy).
            return db.execute_command(*args, **{NEVER_DECODE: True})
        pool = db.connection_pool
        conn = pool.get_connection()
        try:
            try:
                conn.send_command(*args)
            except (rex.ConnectionError, rex.TimeoutError):
                # Nothing complete reached the server: sending again on a new socket is safe.
                conn.disconnect()
                conn.send_command(*args)
            try:
                return db.parse_response(conn, args[0], **{NEVER_DECODE: True})
            except (rex.ConnectionError, rex.TimeoutError) as exc:
                conn.disconnect()
                raise LeaseqConnectionError(
                    f"the reply to {args[0]} was lost ({exc}); the call may or may not have "
                    "taken effect, and it was not sent again"
                ) from exc
        finally:
            pool.release(conn)


def _run(raw: _Raw, name: str, keys: Sequence[bytes], args: Sequence[scripts.Arg]) -> Any:
    """``scripts.run`` with bytes keys (ids are kept as the server's bytes end to end).

    redis-py sends bytes keys as they are; ``scripts.run`` only annotates its keys as ``str``.
    """
    return scripts.run(raw, name, cast("Sequence[str]", keys), args)


def _command(raw: _Raw, *args: Any) -> Any:
    """A plain command through ``raw``, with redis-py errors mapped to leaseq's."""
    try:
        return raw.execute_command(*args)
    except Exception as exc:
        mapped = scripts.translate(exc)
        if mapped is exc:
            raise
        raise mapped from exc


def _seconds(value: float, what: str, *, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidArgument(f"{what} must be a number of seconds, not {type(value).__name__}")
    seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0 or (positive and seconds == 0):
        raise InvalidArgument(f"{what} must be {'> 0' if positive else '>= 0'}, not {value!r}")
    return seconds


class WorkQueue:
    """A work queue in the MeVitae redis-work-queue layout, under the key prefix ``name``.

    ``clean_grace`` (seconds; not in the original) is how long an id must stay without a lease
    before :meth:`light_clean` or :meth:`deep_clean` puts it back: a worker of any language that
    has just moved an id to processing takes a round trip or two to set its lease, and must not
    see its item handed to someone else meanwhile. 0 gives the original's behaviour.
    """

    def __init__(self, name: KeyPrefix | str, *, clean_grace: float = 1.0) -> None:
        prefix = KeyPrefix(name)
        self._session = uuid.uuid4().hex
        self._queue_key = _b(prefix.of(":queue"))
        self._processing_key = _b(prefix.of(":processing"))
        self._item_prefix = _b(prefix.of(":item:"))
        self._lease_prefix = _b(prefix.of(":leased_by_session:"))
        self._clean_grace = _seconds(clean_grace, "clean_grace", positive=False)

    # -- adding ------------------------------------------------------------------------------

    def add_item(self, db: redis.Redis, item: Item) -> bool:
        """Add ``item``; False (and nothing changed) if an item with its id already exists.

        Atomic (one script); a lost reply raises :class:`LeaseqConnectionError` rather than being
        retried into a wrong False.
        """
        item_id = _b(item.id())
        reply = _run(
            _Raw(db, once=True),
            "compat/rwq_add",
            [self._queue_key, self._item_prefix + item_id],
            [item_id, item.data()],
        )
        return int(reply) == 1

    def add_unique_item(self, db: redis.Redis, item: Item) -> None:
        """Add ``item``, whose id the caller knows to be new.

        Runs the same atomic script as :meth:`add_item` (which is safe to retry), so a broken
        promise leaves the existing item alone instead of duplicating its id.
        """
        item_id = _b(item.id())
        _run(
            _Raw(db),
            "compat/rwq_add",
            [self._queue_key, self._item_prefix + item_id],
            [item_id, item.data()],
        )

    def add_unique_item_to_pipeline(self, pipeline: Pipeline, item: Item) -> None:
        """Queue the commands adding ``item`` (id known to be new) on ``pipeline``: SET + LPUSH.

        Atomic if the pipeline is transactional (the default); otherwise the two commands run
        back to back, like the Go client's, and the cleaners' grace covers the gap.
        """
        item_id = _b(item.id())
        pipeline.set(self._item_prefix + item_id, item.data())
        pipeline.lpush(self._queue_key, item_id)

    # -- leasing -----------------------------------------------------------------------------

    def lease(
        self, db: redis.Redis, lease_secs: float, block: bool = True, timeout: float = 0
    ) -> Item | None:
        """Lease an item for ``lease_secs`` seconds (fractions allowed), or return None.

        With ``block``, wait up to ``timeout`` seconds (0 = forever) for an item; without it,
        return None at once when no item is waiting. Ghost ids (no data) are dropped on the way.
        """
        lease_ms = max(1, round(_seconds(lease_secs, "lease_secs", positive=True) * 1000))
        wait = _seconds(timeout, "timeout", positive=False)
        deadline = time.monotonic() + wait if block and wait > 0 else None
        raw = _Raw(db)
        claim = b""
        while True:
            keys = [self._queue_key, self._processing_key]
            if claim:
                keys += [self._item_prefix + claim, self._lease_prefix + claim]
            reply = _run(
                raw,
                "compat/rwq_lease",
                keys,
                [
                    self._item_prefix,
                    self._lease_prefix,
                    lease_ms,
                    self._session,
                    _MAX_POPS,
                    claim,
                    _CLAIM_WINDOW,
                ],
            )
            status = int(reply[0])
            if status == 1:
                return Item(reply[2], id=_s(reply[1]))
            claim = b""
            if status == 2:
                continue
            if not block:
                return None
            moved = self._wait(raw, db, deadline)
            if moved is None:
                return None
            claim = moved

    def _wait(self, raw: _Raw, db: redis.Redis, deadline: float | None) -> bytes | None:
        """Block until an id can be moved from queue to processing; return it (None: timeout).

        Blocking commands cannot run inside a script, so the id is moved here and leased by the
        next script call (claim mode). Waits in slices shorter than the client's socket_timeout.
        """
        slice_len = _MAX_WAIT_SLICE
        socket_timeout = db.connection_pool.connection_kwargs.get("socket_timeout")
        if socket_timeout:
            slice_len = min(slice_len, float(socket_timeout) / 2)
        while True:
            step = slice_len
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                step = min(step, left)
            # The server counts in whole ms and reads 0 as "forever": never send less than 1 ms.
            step = max(step, 0.001)
            moved = _command(
                raw, "BLMOVE", self._queue_key, self._processing_key, "RIGHT", "LEFT", f"{step:.3f}"
            )
            if moved is not None:
                return bytes(moved)

    # -- completing --------------------------------------------------------------------------

    def complete(self, db: redis.Redis, item: Item) -> bool:
        """Mark ``item`` done and remove it; True only for the first caller to complete it.

        Atomic (one script). A lost reply raises :class:`LeaseqConnectionError` rather than being
        retried into a wrong False.
        """
        item_id = _b(item.id())
        reply = _run(
            _Raw(db, once=True),
            "compat/rwq_complete",
            [
                self._queue_key,
                self._processing_key,
                self._item_prefix + item_id,
                self._lease_prefix + item_id,
            ],
            [item_id],
        )
        return int(reply) == 1

    # -- cleaning ----------------------------------------------------------------------------

    def light_clean(self, db: redis.Redis) -> None:
        """Return abandoned items (in processing, lease gone) to the queue; drop ghost ids.

        First look: processing is read in windows from its oldest end, and one script per window
        drops ghosts and reports ids with data but no lease. Second look, ``clean_grace`` later:
        one script per chunk requeues those still without a lease, exactly once each.
        """
        raw = _Raw(db)
        total = int(_command(raw, "LLEN", self._processing_key))
        candidates: dict[bytes, None] = {}
        offset = 0
        for _ in range(total // _CLEAN_WINDOW + 2):
            ids = _command(
                raw, "LRANGE", self._processing_key, -(offset + _CLEAN_WINDOW), -(offset + 1)
            )
            if not ids:
                break
            ids = [bytes(i) for i in ids]
            codes = self._judge(raw, ids, reclaim=False)
            for item_id, code in zip(ids, codes, strict=True):
                if code == _CANDIDATE:
                    candidates[item_id] = None
            if len(ids) < _CLEAN_WINDOW:
                break
            offset += len(ids) - sum(1 for code in codes if code == _GHOST)
        if not candidates:
            return
        time.sleep(self._clean_grace)
        for chunk in _chunks(list(candidates), _CLEAN_WINDOW):
            self._judge(raw, chunk, reclaim=True)

    def _judge(self, raw: _Raw, ids: Sequence[bytes], *, reclaim: bool) -> list[int]:
        keys = [self._queue_key, self._processing_key]
        for item_id in ids:
            keys += [self._item_prefix + item_id, self._lease_prefix + item_id]
        reply = _run(raw, "compat/rwq_light_clean", keys, [b"1" if reclaim else b"0", *ids])
        return [int(code) for code in reply]

    def deep_clean(self, db: redis.Redis) -> None:
        """Requeue items whose id is in neither list and that hold no lease.

        Finds data keys with SCAN (never KEYS), compares them with a read of both lists, waits
        ``clean_grace``, then checks and requeues each candidate inside a script.
        """
        raw = _Raw(db)
        pattern = _glob_escape(self._item_prefix) + b"*"
        cut = len(self._item_prefix)
        found: set[bytes] = set()
        cursor = 0
        while True:
            cursor_raw, keys = _command(raw, "SCAN", cursor, "MATCH", pattern, "COUNT", 1000)
            found.update(bytes(key)[cut:] for key in keys)
            cursor = int(cursor_raw)
            if cursor == 0:
                break
        if found:
            listed = self._read_list(raw, self._processing_key)
            listed |= self._read_list(raw, self._queue_key)
            candidates = sorted(found - listed)
            if candidates:
                time.sleep(self._clean_grace)
                for chunk in _chunks(candidates, _DEEP_BATCH):
                    keys = [self._queue_key, self._processing_key]
                    for item_id in chunk:
                        keys += [self._item_prefix + item_id, self._lease_prefix + item_id]
                    _run(raw, "compat/rwq_deep_clean", keys, list(chunk))

    def _read_list(self, raw: _Raw, key: bytes, window: int = 1000) -> set[bytes]:
        seen: set[bytes] = set()
        start = 0
        while True:
            part = _command(raw, "LRANGE", key, start, start + window - 1)
            seen.update(bytes(i) for i in part)
            if len(part) < window:
                return seen
            start += window

    # -- counting ----------------------------------------------------------------------------

    def queue_len(self, db: redis.Redis) -> int:
        """How many ids are waiting (LLEN of the queue list)."""
        return int(_command(_Raw(db), "LLEN", self._queue_key))

    def processing(self, db: redis.Redis) -> int:
        """How many ids are in processing, abandoned ones included (LLEN)."""
        return int(_command(_Raw(db), "LLEN", self._processing_key))
