"""Every Redis key leaseq uses, and nothing else.

All keys of one queue share the hash tag ``{name}`` so that a queue lives in one cluster slot and
a script can declare every key it touches. The layout, for queue ``emails``:

================================  ======  ====================================================
key                               type    holds
================================  ======  ====================================================
``leaseq:{emails}:meta``          HASH    ``seq`` counter, lifetime counters, ``due`` bound
``leaseq:{emails}:pending``       ZSET    ready ids, score = priority band + sequence (FIFO)
``leaseq:{emails}:delayed``       ZSET    ids waiting for a due time, score = due (ms)
``leaseq:{emails}:leased``        ZSET    leased ids, score = lease deadline (ms)
``leaseq:{emails}:dead``          ZSET    dead-lettered ids, score = time of death (ms)
``leaseq:{emails}:items``         HASH    id -> record, holder, last error and payload
``leaseq:{emails}:acked``         ZSET    recent finishing lease tokens -> time (ms), trimmed
``leaseq:{emails}:wake``          ZSET    one member while ready work exists; BZPOPMIN target
``leaseq:{emails}:result:<id>``   STRING  kept result of a completed item, with a TTL
================================  ======  ====================================================
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import InvalidId, InvalidQueueName

PREFIX = "leaseq"
MAX_NAME_LENGTH = 200
MAX_ID_LENGTH = 1024
META_SCAN_PATTERN = f"{PREFIX}:{{*}}:meta"


def _has_control(text: str) -> bool:
    return any(ord(ch) < 32 or ord(ch) == 127 for ch in text)


def validate_name(name: object) -> str:
    """Return ``name`` if it can name a queue; raise :class:`InvalidQueueName` otherwise."""
    if not isinstance(name, str):
        raise InvalidQueueName(f"queue name must be a str, not {type(name).__name__}")
    if not name:
        raise InvalidQueueName("queue name must not be empty")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidQueueName(f"queue name is longer than {MAX_NAME_LENGTH} characters")
    if "{" in name or "}" in name:
        raise InvalidQueueName(f"queue name must not contain braces: {name!r}")
    if _has_control(name):
        raise InvalidQueueName(f"queue name must not contain control characters: {name!r}")
    return name


def validate_id(item_id: object) -> str:
    """Return ``item_id`` if it can be an item id; raise :class:`InvalidId` otherwise."""
    if not isinstance(item_id, str):
        raise InvalidId(f"item id must be a str, not {type(item_id).__name__}")
    if not item_id:
        raise InvalidId("item id must not be empty")
    if len(item_id) > MAX_ID_LENGTH:
        raise InvalidId(f"item id is longer than {MAX_ID_LENGTH} characters")
    if _has_control(item_id):
        raise InvalidId(f"item id must not contain control characters: {item_id!r}")
    try:
        item_id.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidId(f"item id is not valid unicode: {item_id!r}") from exc
    return item_id


def name_from_meta_key(key: str) -> str | None:
    """The queue name inside a ``leaseq:{name}:meta`` key, or None for any other key."""
    head, tail = f"{PREFIX}:{{", "}:meta"
    if key.startswith(head) and key.endswith(tail) and len(key) > len(head) + len(tail):
        return key[len(head) : -len(tail)]
    return None


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """The key names of one queue (see the module docstring for the layout)."""

    name: str
    meta: str
    pending: str
    delayed: str
    leased: str
    dead: str
    items: str
    acked: str
    wake: str
    all_fixed: tuple[str, ...] = ()  # every key but the per-item result keys, in script order

    def __post_init__(self) -> None:
        fixed = (self.meta, self.pending, self.delayed, self.leased, self.dead, self.items,
                 self.acked, self.wake)
        object.__setattr__(self, "all_fixed", fixed)

    @classmethod
    def of(cls, name: str) -> QueueKeys:
        """Build the keys of queue ``name`` (validated)."""
        base = f"{PREFIX}:{{{validate_name(name)}}}:"
        return cls(
            name=name,
            meta=base + "meta",
            pending=base + "pending",
            delayed=base + "delayed",
            leased=base + "leased",
            dead=base + "dead",
            items=base + "items",
            acked=base + "acked",
            wake=base + "wake",
        )

    def result(self, item_id: str) -> str:
        """Key of the kept result of ``item_id``."""
        return f"{PREFIX}:{{{self.name}}}:result:{item_id}"

    def call(self, call_id: str) -> str:
        """Key holding the reply of one call without a lease token, so that a repeat of that
        call (after a lost reply) answers as its first run did (``lua/includes/calls.lua``)."""
        return f"{PREFIX}:{{{self.name}}}:call:{call_id}"

    def extra(self, part: str) -> str:
        """A key of the queue's namespace for a facade's own bookkeeping (same hash tag)."""
        return f"{PREFIX}:{{{self.name}}}:{part}"
