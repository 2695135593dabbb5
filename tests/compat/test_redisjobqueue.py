# ruff: noqa: I001, UP031
# (the README samples below keep their import order and %-formatting as written)
"""leaseq.compat.redisjobqueue: the seed README's samples (differing only in the import line,
the server address, a bounded loop and Python 3's ``print()``), uniqueness, locks and their
expiry on the queue clock, ``get`` past many locked jobs, and ``wait`` blocking on the server.

Every test runs on Valkey 9 and Redis 7 (``srv``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from leaseq.compat.redisjobqueue import (
    Job,
    JobAlreadyInQueueException,
    JobLockHasExpiredException,
    JobNotValidException,
    RedisJobQueue,
    RedisJobQueueException,
)
from leaseq.errors import InvalidArgument, LeaseqError

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(params=["valkey_server", "redis_server"], ids=["valkey", "redis"])
def srv(request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue(request.param)


@pytest.fixture
def make(srv: Any, queue_name: str) -> Iterator[Callable[..., RedisJobQueue]]:
    """``make(**kw)``: a RedisJobQueue on ``srv`` (default: the test's queue name, db 0)."""
    made: list[RedisJobQueue] = []

    def factory(**kw: Any) -> RedisJobQueue:
        kw.setdefault("queue_name", queue_name)
        kw.setdefault("redis_host", srv.host)
        kw.setdefault("redis_port", srv.port)
        q = RedisJobQueue(**kw)
        made.append(q)
        return q

    yield factory
    for q in made:
        q.queue.purge()
        q.close()


def move_clock(q: RedisJobQueue, seconds: float) -> None:
    """Move the queue's clock (meta field clock_offset, ms) without sleeping."""
    q.queue.client.hincrby(q.queue.config.keys.meta, "clock_offset", round(seconds * 1000))


# -- the README samples (seed 002) -------------------------------------------------------------


@pytest.fixture
def my_queue(srv: Any) -> Iterator[None]:
    """The samples use queue "my-queue" in db 1: empty before and after."""
    q = RedisJobQueue(queue_name="my-queue", redis_host=srv.host, redis_port=srv.port, redis_db=1)
    q.queue.purge()
    yield
    q.queue.purge()
    q.close()


def test_readme_publisher_then_consumer(srv: Any, my_queue: None,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    # --- sample: Queue publisher ---
    from leaseq.compat.redisjobqueue import RedisJobQueue

    # redis server hostname and port number are optional arguments
    #  and defaults are show below
    queue = RedisJobQueue(queue_name="my-queue", redis_host=srv.host,
        redis_port=srv.port, redis_db=1)

    for i in range(10):
        # we create a string variable with for loop counter value added to it.
        #  this makes every job (message) unique as only one unique job is allowed
        #  in the queue at a time
        job_payload = "Hello world %i!" % i
        # here we push a simple string to the queue but almost any datastructure is
        #  acceptable as long as it json serializable
        queue.put(job_payload)
    # --- end of sample ---
    assert queue.size() == 10

    # --- sample: Queue consumer ---
    from leaseq.compat.redisjobqueue import RedisJobQueue
    # we also require time functions in this example later on
    import time

    # redis server hostname and port number are optional arguments
    #  and defaults are show below
    queue = RedisJobQueue(queue_name="my-queue", redis_host=srv.host,
        redis_port=srv.port, redis_db=1)

    for _ in range(2):  # (the README loops forever)
        # sleep a second before querying for a new job
        time.sleep(1)
        # lock_timeout is in milliseconds the amount of time after which lock
        #  automatically expires and the job is considered available for other
        #  consumers as well. Default is shown below.
        job = queue.get(lock_timeout=1000)
        if job:
            job_payload = job.get()
            print(job_payload)
            # release lock and remove data from queue
            job.complete()
    # --- end of sample ---
    assert capsys.readouterr().out == "Hello world 0!\nHello world 1!\n"
    assert queue.size() == 8 and not queue.isempty()
    queue.close()


# -- put: uniqueness by content ----------------------------------------------------------------


def test_put_is_unique_by_content_and_never_moves_the_job(
        make: Callable[..., RedisJobQueue]) -> None:
    q = make()
    q.put({"a": 1, "b": [1, 2]})
    q.put("second")
    with pytest.raises(JobAlreadyInQueueException) as info:
        q.put({"a": 1, "b": [1, 2]})
    assert isinstance(info.value, RedisJobQueueException) and isinstance(info.value, LeaseqError)
    assert q.size() == 2
    job = q.get()
    assert job is not None and job.get() == {"a": 1, "b": [1, 2]}  # still first
    with pytest.raises(JobAlreadyInQueueException):
        q.put({"a": 1, "b": [1, 2]})  # locked: still in the queue
    job.complete()
    q.put({"a": 1, "b": [1, 2]})  # gone: may come again, at the back
    got = q.get()
    assert got is not None and got.get() == "second"
    q.put(0)
    q.put("")  # falsy payloads are jobs too
    assert q.size() == 4


def test_put_refuses_what_json_cannot_hold(make: Callable[..., RedisJobQueue]) -> None:
    q = make()
    with pytest.raises(LeaseqError):
        q.put({1, 2})
    with pytest.raises(LeaseqError):
        q.put(float("nan"))
    assert q.isempty()


# -- get and wait ------------------------------------------------------------------------------


def test_get_is_fast_with_many_locked_jobs_ahead(make: Callable[..., RedisJobQueue]) -> None:
    """The original walks the set and spends ~0.6 s per locked job (Redlock retries)."""
    q = make()
    for i in range(51):
        q.put(f"job {i}")
    locked = [q.get(lock_timeout=30_000) for _ in range(50)]
    assert [j.get() for j in locked if j] == [f"job {i}" for i in range(50)]
    t0 = time.monotonic()
    job = q.get(lock_timeout=30_000)
    none = q.get()
    took = time.monotonic() - t0
    assert job is not None and job.get() == "job 50" and none is None
    assert took < 0.25
    assert q.size() == 51


def test_get_returns_none_at_once_when_empty(make: Callable[..., RedisJobQueue]) -> None:
    q = make()
    t0 = time.monotonic()
    assert q.get() is None
    assert time.monotonic() - t0 < 0.2
    with pytest.raises(InvalidArgument):
        q.get(lock_timeout=0)


def test_wait_blocks_on_the_server(make: Callable[..., RedisJobQueue]) -> None:
    q = make()
    producer = make()
    timer = threading.Timer(0.3, producer.put, args=("late",))
    t0 = time.monotonic()
    timer.start()
    job = q.wait(interval=1, lock_timeout=5000)
    took = time.monotonic() - t0
    timer.join()
    assert job is not None and job.get() == "late"
    assert 0.25 <= took < 0.9  # woken by the put, not by an interval of 1 s
    job.complete()
    t0 = time.monotonic()
    assert q.wait(timeout=0.2) is None
    assert 0.15 <= time.monotonic() - t0 < 1.0


def test_wait_returns_a_job_that_is_already_there(make: Callable[..., RedisJobQueue]) -> None:
    q = make()
    q.put("now")
    t0 = time.monotonic()
    job = q.wait()
    assert job is not None and job.get() == "now" and time.monotonic() - t0 < 0.2


# -- job: complete, release, expiry ------------------------------------------------------------


def test_complete_and_release(make: Callable[..., RedisJobQueue]) -> None:
    q = make()
    for p in ("a", "b"):
        q.put(p)
    job = q.get()
    assert isinstance(job, Job) and job.get() == "a"
    job.release()  # unlocked, kept its place: first again
    with pytest.raises(JobNotValidException):
        job.complete()
    with pytest.raises(JobNotValidException):
        job.release()
    again = q.get()
    assert again is not None and again.get() == "a"
    again.complete()
    with pytest.raises(JobNotValidException):
        again.complete()
    with pytest.raises(JobNotValidException):
        again.release()
    assert q.size() == 1
    last = q.get()
    assert last is not None and last.get() == "b"
    last.complete()
    assert q.isempty() and q.size() == 0


def test_expired_lock_raises_even_if_nobody_took_the_job(
        make: Callable[..., RedisJobQueue]) -> None:
    q = make()
    q.put("a")
    job = q.get(lock_timeout=1000)
    assert job is not None
    move_clock(q, 0.999)
    move_clock(q, 0.002)  # the deadline has passed on the queue's clock
    with pytest.raises(JobLockHasExpiredException):
        job.complete()
    with pytest.raises(JobLockHasExpiredException):
        job.release()
    again = q.get()  # available to others again
    assert again is not None and again.get() == "a"
    again.complete()
    assert q.isempty()


def test_lock_valid_until_its_deadline(make: Callable[..., RedisJobQueue]) -> None:
    q = make()
    q.put("a")
    q.put("b")
    job = q.get(lock_timeout=60_000)
    assert job is not None
    move_clock(q, 59)
    job.complete()  # still valid 1 s before the deadline
    other = q.get(lock_timeout=60_000)
    assert other is not None
    move_clock(q, 59.5)
    other.release()
    assert q.size() == 1


def test_expired_lock_taken_by_another_consumer(make: Callable[..., RedisJobQueue]) -> None:
    q, rival = make(), make()
    q.put("a")
    first = q.get(lock_timeout=1000)
    assert first is not None
    move_clock(q, 2)
    second = rival.get(lock_timeout=1000)  # the lock ran out: the job is free
    assert second is not None and second.get() == "a"
    with pytest.raises(JobLockHasExpiredException):
        first.complete()
    with pytest.raises(JobLockHasExpiredException):
        first.release()
    second.complete()
    assert q.isempty()


def test_rem(make: Callable[..., RedisJobQueue]) -> None:
    q = make()
    q.put({"x": 1})
    q.put({"y": 2})
    assert q.rem({"y": 2}) and not q.rem({"y": 2})
    job = q.get()
    assert job is not None
    assert q.rem({"x": 1})  # locked jobs too; the holder loses it
    with pytest.raises(JobLockHasExpiredException):
        job.complete()
    assert q.isempty()


# -- construction ------------------------------------------------------------------------------


def test_client_argument_and_decode_responses(srv: Any, queue_name: str) -> None:
    client = redis.Redis(host=srv.host, port=srv.port, decode_responses=True)
    q = RedisJobQueue(queue_name=queue_name, client=client)
    q.put(b"raw \xff bytes")
    q.put({"k": "v"})
    job = q.get()
    assert job is not None and job.get() == b"raw \xff bytes"
    job.complete()
    job = q.get()
    assert job is not None and job.get() == {"k": "v"}
    job.complete()
    q.close()
    assert client.ping()  # a client passed in stays open
    client.close()


def test_two_queues_do_not_mix(make: Callable[..., RedisJobQueue], queue_name: str) -> None:
    a, b = make(), make(queue_name=queue_name + "-b")
    a.put("same")
    b.put("same")
    assert a.size() == 1 and b.size() == 1
    job = b.get()
    assert job is not None
    job.complete()
    assert a.size() == 1 and b.isempty()
