"""leaseq.compat.redis_work_queue: the seed's samples, the exact Redis layout, interop with a
Go-style client writing the raw layout, ghosts and duplicates, and races (threads).

Every test runs on Valkey 9 and on Redis 7 (``srv``), with keys under a per-test prefix.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from leaseq.compat.redis_work_queue import Item, KeyPrefix, WorkQueue
from leaseq.errors import InvalidArgument, LeaseqConnectionError
from tests.faults import CuttingProxy

pytestmark = pytest.mark.timeout(60)


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(params=["valkey_server", "redis_server"], ids=["valkey", "redis"])
def srv(request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue(request.param)


@pytest.fixture
def clients(srv: Any, queue_name: str) -> Iterator[Callable[..., redis.Redis]]:
    """``clients(**kw)`` makes clients for ``srv``; the test's keys are deleted at the end."""
    made: list[redis.Redis] = []

    def make(**kw: Any) -> redis.Redis:
        client: redis.Redis = srv.client(**kw)
        made.append(client)
        return client

    yield make
    admin = srv.client()
    keys = list(admin.scan_iter(match=f"{queue_name}*", count=1000))
    if keys:
        admin.delete(*keys)
    admin.close()
    for client in made:
        client.close()


@pytest.fixture
def db(clients: Callable[..., redis.Redis]) -> redis.Redis:
    return clients()


@pytest.fixture
def wq(queue_name: str) -> WorkQueue:
    return WorkQueue(KeyPrefix(queue_name), clean_grace=0.05)


def layout(db: redis.Redis, prefix: str) -> dict[str, Any]:
    """Every key under ``prefix``: name -> (type, contents, pttl)."""
    out: dict[str, Any] = {}
    for raw in db.scan_iter(match=f"{prefix}:*", count=1000):
        key = raw.decode() if isinstance(raw, bytes) else raw
        kind = db.type(key)
        kind = kind.decode() if isinstance(kind, bytes) else kind
        if kind == "list":
            value: Any = [v.decode() for v in db.lrange(key, 0, -1)]
        else:
            value = db.get(key)
        out[key] = (kind, value, db.pttl(key))
    return out


# -- a foreign client: the raw layout, written the way the Go implementation does ------------


class GoStyle:
    """Go redis-work-queue's command sequences on the shared layout (hyphenated UUID ids)."""

    def __init__(self, db: redis.Redis, prefix: str, gap: float = 0.0) -> None:
        self.db, self.p, self.gap = db, prefix, gap
        self.session = str(uuid.uuid4())

    def add(self, data: bytes, item_id: str | None = None) -> str:
        item_id = item_id or str(uuid.uuid4())
        pipe = self.db.pipeline(transaction=False)
        pipe.setnx(f"{self.p}:item:{item_id}", data)
        pipe.lpush(f"{self.p}:queue", item_id)
        pipe.execute()
        return item_id

    def lease(self, lease_secs: int, timeout: int = 1) -> tuple[str, bytes] | None:
        raw = self.db.brpoplpush(f"{self.p}:queue", f"{self.p}:processing", timeout)
        if raw is None:
            return None
        item_id = raw.decode()
        data = self.db.get(f"{self.p}:item:{item_id}")
        if data is None:
            return None
        if self.gap:
            time.sleep(self.gap)
        self.db.execute_command(
            "SETEX", f"{self.p}:leased_by_session:{item_id}", lease_secs, self.session
        )
        return item_id, data

    def complete(self, item_id: str) -> bool:
        if self.db.delete(f"{self.p}:item:{item_id}") == 0:
            return False
        self.db.lrem(f"{self.p}:processing", 0, item_id)
        self.db.delete(f"{self.p}:leased_by_session:{item_id}")
        return True


# -- the seed's samples (000), ported: only the import line and the server address differ ----

SEED_SETUP = """
from redis import Redis
from redis_work_queue import KeyPrefix, WorkQueue

db = Redis(host='your-redis-server')

work_queue = WorkQueue(KeyPrefix("example_work_queue"));
"""

