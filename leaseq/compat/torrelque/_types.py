"""Torrelque's value types and errors, and the envelope leaseq stores around a task.

Envelope: a task is stored (as raw bytes, see :mod:`leaseq.codec`) as ``trq1`` + a compact JSON
header + ``\\n`` + the serialiser's bytes. The header holds what Torrelque keeps in its per-task
hash and leaseq's item record does not: ``to`` task timeout (s), ``et`` enqueue time, ``rc``
requeue count, ``lr`` last requeue time, ``ld`` last dequeue time. A kept result uses the same
envelope, with ``st`` (final status), ``rt`` (release time) and ``dc`` (dequeue count) added.
A payload without the magic (an item added through plain :mod:`leaseq`) reads as an empty header
and the whole payload as the body.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Callable
from typing import Any, NamedTuple

__all__ = [
    "TorrelqueError",
    "TorrelqueLookupError",
    "TorrelqueQueueStats",
    "TorrelqueTaskSerialiser",
    "TorrelqueTaskState",
    "TorrelqueTaskStatus",
    "TorrelqueTimeoutError",
]

MAGIC = b"trq1"


class TorrelqueError(Exception):
    """Base class of the errors Torrelque raises on purpose."""


class TorrelqueTimeoutError(TorrelqueError):
    """``dequeue`` or ``watch`` ran out of time."""


class TorrelqueLookupError(TorrelqueError):
    """The task is unknown (never existed, released without a result, result expired), or this
    instance cannot act on it (see ``Torrelque.requeue``)."""


class TorrelqueTaskStatus(enum.IntEnum):
    """Status of a task; COMPLETED and REJECTED are final."""

    PENDING = 0
    WORKING = 1
    DELAYED = 2
    COMPLETED = 3
    REJECTED = 4

    def isfinal(self) -> bool:
        """True for COMPLETED and REJECTED."""
        return self in (TorrelqueTaskStatus.COMPLETED, TorrelqueTaskStatus.REJECTED)


class TorrelqueQueueStats(NamedTuple):
    """Task counts of a queue: ``tasks`` is every unreleased task (pending + working +
    delayed, plus leaseq dead letters if the queue is also used through plain leaseq)."""

    tasks: int
    pending: int
    working: int
    delayed: int


class TorrelqueTaskState(NamedTuple):
    """What is known about a task. Times are UNIX seconds (floats); None when unknown."""

    status: TorrelqueTaskStatus
    enqueue_time: float | None
    timeout: float | None
    result: Any
    release_time: float | None
    dequeue_count: int
    requeue_count: int
    last_dequeue_time: float | None
    last_requeue_time: float | None


def _json_dumps(obj: Any) -> bytes:
    return json.dumps(obj).encode("utf-8")


def _json_loads(data: bytes) -> Any:
    return json.loads(data)


class TorrelqueTaskSerialiser(NamedTuple):
    """How task data and results become bytes: ``dumps(obj) -> bytes``, ``loads(bytes)``."""

    dumps: Callable[[Any], bytes]
    loads: Callable[[bytes], Any]


DEFAULT_SERIALISER = TorrelqueTaskSerialiser(_json_dumps, _json_loads)


def pack(meta: dict[str, Any], body: bytes) -> bytes:
    """The envelope of ``body`` with header ``meta``."""
    header = json.dumps(meta, separators=(",", ":"), allow_nan=False).encode("ascii")
    return MAGIC + header + b"\n" + body


def unpack(raw: bytes) -> tuple[dict[str, Any], bytes]:
    """(header, body) of an envelope; ``({}, raw)`` for bytes that are not one."""
    if raw.startswith(MAGIC):
        end = raw.find(b"\n", len(MAGIC))
        if end > 0:
            try:
                meta = json.loads(raw[len(MAGIC) : end])
            except ValueError:
                meta = None
            if isinstance(meta, dict):
                return meta, raw[end + 1 :]
    return {}, raw


def num(meta: dict[str, Any], key: str) -> float | None:
    """A finite number from a header, else None (headers written by others are not trusted)."""
    value = meta.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def count(meta: dict[str, Any], key: str) -> int:
    value = num(meta, key)
    return int(value) if value is not None and value >= 0 else 0
