"""One job: its state, how its handler is run (async task or pool thread, with a timeout),
and what the worker reports about it."""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from dataclasses import dataclass
from typing import Any

from ..aio import Queue as AsyncQueue
from ..errors import (
    InvalidArgument,
    LeaseqConnectionError,
    LeaseqError,
    ScriptError,
    SerializationError,
)
from ..hooks import JobHookFactory
from ..models import FailOutcome, Lease
from .handlers import Handler, JobContext, Retry, ThreadPool, call_async, error_text

LOST, SHUTDOWN, TIMEOUT = "lease lost", "shutdown", "timeout"
NETWORK = (LeaseqConnectionError, ScriptError, ConnectionError, OSError)  # retried, logged
log = logging.getLogger("leaseq.worker")


class Outcome(enum.StrEnum):
    """What became of one job."""

    COMPLETED = "completed"  # complete() returned True: this worker finished the item
    STALE = "stale"  # complete() returned False: finished or removed by someone else
    RETRIED = "retried"  # failed, will be retried
    DEAD = "dead"  # failed for the last time: dead-lettered
    LOST = "lost"  # the lease was lost before the job ended: nothing reported
    REQUEUED = "requeued"  # not finished at shutdown: given back, no attempt counted
    ERROR = "error"  # reporting failed (server unreachable): the lease will expire


@dataclass(frozen=True, slots=True)
class JobResult:
    """Passed to a worker's ``on_result`` once a job's outcome is settled."""

    lease: Lease
    outcome: Outcome
    error: str | None
    seconds: float


class Job(JobContext):
    """A started job: the handler's :class:`JobContext` plus the worker's bookkeeping."""

    __slots__ = ("running", "started", "task")

    def __init__(self, lease: Lease) -> None:
        super().__init__(lease)
        self.running = True  # the handler has not returned yet
        self.started = time.monotonic()
        self.task: asyncio.Task[None] | None = None


async def execute(handler: Handler, job: Job, pool: ThreadPool | None,
                  timeout: float | None, hooks: tuple[JobHookFactory, ...] = ()
                  ) -> tuple[Any, BaseException | None, asyncio.Future[Any] | None]:
    """Run the handler inside the job ``hooks``: ``(result, error, late)``. On a timeout the
    job is cancelled with reason TIMEOUT; ``late`` is then the future of a sync handler's
    thread, which cannot be stopped and still holds its slot. Cancellation by the worker
    raises CancelledError."""
    if pool is None and timeout is None:
        try:
            return await call_async(handler, job, hooks), None, None
        except Exception as exc:
            return None, exc, None
    if pool is None:
        cm = asyncio.timeout(timeout)
        try:
            async with cm:
                return await call_async(handler, job, hooks), None, None
        except TimeoutError as exc:
            if cm.expired():
                job.cancel(TIMEOUT)
            return None, exc, None
        except Exception as exc:
            return None, exc, None
    fut = pool.run(handler, job, hooks)
    done, _ = await asyncio.wait({fut}, timeout=timeout)
    if not done:
        job.cancel(TIMEOUT)
        return None, None, fut
    err = fut.exception()
    return (None if err is not None else fut.result()), err, None


def failure(job: Job, err: BaseException | None, timeout: float | None) -> tuple[str, float | None]:
    """The error text kept with a failed attempt, and the retry delay it asks for (None: the
    queue's backoff)."""
    if job.reason == TIMEOUT:
        return f"timeout: the job ran longer than {timeout:g} s", None
    if isinstance(err, Retry):
        return f"Retry: {err.reason}", err.delay
    return (error_text(err) if err is not None else "failed"), None


def int_in(value: object, low: int, high: int, what: str) -> int:
    """``value`` if it is an int in [low, high]; InvalidArgument otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidArgument(f"{what} must be an int from {low} to {high}, not {value!r}")
    return value


_FAILED = {FailOutcome.DEAD: "dead", FailOutcome.STALE: "stale"}


async def report(q: AsyncQueue, job: Job, result: Any, err: BaseException | None,
                 timeout: float | None) -> tuple[Outcome, str | None]:
    """Complete a job with its result, or fail it; logs one line per failure (id, attempt,
    outcome, error) with the same fields in ``extra``."""
    lease = job.lease
    try:
        if err is None and job.reason is None:
            try:
                ok = await q.complete(lease, result=result)
            except SerializationError as exc:
                err = exc  # the result cannot be stored: a failure of the job
            else:
                return (Outcome.COMPLETED if ok else Outcome.STALE), None
        text, delay = failure(job, err, timeout)
        got = Outcome(_FAILED.get(await q.fail(lease, error=text, retry_in=delay), "retried"))
    except (LeaseqError, *NETWORK) as exc:
        log.error("could not report job: queue=%s id=%s attempt=%d error=%r",
                  q.name, lease.id, lease.attempt, str(exc))
        return Outcome.ERROR, str(exc)
    log.log(logging.ERROR if got is Outcome.DEAD else logging.WARNING,
            "job failed: queue=%s id=%s attempt=%d outcome=%s error=%r",
            q.name, lease.id, lease.attempt, got, text.splitlines()[0],
            extra={"queue": q.name, "job_id": lease.id, "attempt": lease.attempt,
                   "outcome": str(got), "error": text})
    return got, text