SEED_ITEMS = """
from redis_work_queue import Item

# Create an item from bytes
bytes_item = Item(b"[1,2,3]")

# Create an item from a string
string_item = Item('[1,2,3]');

# Create an item by json serializing an object
json_item = Item.from_json_data([1, 2, 3])

# Retreive an item's data, as bytes:
assert bytes_item.data() == b"[1,2,3]"
assert bytes_item.data() == string_item.data()
assert bytes_item.data() == json_item.data()

# Parse an item's data as JSON:
assert bytes_item.data_json() == [1, 2, 3]
"""

SEED_ADD = """
work_queue.add_item(db, item)
"""

SEED_COMPLETE = """
from redis_work_queue import Item

while True:
    # Wait for a job with no timeout and a lease time of 5 seconds.
    # Use work_queue.lease(db, 5, timeout=10) to timeout and return `None` after 10 seconds.
    job: Item | None = work_queue.lease(db, 5)
    assert job is not None
    do_some_work(job)
    work_queue.complete(db, job)
"""

# As printed in the seed, with one fix: `work_queue.complete(db, &job)` is not Python (a
# Rust-ism in the original README); it reads `work_queue.complete(db, job)` here.
SEED_ERRORS = """
from redis_work_queue import Item

while True:
    # Wait for a job with no timeout and a lease time of 5 seconds.
    job: Item = work_queue.lease(db, 5)
    try:
        do_some_work(job)
    except Exception as err:
        if should_retry(err):
            # Drop a job that should be retried - it will be returned to the work queue after
            # the (5 second) lease expires.
            pass
        else:
            # Errors that shouldn't cause a retry should mark the job as complete so it isn't
            # tried again.
            log_error(err)
            work_queue.complete(db, job)
        continue
    # Mark successful jobs as complete
    work_queue.complete(db, job)
"""


def port(source: str, srv: Any, queue_name: str, loops: int | None = None) -> str:
    """The seed sample as a user of leaseq would write it."""
    out = source.replace(
        "from redis_work_queue import", "from leaseq.compat.redis_work_queue import"
    )
    out = out.replace(
        "Redis(host='your-redis-server')", f"Redis(host={srv.host!r}, port={srv.port})"
    )
    # One queue per test instead of the sample's fixed name (tests share servers).
    out = out.replace('"example_work_queue"', repr(queue_name))
    if loops is not None:  # the samples loop forever; a test stops after `loops` jobs
        out = out.replace("while True:", f"for _ in range({loops}):")
    return out


def test_seed_samples_setup_items_add_complete(
    srv: Any, clients: Callable[..., redis.Redis], queue_name: str
) -> None:
    ns: dict[str, Any] = {}
    exec(port(SEED_SETUP, srv, queue_name), ns)
    exec(port(SEED_ITEMS, srv, queue_name), ns)
    assert ns["work_queue"].queue_len(ns["db"]) == 0
    done: list[Item] = []
    ns["do_some_work"] = done.append
    for name in ("bytes_item", "string_item", "json_item"):
        ns["item"] = ns[name]
        exec(port(SEED_ADD, srv, queue_name), ns)
    assert ns["work_queue"].queue_len(ns["db"]) == 3
    exec(port(SEED_COMPLETE, srv, queue_name, loops=3), ns)
    assert [job.data() for job in done] == [b"[1,2,3]"] * 3
    assert [job.id() for job in done] == [
        ns[n].id() for n in ("bytes_item", "string_item", "json_item")
    ]
    assert layout(clients(), queue_name) == {}
    ns["db"].close()


