"""Connection faults from a TCP proxy of our own: a call reaches the server and runs, then the
connection is cut before its reply gets back. What does the caller see, and is the queue still
consistent? Run with redis-py's default retry (the call is re-sent) and with retries off."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

import leaseq
from leaseq import FailOutcome, State
from leaseq.scripts import library, load_library, script
from tests.faults import CuttingProxy


@pytest.fixture
def proxy(valkey_server: Any) -> Iterator[CuttingProxy]:
    # Load the library and cache every script first, so the armed call runs at once (a
    # "function not found" or NOSCRIPT reply being cut would test nothing).
    admin = valkey_server.client()
    assert load_library(admin)
    for name in ("add", "lease", "complete", "fail", "requeue", "extend", "state", "stats"):
        admin.script_load(script(name).source)
    p = CuttingProxy(valkey_server.port)
    yield p
    p.close()


def queue(proxy: CuttingProxy, name: str, retry: bool, **kw: Any) -> leaseq.Queue:
    policy = Retry(NoBackoff(), 3) if retry else Retry(NoBackoff(), 0)
    client = redis.Redis(port=proxy.port, retry=policy, socket_timeout=5)
    return leaseq.Queue(name, client, **kw)


def marker(name: str) -> bytes:
    """What identifies a call of script ``name`` on the wire: its function in the leaseq
    library (queues call engine scripts by FCALL)."""
    return library().functions[name].encode()


def consistent(q: leaseq.Queue) -> None:
    """No item is in two places, and every recorded item is in one."""
    raw = q.client
    k = q.config.keys
    sets = [set(raw.zrange(key, 0, -1)) for key in (k.pending, k.delayed, k.leased, k.dead)]
    for i, a in enumerate(sets):
        for b in sets[i + 1 :]:
            assert not a & b
    # (a field "\x01" + id is the lease state of item id: lua/includes/record.lua)
    stored = set(raw.hkeys(k.items))
    ids = {f for f in stored if f[:1] != b"\x01"}
    assert stored - ids <= {b"\x01" + i for i in ids}
    assert set().union(*sets) == ids


@pytest.mark.parametrize("retry", [True, False], ids=["client-retries", "no-retry"])
def test_complete_whose_reply_is_lost(proxy: CuttingProxy, queue_name: str, retry: bool) -> None:
    q = queue(proxy, queue_name, retry)
    q.add("x", id="job")
    lease = q.lease(block=False)
    proxy.arm(marker("complete"))
    if retry:
        assert q.complete(lease) is True  # the repeat is recognised by its token
    else:
        with pytest.raises(leaseq.LeaseqConnectionError):
            q.complete(lease)
        assert q.state("job").state is State.UNKNOWN  # it did complete
        assert q.complete(lease) is True  # and asking again says so
    assert proxy.cuts == 1
    assert q.stats().counter("completed") == 1
    consistent(q)


@pytest.mark.parametrize("retry", [True, False], ids=["client-retries", "no-retry"])
def test_fail_whose_reply_is_lost(proxy: CuttingProxy, queue_name: str, retry: bool) -> None:
    q = queue(proxy, queue_name, retry, max_attempts=5)
    q.add("x", id="job")
    lease = q.lease(block=False)
    proxy.arm(marker("fail"))
    if retry:
        assert q.fail(lease, error="boom", retry_in=0) is FailOutcome.REPEATED
    else:
        with pytest.raises(leaseq.LeaseqConnectionError):
            q.fail(lease, error="boom", retry_in=0)
    st = q.state("job")
    assert st.state is State.PENDING and st.last_error == "boom"
    s = q.stats()
    assert (s.counter("failed"), s.counter("retried")) == (1, 1)  # counted once
    consistent(q)


@pytest.mark.parametrize("retry", [True, False], ids=["client-retries", "no-retry"])
def test_add_whose_reply_is_lost(proxy: CuttingProxy, queue_name: str, retry: bool) -> None:
    q = queue(proxy, queue_name, retry)
    proxy.arm(marker("add"))
    if retry:
        got = q.add("generated id")  # the repeat answers what the first run stored
        assert got.added
        proxy.arm(marker("add"))
        mine = q.add("mine", id="given")  # same with a given id: "added", not "already there"
        assert mine.added and mine.state is None
    else:
        with pytest.raises(leaseq.LeaseqConnectionError):
            q.add("generated id")
    s = q.stats()
    assert s.pending == s.counter("added") == (2 if retry else 1)  # each added once
    consistent(q)


@pytest.mark.parametrize("retry", [True, False], ids=["client-retries", "no-retry"])
def test_lease_whose_reply_is_lost(proxy: CuttingProxy, queue_name: str, retry: bool) -> None:
    q = queue(proxy, queue_name, retry, lease=1)
    q.add_many([leaseq.Item("a", id="a"), leaseq.Item("b", id="b")])
    proxy.arm(marker("lease"))
    if retry:
        got = q.lease(block=False)
        assert got is not None and got.id == "b"  # "a" went to the lost reply
    else:
        with pytest.raises(leaseq.LeaseqConnectionError):
            q.lease(block=False)
        assert q.lease(block=False).id == "b"
    assert q.state("a").state is State.LEASED
    consistent(q)
    back = q.lease(timeout=3)  # the lost lease runs out and "a" comes back, attempt counted
    assert back is not None and back.id == "a" and back.attempt == 2
    consistent(q)


@pytest.mark.parametrize("moment", ["before", "mid"])
@pytest.mark.parametrize("retry", [True, False], ids=["client-retries", "no-retry"])
def test_complete_cut_before_sending_or_mid_reply(proxy: CuttingProxy, queue_name: str,
                                                  retry: bool, moment: Any) -> None:
    q = queue(proxy, queue_name, retry)
    q.add("x", id="job")
    lease = q.lease(block=False)
    proxy.arm(marker("complete"), moment)
    if retry:
        assert q.complete(lease) is True  # sent again: it runs (before) or is recognised (mid)
    else:
        with pytest.raises(leaseq.LeaseqConnectionError):
            q.complete(lease)
        expected = State.LEASED if moment == "before" else State.UNKNOWN
        assert q.state("job").state is expected  # never ran / ran
        assert q.complete(lease) is True  # either way, asking again is right
    assert proxy.cuts == 1
    assert q.stats().counter("completed") == 1
    consistent(q)


@pytest.mark.parametrize("moment", ["before", "mid"])
def test_add_many_cut_before_sending_or_mid_reply(proxy: CuttingProxy, queue_name: str,
                                                  moment: Any) -> None:
    q = queue(proxy, queue_name, True)
    proxy.arm(marker("add"), moment)
    got = q.add_many(["a", "b", "c"])
    assert [r.added for r in got] == [True, True, True]
    s = q.stats()
    assert s.pending == s.counter("added") == 3
    consistent(q)
