"""The values leaseq calls return. Plain data: no I/O, no reference to a connection."""

from __future__ import annotations

import enum
import random
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .codec import NO_HEADERS, Codec, parse_headers


class State(enum.StrEnum):
    """Where an item is."""

    PENDING = "pending"
    DELAYED = "delayed"
    LEASED = "leased"
    DEAD = "dead"
    COMPLETED = "completed"
    UNKNOWN = "unknown"


class FailOutcome(enum.StrEnum):
    """What :meth:`Queue.fail` did. Only STALE is falsy."""

    RETRIED = "retried"
    DEAD = "dead"
    REPEATED = "repeated"
    STALE = "stale"

    def __bool__(self) -> bool:
        return self is not FailOutcome.STALE


def token_of(item_id: str, inc: int, lease_no: int) -> str:
    """A lease token: incarnation, lease number and a checksum of the id it belongs to."""
    return f"{inc}.{lease_no}.{zlib.crc32(item_id.encode('utf-8')):08x}"


class Lease:
    """A leased item: its id, payload, attempt number and the token that fences it.

    ``token`` names the item's incarnation and this lease (``"<inc>.<lease>.<crc of id>"``): pass
    it, with the id, to finish the item from another process. ``deadline_ms`` and
    ``leased_ms`` (when the server granted the lease; 0 if unknown) are on the server's clock.
    ``payload`` is the stored value without its headers. ``data`` and ``headers`` are decoded on
    first access (a payload that cannot be decoded raises
    :class:`~leaseq.errors.SerializationError` there, so a worker can fail the item instead of
    losing it).
    """

    __slots__ = ("_codec", "_data", "_headers", "_hraw", "attempt", "deadline_ms", "id", "inc",
                 "lease_no", "leased_ms", "payload", "queue")

    _MISSING: Any = object()

    def __init__(
        self, queue: str, id: str, payload: bytes, attempt: int, inc: int, lease_no: int,
        deadline_ms: int, codec: Codec, headers: bytes = b"", leased_ms: int = 0,
    ) -> None:
        self.queue = queue
        self.id = id
        self.payload = payload
        self.attempt = attempt
        self.inc = inc
        self.lease_no = lease_no
        self.deadline_ms = deadline_ms
        self.leased_ms = leased_ms
        self._codec = codec
        self._data: Any = Lease._MISSING
        self._hraw = headers
        self._headers: Mapping[str, str] | None = None

    @property
    def token(self) -> str:
        """The lease token (see the class docstring)."""
        return token_of(self.id, self.inc, self.lease_no)

    @property
    def data(self) -> Any:
        """The item's value, as added (bytes stay bytes)."""
        if self._data is Lease._MISSING:
            self._data = self._codec.decode(self.payload)
        return self._data

    @property
    def headers(self) -> Mapping[str, str]:
        """The headers the item was added with (read-only; empty when none)."""
        if self._headers is None:
            self._headers = parse_headers(self._hraw) if self._hraw else NO_HEADERS
        return self._headers

    def __repr__(self) -> str:
        return (
            f"Lease(queue={self.queue!r}, id={self.id!r}, attempt={self.attempt}, "
            f"token={self.token!r}, deadline_ms={self.deadline_ms})"
        )


@dataclass(frozen=True, slots=True)
class Item:
    """An item to add, for :meth:`Queue.add_many` (any other value there means ``Item(value)``)."""

    data: Any
    id: str | None = None
    delay: float | None = None
    priority: int = 0
    headers: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True)
class AddResult:
    """Outcome of adding one item. Truthy iff the item was added by this call.

    ``state`` is the state of the id that was already there when not added.
    """

    id: str
    added: bool
    state: State | None = None

    def __bool__(self) -> bool:
        return self.added


@dataclass(frozen=True, slots=True)
class ItemState:
    """Everything known about one item, read atomically."""

    id: str
    state: State
    attempts: int = 0
    priority: int = 0
    deadline_ms: int | None = None
    due_ms: int | None = None
    dead_since_ms: int | None = None
    last_error: str | None = None
    has_result: bool = False
    result: Any = None
    now_ms: int = 0
    payload: bytes | None = None  # the stored payload (without headers) while the item exists
    headers: Mapping[str, str] = field(default_factory=dict)  # the item's headers, if any
    holder: str | None = None  # while leased: who holds the lease, if it named itself


@dataclass(frozen=True, slots=True)
class Stats:
    """Sizes and lifetime counters of a queue, read in one round trip."""

    queue: str
    pending: int
    delayed: int
    leased: int
    dead: int
    delayed_due: int
    leases_expired: int
    counters: dict[str, int]
    now_ms: int

    def counter(self, name: str) -> int:
        """A lifetime counter (added, leased, completed, failed, retried, expired, dead,
        requeued, removed, purged, dead_purged); 0 if it never moved."""
        return self.counters.get(name, 0)


@dataclass(frozen=True, slots=True)
class Peeked:
    """An item seen without leasing it. ``score`` is the set's score: the pending order, the due
    time, the lease deadline or the time of death (ms, server clock)."""

    id: str
    payload: bytes
    attempts: int
    priority: int
    score: float
    last_error: str | None
    inc: int
    lease_no: int
    codec: Codec = field(repr=False, compare=False)
    headers: Mapping[str, str] = field(default_factory=dict)
    holder: str | None = None  # who took the latest lease, if it named itself (leased rows)

    @property
    def data(self) -> Any:
        return self.codec.decode(self.payload)

    @property
    def token(self) -> str | None:
        """The token of the item's latest lease (for a leased item: its current one), or None
        if it was never leased. Lets an operator finish or fail a lease it does not hold."""
        return token_of(self.id, self.inc, self.lease_no) if self.lease_no else None


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with jitter: attempt k waits about ``base * factor**(k-1)``.

    The delay is drawn uniformly from ``[(1 - jitter) * d, d]`` where ``d`` is capped at
    ``maximum`` seconds, so retries of many items failing together spread out.
    """

    base: float = 1.0
    factor: float = 2.0
    maximum: float = 300.0
    jitter: float = 0.5

    def delay(self, attempt: int) -> float:
        d = min(self.maximum, self.base * self.factor ** max(attempt - 1, 0))
        return d * (1.0 - self.jitter * random.random())