def test_seed_sample_error_handling(
    srv: Any, clients: Callable[..., redis.Redis], queue_name: str
) -> None:
    class Retryable(Exception):
        pass

    ns: dict[str, Any] = {}
    exec(port(SEED_SETUP, srv, queue_name), ns)
    wq, seed_db = ns["work_queue"], ns["db"]
    attempts: Counter[bytes] = Counter()
    done: list[bytes] = []
    logged: list[Exception] = []

    def do_some_work(job: Item) -> None:
        attempts[job.data()] += 1
        if job.data() == b"fatal":
            raise ValueError("bad input")
        if job.data() == b"flaky" and attempts[b"flaky"] == 1:
            raise Retryable("try later")
        done.append(job.data())

    ns.update(
        do_some_work=do_some_work,
        should_retry=lambda err: isinstance(err, Retryable),
        log_error=logged.append,
    )
    for data in (b"ok1", b"fatal", b"flaky", b"ok2"):
        wq.add_item(seed_db, Item(data))
    exec(port(SEED_ERRORS, srv, queue_name, loops=4), ns)
    assert done == [b"ok1", b"ok2"]
    assert [str(e) for e in logged] == ["bad input"]
    # The flaky job was dropped: still leased (5 s), still in processing.
    db = clients()
    assert wq.queue_len(db) == 0 and wq.processing(db) == 1
    (flaky_id,) = [
        k.decode().rsplit(":", 1)[1]
        for k in db.scan_iter(match=f"{queue_name}:leased_by_session:*")
    ]
    assert 4000 < db.pttl(f"{queue_name}:leased_by_session:{flaky_id}") <= 5000
    wq.light_clean(db)  # lease still live: nothing happens
    assert wq.queue_len(db) == 0 and wq.processing(db) == 1
    db.pexpire(
        f"{queue_name}:leased_by_session:{flaky_id}", 1
    )  # "after the (5 second) lease expires"
    time.sleep(0.01)
    wq.light_clean(db)
    assert wq.queue_len(db) == 1 and wq.processing(db) == 0
    exec(port(SEED_ERRORS, srv, queue_name, loops=1), ns)
    assert done == [b"ok1", b"ok2", b"flaky"]
    assert layout(db, queue_name) == {}
    seed_db.close()


# -- API basics ------------------------------------------------------------------------------


def test_key_prefix_and_item() -> None:
    cv_key = KeyPrefix("cv:")
    assert cv_key.of("abcdef-123456") == "cv:abcdef-123456"
    assert isinstance(cv_key.concat("x:"), KeyPrefix) and cv_key.concat("x:") == "cv:x:"
    assert cv_key.concat("x:").of("1") == "cv:x:1"
    item = Item("héllo")
    assert item.data() == "héllo".encode() and len(item.id()) == 32
    int(item.id(), 16)
    assert Item(b"x", id="given").id() == "given"
    assert Item.from_json_data({"a": [1, None]}, id="j").data() == b'{"a":[1,null]}'
    assert Item(bytearray(b"\x00\xff")).data() == b"\x00\xff"
    with pytest.raises(TypeError):
        Item(123)  # type: ignore[arg-type]


def test_argument_checks(db: redis.Redis, wq: WorkQueue) -> None:
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(InvalidArgument):
            wq.lease(db, bad, block=False)
    with pytest.raises(InvalidArgument):
        wq.lease(db, 1, timeout=-1)
    with pytest.raises(ValueError):
        WorkQueue(KeyPrefix("x"), clean_grace=-1)


# -- the exact layout ------------------------------------------------------------------------


