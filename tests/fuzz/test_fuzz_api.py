"""Fuzz the public API with Hypothesis: wrong types, huge and empty payloads, NUL bytes, invalid
UTF-8, unicode and braces in names, negative / NaN / infinite durations, ids shaped like keys.
Only LeaseqError (or TypeError for wrong Python types) may escape, and a call that fails leaves
the queue exactly as it was."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import leaseq
import leaseq.aio
from leaseq.keys import QueueKeys

pytestmark = pytest.mark.parametrize("server", ["valkey"], indirect=True)

ANY = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(),
    st.binary(),
    st.just(float("nan")),
    st.just(float("inf")),
    st.just(-1e300),
    st.complex_numbers(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=3),
    st.just(object()),
    st.just(b"\x00\xff\xfe"),
    st.just("{q}"),
    st.just("leaseq:{x}:meta"),
    st.text(alphabet="{}:*?\x00\n ", max_size=8),
)
DURATION = st.one_of(
    st.none(), st.floats(), st.integers(-10, 10**12), st.text(max_size=3), st.just(float("nan"))
)
IDS = st.one_of(
    st.text(max_size=12),
    st.just(""),
    st.just("x" * 1100),
    st.just("a}b{c"),
    st.just("result:x"),
    st.integers(),
    st.none(),
    st.binary(max_size=4),
)
SETTINGS = settings(
    max_examples=int(__import__("os").environ.get("LEASEQ_FUZZ_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=list(HealthCheck),
)


def snapshot(raw: Any, name: str) -> dict[str, Any]:
    k = QueueKeys.of(name)
    out: dict[str, Any] = {}
    for key in k.all_fixed:
        t = raw.type(key).decode()
        if t == "zset":
            out[key] = raw.zrange(key, 0, -1, withscores=True)
        elif t == "hash":
            out[key] = {f: v for f, v in raw.hgetall(key).items()}
    return out


def checked(raw: Any, name: str, call: Callable[[], Any]) -> None:
    before = snapshot(raw, name)
    try:
        call()
    except (leaseq.LeaseqError, TypeError):
        assert snapshot(raw, name) == before
    # anything else propagates and fails the test


# Every public method of leaseq.Queue and leaseq.aio.Queue (same names and arguments); on the
# asyncio queue each returns a coroutine.
OPS: list[Callable[[Any, Any, Any, Any], Any]] = [
    lambda q, a, b, c: q.add(a, id=b, delay=c),
    lambda q, a, b, c: q.add(a, priority=b),
    lambda q, a, b, c: q.add_many([a, b]),
    lambda q, a, b, c: q.add_many([leaseq.Item(a, id=b, delay=c, priority=a)]),
    lambda q, a, b, c: q.lease(lease=c, block=False),
    lambda q, a, b, c: q.lease_many(a, block=False),
    lambda q, a, b, c: q.lease_many(1, lease=c, block=False, timeout=a),
    lambda q, a, b, c: q.complete(b, token=a),
    lambda q, a, b, c: q.complete(b, result=a, result_ttl=c),
    lambda q, a, b, c: q.complete_many([b, a], token=a),
    lambda q, a, b, c: q.complete_and_lease(b, n=a, result=a, lease_for=c),
    lambda q, a, b, c: q.complete_many_and_lease([b], n=a, lease_for=c),
    lambda q, a, b, c: q.extend(b, c, token=a),
    lambda q, a, b, c: q.extend_many([b, a], c),
    lambda q, a, b, c: q.fail(b, error=a, retry_in=c, token=a),
    lambda q, a, b, c: q.requeue(b, c, token=a),
    lambda q, a, b, c: q.requeue(b, 0, data=a),
    lambda q, a, b, c: q.remove(b),
    lambda q, a, b, c: q.remove_many([b, a]),
    lambda q, a, b, c: q.state(b),
    lambda q, a, b, c: q.peek(a, which=b, start=c),
    lambda q, a, b, c: q.dead(a, start=b),
    lambda q, a, b, c: q.sweep(a),
    lambda q, a, b, c: q.dead_requeue([b]),
    lambda q, a, b, c: q.dead_requeue(a),
    lambda q, a, b, c: q.dead_purge([b]),
    lambda q, a, b, c: q.dead_purge(a),
]


@SETTINGS
@given(op=st.integers(0, len(OPS) - 1), a=ANY, b=st.one_of(IDS, ANY), c=DURATION)
def test_sync_api_fuzz(server: Any, op: int, a: Any, b: Any, c: Any) -> None:
    raw = server.client()
    name = "fuzz-sync"
    q = leaseq.Queue(name, raw, max_payload=4096)
    if not raw.exists(QueueKeys.of(name).items):
        q.add_many([leaseq.Item(i, id=f"seed{i}") for i in range(3)])
        q.lease(block=False)
    checked(raw, name, lambda: OPS[op](q, a, b, c))


@SETTINGS
@given(name=st.one_of(st.text(max_size=40), ANY), settings_value=DURATION)
def test_queue_construction_fuzz(server: Any, name: Any, settings_value: Any) -> None:
    for kwargs in (
        {},
        {"lease": settings_value},
        {"max_attempts": settings_value},
        {"dead_ttl": settings_value},
        {"result_ttl": settings_value},
    ):
        with contextlib.suppress(leaseq.LeaseqError, TypeError):
            leaseq.Queue(name, server.client(), **kwargs)


@SETTINGS
@given(op=st.integers(0, len(OPS) - 1), a=ANY, b=st.one_of(IDS, ANY), c=DURATION)
def test_async_api_fuzz(server: Any, op: int, a: Any, b: Any, c: Any) -> None:
    raw = server.client()
    name = "fuzz-async"
    if not raw.exists(QueueKeys.of(name).items):
        seed = leaseq.Queue(name, raw)
        seed.add_many([leaseq.Item(i, id=f"seed{i}") for i in range(3)])
        seed.lease(block=False)

    async def run() -> None:
        client = server.async_client()
        q = leaseq.aio.Queue(name, client, max_payload=4096)
        before = snapshot(raw, name)
        try:
            await OPS[op](q, a, b, c)
        except (leaseq.LeaseqError, TypeError):
            assert snapshot(raw, name) == before
        finally:
            await q.close()
            await client.aclose()

    asyncio.run(run())


CLI_TEXT = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=30)


@SETTINGS
@given(
    cmd=st.sampled_from(["add", "state", "peek", "stats", "dead", "dead-requeue",
                         "dead-purge", "purge", "sweep"]),
    queue=CLI_TEXT,
    arg=CLI_TEXT,
    flag=st.sampled_from([[], ["--raw"], ["--delay", "-1"], ["--priority", "x"], ["--json"]]),
)
def test_cli_fuzz(server: Any, cmd: str, queue: str, arg: str, flag: list[str]) -> None:
    from click.testing import CliRunner

    from leaseq.cli import cli

    argv = {
        "add": ["add", queue, arg, *flag],
        "state": ["state", queue, arg],
        "peek": ["peek", queue, *([] if flag != ["--json"] else flag)],
        "stats": ["stats", queue, "--json"],
        "dead": ["dead", "list", queue],
        "dead-requeue": ["dead", "requeue", queue, arg],
        "dead-purge": ["dead", "purge", queue, arg, "-y"],
        "purge": ["purge", queue, "-y"],
        "sweep": ["sweep", queue, *([] if flag != ["--json"] else flag)],
    }[cmd]
    result = CliRunner().invoke(cli, [*argv, "--url", server.url])
    assert result.exit_code in (0, 1, 2), (argv, result.output)
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        argv,
        repr(result.exception),
    )
    assert "Traceback" not in result.output
