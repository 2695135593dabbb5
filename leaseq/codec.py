"""Payload encoding: JSON by default, raw bytes exactly, never pickle.

A stored payload is one tag byte and a body: ``B`` + the bytes as given (bytes, bytearray and
memoryview always round-trip exactly, whatever the serializer), or ``J`` + the serializer's
output for any other value. Decoding never executes code.

An item added with headers is stored in an envelope: ``H`` + the decimal length of a JSON
object of str -> str + ``:`` + that object + the inner payload (``B...`` or ``J...`` as above),
e.g. ``H20:{"traceparent":"…"}J{"to":"joe"}``. Scripts never look inside a payload; an item
without headers is stored exactly as before, and :func:`content_id` only ever hashes the inner
payload, so headers never change an id.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

from .errors import InvalidHeader, PayloadTooLarge, SerializationError

DEFAULT_MAX_PAYLOAD = 64 * 1024 * 1024
RAW = b"B"
SERIALIZED = b"J"
HEADERS = b"H"
MAX_HEADERS = 64  # headers per item
MAX_HEADER_NAME = 256  # characters
MAX_HEADER_VALUE = 8192  # characters
MAX_HEADER_BYTES = 32 * 1024  # the encoded JSON object
NO_HEADERS: Mapping[str, str] = MappingProxyType({})


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
        if tag == HEADERS:
            return self.decode(split(stored)[1])
        raise SerializationError(f"stored payload has an unknown tag {tag!r}")


def check_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """``headers`` as a plain dict, validated: at most 64 names of 1-256 characters without
    control characters, str values of at most 8192 characters. Raises InvalidHeader."""
    if not isinstance(headers, Mapping):
        raise InvalidHeader(
            f"headers must be a mapping of str to str, not {type(headers).__name__}")
    if len(headers) > MAX_HEADERS:
        raise InvalidHeader(f"at most {MAX_HEADERS} headers per item, not {len(headers)}")
    out: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not 0 < len(name) <= MAX_HEADER_NAME:
            raise InvalidHeader(
                f"a header name must be a str of 1-{MAX_HEADER_NAME} characters, not {name!r:.80}")
        if not name.isprintable():
            raise InvalidHeader(f"header name {name!r:.80} holds control characters")
        if not isinstance(value, str):
            raise InvalidHeader(
                f"header {name!r:.80} must have a str value, not {type(value).__name__}")
        if len(value) > MAX_HEADER_VALUE:
            raise InvalidHeader(
                f"header {name!r:.80} is {len(value)} characters, over {MAX_HEADER_VALUE}")
        out[name] = value
    return out


def wrap(headers: Mapping[str, str], inner: bytes) -> bytes:
    """The envelope holding ``inner`` (a stored payload without headers) and ``headers``
    (validated here); ``inner`` itself when there are none."""
    if not headers:
        return inner
    checked = check_headers(headers)
    try:
        blob = json.dumps(checked, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates
        raise InvalidHeader(f"headers must be valid Unicode text: {exc}") from exc
    if len(blob) > MAX_HEADER_BYTES:
        raise InvalidHeader(f"headers take {len(blob)} bytes, over {MAX_HEADER_BYTES}")
    return b"%b%d:%b%b" % (HEADERS, len(blob), blob, inner)


def rewrap(blob: bytes, inner: bytes) -> bytes:
    """``inner`` in an envelope with headers already encoded (``blob``, as :func:`split` gave
    them); ``inner`` itself when ``blob`` is empty."""
    return b"%b%d:%b%b" % (HEADERS, len(blob), blob, inner) if blob else inner


def split(stored: bytes) -> tuple[bytes, bytes]:
    """(the headers' JSON, the inner payload) of a stored payload; ``b""`` for the first when
    it has no envelope. Raises SerializationError on a malformed envelope."""
    if stored[:1] != HEADERS:
        return b"", stored
    colon = stored.find(b":", 1, 12)
    size = stored[1:colon]
    if colon < 0 or not size.isdigit():
        raise SerializationError("stored payload has a malformed header envelope")
    end = colon + 1 + int(size)
    if end > len(stored):
        raise SerializationError("stored payload has a truncated header envelope")
    return stored[colon + 1 : end], stored[end:]


def parse_headers(blob: bytes) -> Mapping[str, str]:
    """The headers of an envelope's JSON part (read-only); raises SerializationError."""
    if not blob:
        return NO_HEADERS
    try:
        value = json.loads(blob)
    except ValueError as exc:
        raise SerializationError(f"cannot decode stored headers: {exc}") from exc
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise SerializationError("stored headers are not an object of str to str")
    return MappingProxyType(value)


def content_id(stored: bytes) -> str:
    """An id derived from the encoded payload: equal payloads get equal ids. Headers are not
    part of it (an envelope is hashed by its inner payload)."""
    if stored[:1] == HEADERS:
        stored = split(stored)[1]
    return hashlib.sha256(stored).hexdigest()[:32]