def test_exact_keys_through_the_lifecycle(db: redis.Redis, wq: WorkQueue, queue_name: str) -> None:
    p = queue_name
    item = Item(b"\x00payload\xff")
    assert wq.add_item(db, item) is True
    assert wq.add_item(db, Item(b"other", id=item.id())) is False
    assert layout(db, p) == {
        f"{p}:queue": ("list", [item.id()], -1),
        f"{p}:item:{item.id()}": ("string", b"\x00payload\xff", -1),
    }
    leased = wq.lease(db, 5, block=False)
    assert leased == item
    keys = layout(db, p)
    assert set(keys) == {
        f"{p}:processing",
        f"{p}:item:{item.id()}",
        f"{p}:leased_by_session:{item.id()}",
    }
    assert keys[f"{p}:processing"] == ("list", [item.id()], -1)
    kind, session, pttl = keys[f"{p}:leased_by_session:{item.id()}"]
    assert kind == "string" and len(session) == 32 and 4900 < pttl <= 5000
    assert db.ttl(f"{p}:leased_by_session:{item.id()}") == 5
    assert wq.queue_len(db) == 0 and wq.processing(db) == 1
    assert wq.complete(db, item) is True
    assert wq.complete(db, item) is False
    assert layout(db, p) == {}

    # An abandoned lease, then light_clean: back to waiting, data untouched.
    wq.add_item(db, item)
    wq.lease(db, 0.05)
    time.sleep(0.1)
    wq.light_clean(db)
    assert layout(db, p) == {
        f"{p}:queue": ("list", [item.id()], -1),
        f"{p}:item:{item.id()}": ("string", b"\x00payload\xff", -1),
    }
    # An orphan (data, in no list, no lease), then deep_clean: back to waiting.
    db.delete(f"{p}:queue")
    wq.deep_clean(db)
    assert layout(db, p)[f"{p}:queue"] == ("list", [item.id()], -1)
    # add_unique_item and the pipeline form write the same two keys.
    other, third = Item(b"u"), Item(b"v")
    wq.add_unique_item(db, other)
    pipe = db.pipeline()
    wq.add_unique_item_to_pipeline(pipe, third)
    pipe.execute()
    assert db.lrange(f"{p}:queue", 0, -1) == [x.id().encode() for x in (third, other, item)]
    assert db.get(f"{p}:item:{third.id()}") == b"v"


def test_fifo_order(db: redis.Redis, wq: WorkQueue) -> None:
    items = [Item(str(i)) for i in range(5)]
    for item in items:
        wq.add_item(db, item)
    assert [wq.lease(db, 1, block=False) for _ in items] == items
    assert wq.lease(db, 1, block=False) is None


# -- interop with a Go-style client ------------------------------------------------------------


def test_go_style_client_and_facade_share_a_queue(
    db: redis.Redis, wq: WorkQueue, queue_name: str
) -> None:
    go = GoStyle(db, queue_name)
    expected: dict[str, bytes] = {}
    for i in range(4):
        expected[go.add(b"go-%d\x00" % i)] = b"go-%d\x00" % i
        item = Item(b"py-%d\xff" % i)
        assert wq.add_item(db, item)
        expected[item.id()] = item.data()
    assert db.llen(f"{queue_name}:queue") == 8
    go_held: list[tuple[str, bytes]] = []
    py_held: list[Item] = []
    for turn in range(8):  # alternate lessees; FIFO across both writers
        if turn % 2:
            got = go.lease(5)
            assert got is not None
            go_held.append(got)
        else:
            leased = wq.lease(db, 5, timeout=1)
            assert leased is not None
            py_held.append(leased)
    order = list(expected)
    assert [x.id() for x in py_held] + [i for i, _ in go_held] == order[0::2] + order[1::2]
    for leased in py_held:
        assert expected[leased.id()] == leased.data()
        assert "-" not in leased.id() or leased.id().count("-") == 4
    for item_id, data in go_held:
        assert expected[item_id] == data
    assert db.llen(f"{queue_name}:processing") == 8
    # Complete crosswise: each side completes what the other leased.
    for leased in py_held:
        assert go.complete(leased.id()) is True
    for item_id, _ in go_held:
        assert wq.complete(db, Item(b"", id=item_id)) is True
        assert go.complete(item_id) is False
    assert layout(db, queue_name) == {}


