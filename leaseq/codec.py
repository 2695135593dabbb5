"""Payload encoding: JSON by default, raw bytes exactly, never pickle.

A stored payload is one tag byte and a body: ``B`` + the bytes as given (bytes, bytearray and
memoryview always round-trip exactly, whatever the serializer), or ``J`` + the serializer's
output for any other value. Decoding never executes code.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Protocol, runtime_checkable

from .errors import PayloadTooLarge, SerializationError

DEFAULT_MAX_PAYLOAD = 64 * 1024 * 1024
RAW = b"B"
SERIALIZED = b"J"


@runtime_checkable
class Serializer(Protocol):
    """Turns values into bytes and back. ``loads(dumps(v)) == v`` for the values it accepts."""

    def dumps(self, value: Any) -> bytes: ...

    def loads(self, data: bytes) -> Any: ...


class JsonSerializer:
    """Compact UTF-8 JSON; NaN and infinities are refused (they are not JSON)."""

    def dumps(self, value: Any) -> bytes:
        return json.dumps(
            value, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode("utf-8")

    def loads(self, data: bytes) -> Any:
        return json.loads(data)


class Codec:
    """Encodes payloads for storage and decodes them back, enforcing ``max_payload``."""

    __slots__ = ("max_payload", "serializer")

    def __init__(
        self, serializer: Serializer | None = None, max_payload: int = DEFAULT_MAX_PAYLOAD
    ) -> None:
        if serializer is not None and not isinstance(serializer, Serializer):
            raise TypeError("serializer must have dumps(value) -> bytes and loads(bytes)")
        self.serializer: Serializer = serializer or JsonSerializer()
        self.max_payload = max_payload

    def encode(self, value: Any) -> bytes:
        """The stored form of ``value``; raises SerializationError / PayloadTooLarge."""
        if isinstance(value, bytes | bytearray | memoryview):
            out = RAW + bytes(value)
        else:
            try:
                body = self.serializer.dumps(value)
            except (TypeError, ValueError, OverflowError, RecursionError) as exc:
                raise SerializationError(
                    f"cannot serialize {type(value).__name__}: {exc}"
                ) from exc
            if not isinstance(body, bytes):
                raise SerializationError("serializer.dumps must return bytes")
            out = SERIALIZED + body
        if len(out) - 1 > self.max_payload:
            raise PayloadTooLarge(
                f"payload is {len(out) - 1} bytes, over the limit of {self.max_payload}"
            )
        return out

    def decode(self, stored: bytes) -> Any:
        """The value stored as ``stored``; raises SerializationError if it cannot be read."""
        tag, body = stored[:1], stored[1:]
        if tag == RAW:
            return body
        if tag == SERIALIZED:
            try:
                return self.serializer.loads(body)
            except Exception as exc:
                raise SerializationError(f"cannot decode stored payload: {exc}") from exc
        raise SerializationError(f"stored payload has an unknown tag {tag!r}")


def content_id(stored: bytes) -> str:
    """An id derived from the encoded payload: equal payloads get equal ids."""
    return hashlib.sha256(stored).hexdigest()[:32]
