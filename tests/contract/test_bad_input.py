"""Bad input is refused with a specific LeaseqError before anything is written."""

from __future__ import annotations

import math
from typing import Any

import pytest
import redis

import leaseq
from leaseq.keys import QueueKeys


def snapshot(face: Any) -> dict[str, Any]:
    k = QueueKeys.of(face.name)
    out: dict[str, Any] = {}
    for key in k.all_fixed:
        t = face.raw.type(key).decode()
        if t == "zset":
            out[key] = face.raw.zrange(key, 0, -1, withscores=True)
        elif t == "hash":
            out[key] = face.raw.hgetall(key)
    return out


@pytest.mark.parametrize(
    "name", ["", "a{b", "a}b", "tab\there", "nul\x00", "x" * 201, 7, None],
    ids=["empty", "open-brace", "close-brace", "tab", "nul", "too-long", "int", "none"],
)
def test_invalid_queue_names(name: Any, server: Any) -> None:
    with pytest.raises(leaseq.InvalidQueueName):
        leaseq.Queue(name, server.client())


@pytest.mark.parametrize("server", ["valkey"], indirect=True)
@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda q: q.add(object()), leaseq.SerializationError),
        (lambda q: q.add({"x": math.nan}), leaseq.SerializationError),
        (lambda q: q.add({1j: 2}), leaseq.SerializationError),
        (lambda q: q.add("x" * 2000), leaseq.PayloadTooLarge),
        (lambda q: q.add("x", id=""), leaseq.InvalidId),
        (lambda q: q.add("x", id="a\nb"), leaseq.InvalidId),
        (lambda q: q.add("x", id="i" * 1025), leaseq.InvalidId),
        (lambda q: q.add("x", id=5), leaseq.InvalidId),
        (lambda q: q.add("x", delay=-1), leaseq.InvalidArgument),
        (lambda q: q.add("x", delay=math.nan), leaseq.InvalidArgument),
        (lambda q: q.add("x", priority=1001), leaseq.InvalidArgument),
        (lambda q: q.add("x", priority=1.5), leaseq.InvalidArgument),
        (lambda q: q.add_many(["ok", object()]), leaseq.SerializationError),
        (lambda q: q.lease(lease=0), leaseq.InvalidArgument),
        (lambda q: q.lease(lease=-2), leaseq.InvalidArgument),
        (lambda q: q.lease(lease=math.inf), leaseq.InvalidArgument),
        (lambda q: q.lease(timeout=-1), leaseq.InvalidArgument),
        (lambda q: q.lease_many(0), leaseq.InvalidArgument),
        (lambda q: q.extend("some-id"), leaseq.InvalidToken),
        (lambda q: q.fail("some-id", error="x"), leaseq.InvalidToken),
        (lambda q: q.complete("id", token="garbage"), leaseq.InvalidToken),
        (lambda q: q.complete("id", token="1.2.00000000"), leaseq.InvalidToken),
        (lambda q: q.peek(which="everything"), leaseq.InvalidArgument),
        (lambda q: q.state(""), leaseq.InvalidId),
    ],
)
def test_refused_before_anything_is_written(face: Any, call: Any, error: type) -> None:
    q = face.make(max_payload=1000)
    q.add("existing", id="some-id")
    before = snapshot(face)
    with pytest.raises(error):
        call(q)
    assert snapshot(face) == before


@pytest.mark.parametrize("server", ["valkey"], indirect=True)
def test_token_of_another_item_is_refused(face: Any) -> None:
    q = face.make()
    q.add_many([leaseq.Item("a", id="a"), leaseq.Item("b", id="b")])
    a, b = q.lease_many(2, block=False)
    before = snapshot(face)
    for call in (lambda: q.complete("a", token=b.token), lambda: q.extend("b", token=a.token),
                 lambda: q.requeue("a", token=b.token)):
        with pytest.raises(leaseq.InvalidToken, match="another item"):
            call()
    assert snapshot(face) == before


def test_unknown_ids_are_answered_not_raised(make_queue: Any) -> None:
    q = make_queue()
    assert q.state("ghost").state is leaseq.State.UNKNOWN
    assert q.complete("ghost") is False
    assert q.remove("ghost") is False
    assert q.dead_requeue(["ghost"]) == 0


def test_server_down_is_a_leaseq_connection_error() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = redis.Redis(port=port, socket_connect_timeout=0.5,
                         retry=redis.retry.Retry(redis.backoff.NoBackoff(), 0))
    q = leaseq.Queue("down", client)
    with pytest.raises(leaseq.LeaseqConnectionError) as info:
        q.add("x")
    assert isinstance(info.value.__cause__, redis.ConnectionError)


@pytest.mark.parametrize("server", ["valkey"], indirect=True)
def test_wrong_type_key_is_a_script_error_without_lua_traceback(server: Any,
                                                                queue_name: str) -> None:
    raw = server.client()
    raw.set(QueueKeys.of(queue_name).pending, "not a zset")
    q = leaseq.Queue(queue_name, raw)
    with pytest.raises(leaseq.ScriptError) as info:
        q.add("x")
    assert "@user_" not in str(info.value) and "WRONGTYPE" in str(info.value)


@pytest.mark.parametrize("server", ["valkey"], indirect=True)
def test_decode_responses_client_still_round_trips_bytes(server: Any, queue_name: str) -> None:
    q = leaseq.Queue(queue_name, server.client(decode_responses=True))
    q.add(b"\xff\x00")
    assert q.lease(block=False).data == b"\xff\x00"