def test_go_add_race_is_not_duplicated_by_cleans(
    db: redis.Redis, wq: WorkQueue, queue_name: str
) -> None:
    """Go's add is SETNX then LPUSH: between them the item is in no list. A deep_clean that sees
    it there must not requeue it (the grace lets the LPUSH land)."""
    item_id = str(uuid.uuid4())
    db.setnx(f"{queue_name}:item:{item_id}", b"x")  # first half of Go's add
    cleaner = threading.Thread(target=wq.deep_clean, args=(db,))
    cleaner.start()
    time.sleep(0.01)
    db.lpush(f"{queue_name}:queue", item_id)  # second half, within the grace
    cleaner.join()
    assert db.lrange(f"{queue_name}:queue", 0, -1) == [item_id.encode()]


# -- ghosts and duplicates -------------------------------------------------------------------


def test_ghost_ids_are_skipped_and_dropped(db: redis.Redis, wq: WorkQueue, queue_name: str) -> None:
    real = Item(b"real")
    wq.add_item(db, real)
    ghosts = [f"ghost-{i}" for i in range(250)]  # more than one script call's worth
    db.rpush(f"{queue_name}:queue", *ghosts)  # on the right: leased before the real item
    assert wq.lease(db, 1, block=False) == real
    assert db.lrange(f"{queue_name}:processing", 0, -1) == [real.id().encode()]
    assert wq.queue_len(db) == 0
    # Blocking with only ghosts: times out, never loops forever, removes them.
    db.rpush(f"{queue_name}:queue", "g1", "g2")
    start = time.monotonic()
    assert wq.lease(db, 1, timeout=0.2) is None
    assert 0.15 < time.monotonic() - start < 1.5
    assert wq.queue_len(db) == 0 and wq.processing(db) == 1
    # Blocking forever: ghosts first, then a real item arrives.
    late = Item(b"late")
    timer = threading.Timer(
        0.1, lambda: (db.lpush(f"{queue_name}:queue", "g3"), wq.add_item(db, late))
    )
    timer.start()
    assert wq.lease(db, 1) == late
    timer.join()
    # Ghosts in processing: light_clean drops them, even without a grace wait.
    db.lpush(f"{queue_name}:processing", "g4", "g4", "g5")
    wq.light_clean(db)
    assert sorted(db.lrange(f"{queue_name}:processing", 0, -1)) == sorted(
        [real.id().encode(), late.id().encode()]
    )


def test_duplicate_ids_in_queue(db: redis.Redis, wq: WorkQueue, queue_name: str) -> None:
    item = Item(b"dup")
    wq.add_item(db, item)
    db.lpush(f"{queue_name}:queue", item.id())  # e.g. left by a racy foreign clean
    assert wq.lease(db, 5, block=False) == item
    # The second copy is not handed out while the first lease lives; it is dropped.
    assert wq.lease(db, 5, block=False) is None
    assert db.lrange(f"{queue_name}:processing", 0, -1) == [item.id().encode()]
    assert wq.queue_len(db) == 0
    assert wq.complete(db, item) is True
    assert layout(db, queue_name) == {}


def test_duplicate_ids_in_processing_requeue_once(
    db: redis.Redis, wq: WorkQueue, queue_name: str
) -> None:
    item = Item(b"d")
    db.set(f"{queue_name}:item:{item.id()}", b"d")
    db.lpush(f"{queue_name}:processing", item.id(), "other", item.id())
    wq.light_clean(db)
    assert db.lrange(f"{queue_name}:queue", 0, -1) == [item.id().encode()]
    assert db.llen(f"{queue_name}:processing") == 0  # "other" was a ghost


def test_complete_of_a_waiting_item_leaves_no_ghost(
    db: redis.Redis, wq: WorkQueue, queue_name: str
) -> None:
    a, b = Item(b"a"), Item(b"b")
    wq.add_item(db, a)
    wq.add_item(db, b)
    assert wq.complete(db, a) is True
    assert db.lrange(f"{queue_name}:queue", 0, -1) == [b.id().encode()]
    # Completed after its lease expired and a clean put it back: removed from queue too.
    leased = wq.lease(db, 0.05, block=False)
    assert leased == b
    time.sleep(0.08)
    wq.light_clean(db)
    assert wq.queue_len(db) == 1
    assert wq.complete(db, leased) is True
    assert layout(db, queue_name) == {}


