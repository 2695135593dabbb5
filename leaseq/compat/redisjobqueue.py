"""Drop-in replacement for ``python-redisjobqueue``: a queue of unique JSON jobs with locks.

Change ``from redisjobqueue import RedisJobQueue`` to
``from leaseq.compat.redisjobqueue import RedisJobQueue``. See ``docs/compat/redisjobqueue.md``.

A :class:`RedisJobQueue` is a :class:`leaseq.Queue` with ``unique_by_content=True`` (the id of a
job is derived from its JSON) and ``max_attempts=0`` (a job is never dead-lettered). A "lock" is a
leaseq lease: ``get(lock_timeout)`` leases the first free job for ``lock_timeout`` ms in one
script call (jobs locked by others cost nothing), ``wait`` blocks on the server instead of
polling, and a lock that runs out makes the job available again by itself.

When a job's lock has expired (precisely): a :class:`Job`'s lock is valid while its lease is the
job's current lease *and* the queue's clock (server ``TIME`` plus the queue's ``clock_offset``)
is before the lease's ``deadline_ms``. ``complete``/``release`` check both in one atomic step
that also pins the lease for a moment (an ``extend``), so nobody else can take the job between
the check and the action; past the deadline they raise :class:`JobLockHasExpiredException` and
the job is left (or put back) for other consumers, even if nobody has taken it yet.
"""

from __future__ import annotations

from typing import Any

import redis

from leaseq import protocol as P
from leaseq import scripts
from leaseq.codec import content_id
from leaseq.errors import InvalidArgument, LeaseqError
from leaseq.models import Lease
from leaseq.queue import Queue

__all__ = [
    "Job",
    "JobAlreadyInQueueException",
    "JobLockHasExpiredException",
    "JobNotValidException",
    "RedisJobQueue",
    "RedisJobQueueException",
]


class RedisJobQueueException(LeaseqError):
    """Base class of this facade's errors."""


class JobAlreadyInQueueException(RedisJobQueueException):
    """A job with the same content is already in the queue (waiting or locked)."""


class JobNotValidException(RedisJobQueueException):
    """The job was already completed or released through this object."""


class JobLockHasExpiredException(RedisJobQueueException):
    """The job's lock ran out (or the job was removed) before complete/release."""


def _lock_seconds(lock_timeout: object) -> float:
    if isinstance(lock_timeout, bool) or not isinstance(lock_timeout, int | float) \
            or not lock_timeout > 0:
        raise InvalidArgument(f"lock_timeout must be a number of ms > 0, not {lock_timeout!r}")
    return float(lock_timeout) / 1000.0


class Job:
    """A locked job, as returned by :meth:`RedisJobQueue.get` and :meth:`RedisJobQueue.wait`."""

    __slots__ = ("_done", "_lease", "_queue", "lock_timeout")

    def __init__(self, queue: Queue, lease: Lease, lock_timeout: float) -> None:
        self._queue = queue
        self._lease = lease
        self._done = False
        self.lock_timeout = lock_timeout  # ms

    @property
    def lease(self) -> Lease:
        """The leaseq lease behind the lock (id, token, ``deadline_ms`` on the server clock)."""
        return self._lease

    def get(self) -> Any:
        """The job's payload, as it was put."""
        return self._lease.data

    def _check(self) -> None:
        """Raise unless the lock is still ours and unexpired; on success it is pinned (extended
        by at least a second) so the following complete/release cannot race a new lease."""
        if self._done:
            raise JobNotValidException("the job was already completed or released")
        q, lease = self._queue, self._lease
        pin = max(self.lock_timeout / 1000.0, 1.0)
        call = P.extend(q.config, [P.fenced(lease)], pin)
        deadline = call.parse(scripts.run(q.client, call.script, call.keys, call.args))[0]
        if deadline == 0:
            raise JobLockHasExpiredException("the job's lock expired and the job was taken back")
        now = deadline - P.ms(pin, "pin")  # the server's clock when it checked
        if now >= lease.deadline_ms:
            q.fail(lease, error="lock expired", retry_in=0)  # free again, at its own place
            raise JobLockHasExpiredException(
                f"the job's lock expired {now - lease.deadline_ms} ms ago")

    def complete(self) -> None:
        """Remove the job from the queue and unlock it."""
        self._check()
        if not self._queue.complete(self._lease):
            raise JobLockHasExpiredException("the job was removed meanwhile")
        self._done = True

    def release(self) -> None:
        """Unlock the job without removing it: it is the next one out again (it keeps its
        place in the queue)."""
        self._check()
        if not self._queue.fail(self._lease, error="released", retry_in=0):
            raise JobLockHasExpiredException("the job was removed meanwhile")
        self._done = True

    def __repr__(self) -> str:
        return f"Job(id={self._lease.id!r}, lock_timeout={self.lock_timeout})"


class RedisJobQueue:
    """A queue of unique jobs (``redisjobqueue.RedisJobQueue``).

    Args:
        queue_name: the queue's name (a leaseq queue name: no braces or control characters).
        redis_host, redis_port, redis_db: where the server is.
        client: a ``redis.Redis`` to use instead (then host, port and db are ignored).
    """

    def __init__(self, queue_name: str = "jobs", redis_host: str = "localhost",
                 redis_port: int = 6379, redis_db: int = 0, *,
                 client: redis.Redis | None = None) -> None:
        self._own = client is None
        if client is None:
            client = redis.Redis(host=redis_host, port=redis_port, db=redis_db)
        self._client = client
        self.queue_name = queue_name
        self.queue = Queue(queue_name, client, max_attempts=0, unique_by_content=True,
                           dead_max=0, dead_ttl=0)

    def put(self, item: Any) -> None:
        """Add a job (any JSON-serializable value). Raises :class:`JobAlreadyInQueueException`
        if a job with the same content is waiting or locked; that job is left as it is."""
        got = self.queue.add(item)
        if not got:
            raise JobAlreadyInQueueException(
                f"a job with this content is already in the queue ({got.state})")

    def get(self, lock_timeout: float = 1000) -> Job | None:
        """Lock and return the first free job, or None at once if there is none.
        ``lock_timeout`` is in milliseconds."""
        seconds = _lock_seconds(lock_timeout)
        lease = self.queue.lease(lease=seconds, block=False)
        return Job(self.queue, lease, lock_timeout) if lease is not None else None

    def wait(self, interval: float = 1, lock_timeout: float = 1000,
             timeout: float | None = None) -> Job | None:
        """Block until a job is free, lock it and return it. The wait happens on the server
        (woken when a job is added or a lock runs out); ``interval`` is accepted for
        compatibility and not needed. ``timeout`` (seconds, an addition): give up and return
        None after that long; None waits forever, like the original."""
        seconds = _lock_seconds(lock_timeout)
        lease = self.queue.lease(lease=seconds, block=True, timeout=timeout)
        return Job(self.queue, lease, lock_timeout) if lease is not None else None

    def size(self) -> int:
        """How many jobs are in the queue, locked ones included."""
        s = self.queue.stats()
        return s.pending + s.delayed + s.leased

    def isempty(self) -> bool:
        """True if the queue holds no job at all (locked ones included)."""
        return self.size() == 0

    def rem(self, item: Any) -> bool:
        """Remove the job with this content, locked or not; True if it was there. Its lock
        holder then gets :class:`JobLockHasExpiredException` from complete/release."""
        return self.queue.remove(content_id(self.queue.config.codec.encode(item)))

    def close(self) -> None:
        """Close the connection this object opened (a ``client`` passed in stays open)."""
        self.queue.close()
        if self._own:
            self._client.close()
