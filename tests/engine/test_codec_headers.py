"""The header envelope of :mod:`leaseq.codec`: round trips, content ids, malformed input."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from leaseq import InvalidHeader, SerializationError
from leaseq.codec import Codec, content_id, parse_headers, rewrap, split, wrap
from leaseq.protocol import headers_of, unwrap

codec = Codec()
names = st.text(min_size=1, max_size=40).filter(str.isprintable)
header_maps = st.dictionaries(names, st.text(max_size=60).filter(
    lambda s: not any(0xD800 <= ord(c) <= 0xDFFF for c in s)), max_size=8)
values = st.one_of(st.binary(max_size=64), st.text(max_size=64), st.integers(),
                   st.lists(st.integers(), max_size=4), st.none())


@given(value=values, headers=header_maps)
def test_envelope_round_trips(value: Any, headers: dict[str, str]) -> None:
    inner = codec.encode(value)
    stored = wrap(headers, inner)
    if not headers:
        assert stored == inner  # no envelope at all
    blob, got_inner = split(stored)
    assert got_inner == inner
    assert dict(parse_headers(blob)) == headers
    decoded = codec.decode(stored)
    assert decoded == value and type(decoded) is type(value)
    assert content_id(stored) == content_id(inner)
    other = codec.encode("replacement")
    assert rewrap(blob, other) == wrap(headers, other)  # a new payload, the same headers


def test_envelope_layout() -> None:
    stored = wrap({"a": "b"}, b'J{"x":1}')
    assert stored == b'H9:{"a":"b"}J{"x":1}'
    assert wrap({"a": "b"}, b"B\x00H9:") == b'H9:{"a":"b"}B\x00H9:'


def test_payloads_without_headers_keep_their_exact_form() -> None:
    assert codec.encode(b"raw") == b"Braw"
    assert codec.encode({"x": 1}) == b'J{"x":1}'
    assert split(b"Braw") == (b"", b"Braw")
    # A raw payload that merely starts with H is only ever stored behind its B tag.
    assert codec.decode(codec.encode(b"H5:{}")) == b"H5:{}"


def test_content_id_ignores_headers() -> None:
    inner = codec.encode({"same": 1})
    assert content_id(wrap({"t": "1"}, inner)) == content_id(wrap({"t": "2"}, inner))
    assert content_id(wrap({"t": "1"}, inner)) == content_id(inner)
    assert content_id(inner) != content_id(codec.encode({"same": 2}))


@pytest.mark.parametrize("bad", [b"H", b"Hx:{}J1", b"H99:{}J1", b"H:{}J1"])
def test_malformed_envelopes_fail_to_decode_but_not_to_parse(bad: bytes) -> None:
    with pytest.raises(SerializationError):
        codec.decode(bad)
    assert unwrap(bad) == (b"", bad)  # left whole: decoding fails where the data is read
    assert headers_of(bad) == (bad, {})


@pytest.mark.parametrize("blob", [b"[1]", b'{"a":1}', b"{", b'{"a":"b"'])
def test_bad_stored_headers_raise_serialization_errors(blob: bytes) -> None:
    with pytest.raises(SerializationError):
        parse_headers(blob)
    stored = b"H%d:%bJ1" % (len(blob), blob)
    assert headers_of(stored) == (b"J1", {})


def test_header_limits() -> None:
    wrap({"n" * 256: "v" * 8192}, b"J1")
    wrap({f"h{i}": "v" for i in range(64)}, b"J1")
    for bad in ({"n" * 257: "v"}, {"n": "v" * 8193}, {f"h{i}": "v" for i in range(65)},
                {"n\x00": "v"}, {1: "v"}, {"n": None}):
        with pytest.raises(InvalidHeader):
            wrap(bad, b"J1")  # type: ignore[arg-type]
    with pytest.raises(InvalidHeader):  # 64 headers of 8 KiB: over the 32 KiB total
        wrap({f"h{i}": "v" * 8000 for i in range(64)}, b"J1")