def test_reclaimed_while_in_blmove_gap_is_not_leased(
    db: redis.Redis, wq: WorkQueue, queue_name: str
) -> None:
    """The claim step leases an id moved by BLMOVE only if it is still in processing."""
    item = Item(b"x")
    wq.add_item(db, item)
    # Simulate: our BLMOVE moved it, then a cleaner put it back before the claim script ran.
    assert db.lmove(f"{queue_name}:queue", f"{queue_name}:processing", "RIGHT", "LEFT")
    db.lrem(f"{queue_name}:processing", 0, item.id())
    db.lpush(f"{queue_name}:queue", item.id())
    from leaseq.compat import redis_work_queue as rwq

    raw = rwq._Raw(db)
    reply = rwq._run(
        raw,
        "compat/rwq_lease",
        [
            wq._queue_key,
            wq._processing_key,
            wq._item_prefix + item.id().encode(),
            wq._lease_prefix + item.id().encode(),
        ],
        [wq._item_prefix, wq._lease_prefix, 1000, "s", 10, item.id(), 1000],
    )
    # It was leased through the normal pop instead: one processing entry, one lease.
    assert reply[0] == 1 and reply[1] == item.id().encode()
    assert db.lrange(f"{queue_name}:processing", 0, -1) == [item.id().encode()]
    assert wq.queue_len(db) == 0


# -- time: sub-second leases and waits, socket_timeout ---------------------------------------


def test_sub_second_lease_and_timeout(
    clients: Callable[..., redis.Redis], wq: WorkQueue, queue_name: str
) -> None:
    db = clients()
    item = Item(b"fast")
    wq.add_item(db, item)
    assert wq.lease(db, 0.2) == item
    pttl = db.pttl(f"{queue_name}:leased_by_session:{item.id()}")
    assert pttl <= 200 and pttl != -1  # (-2: already expired on a very slow machine)
    time.sleep(0.25)
    assert not db.exists(f"{queue_name}:leased_by_session:{item.id()}")
    wq.light_clean(db)
    assert wq.queue_len(db) == 1
    assert wq.lease(db, 0.2, timeout=0.1) == item
    start = time.monotonic()
    assert wq.lease(db, 1, timeout=0.15) is None
    assert 0.12 < time.monotonic() - start < 0.6
    start = time.monotonic()
    assert wq.lease(db, 1, timeout=0.0004) is None  # never sent as "0" (= forever)
    assert time.monotonic() - start < 0.5
    # A client with a short socket_timeout: waits are sliced below it, never time out.
    short = clients(socket_timeout=0.3)
    start = time.monotonic()
    assert wq.lease(short, 1, timeout=0.8) is None
    assert 0.75 < time.monotonic() - start < 1.5
    late = Item(b"late")
    timer = threading.Timer(0.7, wq.add_item, args=(db, late))
    timer.start()
    assert wq.lease(short, 1) == late  # timeout=0: forever, across several slices
    timer.join()


# -- decode_responses=True -----------------------------------------------------------------


def test_decode_responses_client(clients: Callable[..., redis.Redis], queue_name: str) -> None:
    db = clients(decode_responses=True)
    wq = WorkQueue(KeyPrefix(queue_name), clean_grace=0)
    binary = Item(b"\xff\xfe\x00 not utf-8")
    assert wq.add_item(db, binary) is True
    assert wq.add_item(db, binary) is False
    assert wq.queue_len(db) == 1
    leased = wq.lease(db, 0.05, timeout=1)
    assert leased is not None and leased.data() == binary.data() and leased.id() == binary.id()
    assert isinstance(leased.id(), str) and wq.processing(db) == 1
    time.sleep(0.08)
    wq.light_clean(db)
    db.rpush(f"{queue_name}:queue", "ghost")  # leased first, and dropped
    again = wq.lease(db, 5, block=False)
    assert again == binary
    db.delete(f"{queue_name}:processing")
    db.delete(f"{queue_name}:leased_by_session:{binary.id()}")
    wq.deep_clean(db)
    assert wq.queue_len(db) == 1
    assert wq.lease(db, 5, block=False) == binary
    assert wq.complete(db, binary) is True and wq.complete(db, binary) is False
    assert layout(db, queue_name) == {}


