"""A queue name or an item id can never address a key outside its own queue's namespace.

* Key derivation (no server): every key of queue ``name`` (fixed keys, per-item result keys of
  any id, facade keys) starts with ``leaseq:{name}:``, the name is recovered from any of them,
  and all of them hash to the cluster slot of ``{name}``; names that could break out (braces,
  control characters) are refused.
* On a real server: every operation, with key-shaped ids, runs under an ACL user whose only key
  pattern is ``leaseq:{name}:*`` (the server checks every key a script touches), and another
  queue's keys stay exactly as they were.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.crc import key_slot

import leaseq
from leaseq.keys import PREFIX, QueueKeys, validate_id
from tests.fuzz.test_fuzz_api import snapshot
from tests.security.test_acl import SCRIPT_COMMANDS

VICTIM = "ns-victim"
EXAMPLES = int(os.environ.get("LEASEQ_FUZZ_EXAMPLES", "60"))
TRICKY = ["*", "?", "[a-z]", "\\", ":", "leaseq:", "}:meta", "{", "}", "{other}", "..", " ",
          "é", "名", "\u200b", "%s", "\x7f"]
NAMES = st.one_of(st.text(max_size=30), st.sampled_from(TRICKY),
                  st.lists(st.sampled_from(TRICKY), max_size=4).map("".join))
IDS = st.one_of(st.text(min_size=1, max_size=30), st.sampled_from(TRICKY),
                st.sampled_from(["leaseq:{victim}:meta", "x}:result:{victim", "result:*",
                                 "../victim", "victim"]))


def valid(make: Any, value: str) -> bool:
    try:
        make(value)
    except leaseq.LeaseqError:
        return False
    return True


@settings(max_examples=EXAMPLES * 5, deadline=None)
@given(name=NAMES, item_id=IDS, part=st.text(min_size=1, max_size=10))
def test_every_key_of_a_queue_is_inside_its_namespace(name: str, item_id: str,
                                                      part: str) -> None:
    if not valid(QueueKeys.of, name):
        assert any(c in name for c in "{}") or any(ord(c) < 32 or ord(c) == 127 for c in name) \
            or not name or len(name) > 200
        return
    k = QueueKeys.of(name)
    head = f"{PREFIX}:{{{name}}}:"
    keys = [*k.all_fixed, k.extra(part)]
    if valid(validate_id, item_id):
        keys.append(k.result(item_id))
    slot = key_slot(name.encode("utf-8"))
    for key in keys:
        assert key.startswith(head)
        tag = key[len(PREFIX) + 2 : key.index("}")]  # the text between the first { and }
        assert tag == name  # so no other queue's key, and the same slot for all
        assert key_slot(key.encode("utf-8")) == slot


def escape_glob(text: str) -> str:
    """``text`` as a literal inside a glob pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def acl_pattern(name: str) -> str:
    """The ACL key pattern of queue ``name``: ACL rules cannot hold a space, so a space in the
    name is matched by ``?`` (any one character)."""
    return f"~{PREFIX}:{{{escape_glob(name).replace(' ', '?')}}}:*"


def confined_user(admin: Any, port: int, name: str) -> tuple[str, redis.Redis]:
    user = f"ns-{uuid.uuid4().hex[:12]}"
    password = uuid.uuid4().hex
    admin.execute_command("ACL", "SETUSER", user, "reset", "on", f">{password}",
                          acl_pattern(name),
                          "resetchannels", "-@all", "+fcall", "+evalsha", "+eval", "+bzpopmin",
                          "+ping",
                          *SCRIPT_COMMANDS)
    return user, redis.Redis(port=port, username=user, password=password)


def every_operation(q: leaseq.Queue, ids: list[str]) -> None:
    """Each public call at least once, with the given ids."""
    q.add("a", id=ids[0])
    q.add_many([leaseq.Item(i, id=i) for i in ids[1:]] + ["generated"])
    q.add("later", id=ids[0] + "-d", delay=100)
    got = q.lease_many(len(ids) + 1, block=False)
    assert got
    by_id = {x.id: x for x in got}
    first = by_id.pop(ids[0], None) or got[0]
    by_id.pop(first.id, None)
    assert q.extend(first, 20) and q.extend_many([first]) == [True]
    assert q.complete(first, result={"r": first.id}, result_ttl=60)
    assert q.state(first.id).has_result
    rest = list(by_id.values())
    if rest:
        q.fail(rest[0], error="boom", retry_in=0)
    if len(rest) > 1:
        q.requeue(rest[1])
    if len(rest) > 2:
        q.complete_many(rest[2:])
    nxt = q.lease(block=False)
    if nxt is not None:
        q.complete_and_lease(nxt, n=1, result="x")
    for item_id in ids:
        q.state(item_id)
    q.peek(10)
    q.dead()
    q.stats()
    q.sweep()
    q.dead_requeue(ids)
    q.dead_purge(ids)
    q.remove(ids[-1])
    q.remove_many(ids)
    q.purge()


@pytest.mark.parametrize("server", ["valkey"], indirect=True)
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(name=NAMES, ids=st.lists(IDS, min_size=1, max_size=4, unique=True))
def test_no_name_or_id_reaches_another_queues_keys(server: Any, name: str,
                                                    ids: list[str]) -> None:
    if not valid(QueueKeys.of, name) or name == VICTIM:
        return
    ids = [i for i in ids if valid(validate_id, i)]
    if not ids:
        return
    admin = server.client()
    victim = leaseq.Queue(VICTIM, admin)
    if not admin.exists(QueueKeys.of(VICTIM).items):
        victim.add_many([leaseq.Item(i, id=i) for i in ("victim", "meta", "x")])
        victim.lease(block=False)
    before = snapshot(admin, VICTIM)
    user, client = confined_user(admin, server.backend.port, name)
    try:
        every_operation(leaseq.Queue(name, client, max_attempts=1), ids)
    finally:
        client.close()
        admin.execute_command("ACL", "DELUSER", user)
    assert snapshot(admin, VICTIM) == before
    left = [k for k in admin.scan_iter(match=f"{PREFIX}:{{{escape_glob(name)}}}:*")
            if not k.endswith(b":meta") and not k.endswith(b":acked")
            and b":result:" not in k and not (b"}:call:" in k and admin.pttl(k) > 0)]
    # purged: nothing but counters, recent tokens, kept results and recent calls' replies
    assert left == []