# -- races -------------------------------------------------------------------------------------


def test_complete_is_true_exactly_once_across_threads(
    clients: Callable[..., redis.Redis], wq: WorkQueue
) -> None:
    db = clients()
    items = [Item(str(i)) for i in range(30)]
    for item in items:
        wq.add_item(db, item)
        assert wq.lease(db, 5, block=False) == item
    threads = 8
    conns = [clients() for _ in range(threads)]
    wins: Counter[str] = Counter()
    lock = threading.Lock()
    barrier = threading.Barrier(threads)

    def run(conn: redis.Redis) -> None:
        for item in items:
            barrier.wait()
            if wq.complete(conn, item):
                with lock:
                    wins[item.id()] += 1

    workers = [threading.Thread(target=run, args=(c,)) for c in conns]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    assert wins == Counter({item.id(): 1 for item in items})
    assert wq.queue_len(db) == 0 and wq.processing(db) == 0


def test_cleans_racing_leases_no_duplicate_no_loss(
    clients: Callable[..., redis.Redis], queue_name: str
) -> None:
    """Workers (leaseq and Go-style) lease with short leases and sometimes die without
    completing; light and deep cleaners run concurrently. No id ever sits twice in the lists,
    and every item ends completed exactly once."""
    grace = 0.03
    wq = WorkQueue(KeyPrefix(queue_name), clean_grace=grace)
    db = clients()
    total = 200
    ids = []
    for i in range(total):
        item = Item(b"%d" % i)
        wq.add_item(db, item)
        ids.append(item.id())
    go_ids = [GoStyle(db, queue_name).add(b"go") for _ in range(40)]
    ids += go_ids
    wins: Counter[str] = Counter()
    lock = threading.Lock()
    stop = threading.Event()
    errors: list[BaseException] = []
    rng = random.Random(7)

    def guarded(fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except BaseException as exc:
                errors.append(exc)
                stop.set()

        return run

    def py_worker() -> None:
        conn = clients()
        while not stop.is_set():
            job = wq.lease(conn, 0.1, timeout=0.05)
            if job is None:
                continue
            if rng.random() < 0.2:
                continue  # "dies": the lease expires, a cleaner must bring it back
            if wq.complete(conn, job):
                with lock:
                    wins[job.id()] += 1

    def go_worker() -> None:
        go = GoStyle(clients(), queue_name, gap=0.002)
        while not stop.is_set():
            got = go.lease(1, timeout=1)
            if got is None:
                continue
            if go.complete(got[0]):
                with lock:
                    wins[got[0]] += 1

    def light() -> None:
        conn = clients()
        while not stop.is_set():
            wq.light_clean(conn)

    def deep() -> None:
        conn = clients()
        while not stop.is_set():
            wq.deep_clean(conn)
            time.sleep(0.02)

    def checker() -> None:
        conn = clients()
        while not stop.is_set():
            pipe = conn.pipeline(transaction=True)
            pipe.lrange(f"{queue_name}:queue", 0, -1)
            pipe.lrange(f"{queue_name}:processing", 0, -1)
            waiting, leased = pipe.execute()
            both = waiting + leased
            dup = [k for k, n in Counter(both).items() if n > 1]
            assert not dup, f"duplicate ids in the lists: {dup}"
            time.sleep(0.005)

    threads = [
        threading.Thread(target=guarded(f))
        for f in [py_worker] * 4 + [go_worker, light, light, deep, deep, checker]
    ]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not stop.is_set():
        with lock:
            if len(wins) == len(ids):
                break
        time.sleep(0.02)
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors
    assert wins == Counter({i: 1 for i in ids})
    # A Go-style lease writes its lease key in a second step (that client's own race): a key
    # written after its item was completed elsewhere outlives it until its TTL (1 s) runs out.
    deadline = time.monotonic() + 3
    while layout(db, queue_name) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert layout(db, queue_name) == {}


def test_concurrent_deep_and_light_cleans_requeue_once(
    clients: Callable[..., redis.Redis], queue_name: str
) -> None:
    wq = WorkQueue(KeyPrefix(queue_name), clean_grace=0.02)
    db = clients()
    orphans = [str(uuid.uuid4()) for _ in range(30)]
    abandoned = [str(uuid.uuid4()) for _ in range(30)]
    for i in orphans + abandoned:
        db.set(f"{queue_name}:item:{i}", i)
    db.lpush(f"{queue_name}:processing", *abandoned, *abandoned[:5])  # some twice
    held = str(uuid.uuid4())  # leased by someone, in no list: must be left alone
    db.set(f"{queue_name}:item:{held}", "h")
    db.set(f"{queue_name}:leased_by_session:{held}", "s", ex=5)
    conns = [clients() for _ in range(6)]
    jobs = [
        wq.deep_clean,
        wq.deep_clean,
        wq.deep_clean,
        wq.light_clean,
        wq.light_clean,
        wq.light_clean,
    ]
    threads = [threading.Thread(target=job, args=(c,)) for job, c in zip(jobs, conns, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    waiting = [x.decode() for x in db.lrange(f"{queue_name}:queue", 0, -1)]
    assert sorted(waiting) == sorted(orphans + abandoned)
    assert db.llen(f"{queue_name}:processing") == 0


def test_deep_clean_pattern_is_escaped_and_type_checked(db: redis.Redis, queue_name: str) -> None:
    weird = WorkQueue(KeyPrefix(f"{queue_name}[*?]"), clean_grace=0)
    plain = WorkQueue(KeyPrefix(queue_name), clean_grace=0)
    # Keys an unescaped pattern "<q>[*?]:item:*" would match, and a sibling queue's item.
    db.set(f"{queue_name}?:item:a", b"not ours")
    db.set(f"{queue_name}*:item:b", b"not ours")
    db.set(f"{queue_name}X:item:c", b"not ours")
    db.set(f"{queue_name}[*?]:item:d", b"ours")
    db.rpush(f"{queue_name}:item:listy", b"a LIST under the item pattern")
    weird.deep_clean(db)
    plain.deep_clean(db)
    assert db.lrange(f"{queue_name}[*?]:queue", 0, -1) == [b"d"]
    assert plain.queue_len(db) == 0


# -- a lost reply is not retried into a wrong answer ----------------------------------------


def test_lost_reply_raises_instead_of_a_wrong_false(
    srv: Any, clients: Callable[..., redis.Redis], wq: WorkQueue, queue_name: str
) -> None:
    proxy = CuttingProxy(srv.port, srv.host)
    try:
        db = clients(host="127.0.0.1", port=proxy.port, retry=Retry(NoBackoff(), 3))
        warm, item = Item(b"warm"), Item(b"job")
        wq.add_item(db, warm)  # loads the scripts, so no NOSCRIPT reply is the one dropped
        wq.complete(db, warm)
        proxy.arm()
        with pytest.raises(LeaseqConnectionError, match="may or may not"):
            wq.add_item(db, item)
        assert wq.queue_len(db) == 1  # it did run, once
        wq.lease(db, 5, block=False)
        proxy.arm()
        with pytest.raises(LeaseqConnectionError, match="may or may not"):
            wq.complete(db, item)
        assert layout(db, queue_name) == {}  # it did complete
        assert wq.complete(db, item) is False
    finally:
        proxy.close()
