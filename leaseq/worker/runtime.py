"""The worker's asyncio core: one fetcher, one heartbeat, one task per running job.

* The fetcher leases as many items as there are free slots (plus a short prefetch), a third
  of them per round trip, waiting server-side (no polling) while the queue is empty.
* On Python 3.12+, an async handler (no timeout, no job hooks) runs in an eager task: one that
  returns without suspending is never scheduled (at most 2 ms of handlers per dispatch round).
* Successful jobs are completed together: all those that end in one loop turn share one
  ``complete_many_and_lease`` call, which also leases items for the free slots, so a busy
  worker needs no separate lease call and several calls are in flight at once (the server
  works on one batch while this process runs another); failures go through the coalescing
  :class:`leaseq.aio.Queue`.
* The heartbeat extends every held lease in one round trip per tick; a lease found gone
  cancels its job (async) or flags it (sync, see :class:`JobContext`) and nothing is
  reported for it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from .. import hooks as _hooks
from .. import protocol as P
from ..aio import Queue as AsyncQueue
from ..errors import InvalidArgument, LeaseqError
from ..models import Backoff, Lease
from .handlers import CURRENT, HandlerRef, ThreadPool, is_async, load
from .jobs import LOST, SHUTDOWN, Job, JobResult, Outcome, execute, int_in, report
from .jobs import NETWORK as _NETWORK

log = logging.getLogger("leaseq.worker")

EAGER_BUDGET = 0.002  # s of handlers run at once per dispatch round before tasks take over
# Eager tasks (Python 3.12+): a task's first step runs at once, as the current task, and one
# that finishes there is never scheduled. Passed as a mapping: 3.11 has no such parameter.
_EAGER: dict[str, Any] | None = {"eager_start": True} if sys.version_info >= (3, 12) else None


class Worker:
    """Runs ``handler`` on the items of one queue, ``concurrency`` at a time.

    Guarantees: every leased item ends completed, failed (retried or dead-lettered, with
    the queue's backoff, ``Retry.delay`` or a timeout error), given back at shutdown without
    an attempt counted, or (lease lost, crash) left to its lease expiry. A job whose lease
    was lost is never reported. Async handlers run as tasks of one loop; sync handlers on a
    pool of ``concurrency`` daemon threads.

    Args:
        queue: queue name, or a :class:`leaseq.aio.Queue` (then ``client``, ``url``,
            ``lease``, ``max_attempts`` and ``backoff`` come from it).
        handler: callable taking the :class:`~leaseq.Lease`, or ``"module:function"``.
        concurrency: handlers running at once (1-10000).
        lease: lease duration (s); the heartbeat extends it every ``heartbeat * lease`` s.
        job_timeout: seconds a handler may run before its attempt fails with "timeout".
        grace: at shutdown, seconds in-flight jobs may take before their items are requeued.
        on_result: called (on the loop) with a :class:`JobResult` after every job.
        idle_exit: stop by itself after that many seconds with nothing to do.
        poll: longest single lease wait, i.e. how soon a stop request is noticed.
        prefetch: most items leased ahead of free slots (default: ``concurrency``; 0: none),
            so the next batch is at hand when jobs finish. Only used while jobs are short:
            at most as many as would start within ~50 ms at the measured job duration, so
            slow jobs never keep items here that another worker could take.
    """

    def __init__(
        self, queue: str | AsyncQueue, handler: HandlerRef, *, client: Any = None,
        url: str | None = None, concurrency: int = 10, lease: float = 30.0,
        heartbeat: float = 1 / 3, job_timeout: float | None = None, max_attempts: int = 5,
        backoff: Backoff | None = None, grace: float = 30.0,
        on_result: Callable[[JobResult], None] | None = None, idle_exit: float | None = None,
        poll: float = 0.5, prefetch: int | None = None,
    ) -> None:
        self.concurrency = int_in(concurrency, 1, 10_000, "concurrency")
        self.prefetch = concurrency if prefetch is None else int_in(prefetch, 0, 10_000,
                                                                     "prefetch")
        if not 0 < heartbeat < 1:
            raise InvalidArgument(f"heartbeat must be a fraction in (0, 1), not {heartbeat!r}")
        for value, what in ((job_timeout, "job_timeout"), (idle_exit, "idle_exit")):
            if value is not None:
                P.ms(value, what)
        P.ms(grace, "grace", zero=True)
        P.ms(poll, "poll")
        if not isinstance(queue, AsyncQueue):
            P.ms(lease, "lease")  # the other settings are checked when run() opens the queue
        self.handler = load(handler)
        self._pool_size = 0 if is_async(self.handler) else concurrency
        self._fast = not self._pool_size and job_timeout is None
        self._queue_arg = queue
        self._queue_opts: dict[str, Any] = dict(
            client=client, url=url, lease=lease, max_attempts=max_attempts, backoff=backoff)
        self.heartbeat, self.job_timeout, self.grace = heartbeat, job_timeout, grace
        self.on_result, self.idle_exit, self.poll = on_result, idle_exit, poll
        self.counts: dict[Outcome, int] = dict.fromkeys(Outcome, 0)
        self.max_in_flight = 0
        self._jobs: set[Job] = set()  # started and not settled
        self._buffer: deque[Lease] = deque()  # leased ahead, not started yet
        self._done: list[Job] = []  # succeeded, to complete at the end of this loop turn
        self._flushes: set[asyncio.Task[None]] = set()
        self._busy = 0
        self._dispatching = False
        self._incoming = 0  # leases asked for by calls still in flight
        self._job_avg: float | None = None  # moving average of handler durations (s)
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_ev = self._slot_ev = asyncio.Event()
        self._pool: ThreadPool | None = None
        self._q: AsyncQueue | None = None

    # ------------------------------------------------------------------------------ control

    @property
    def queue(self) -> AsyncQueue:
        """The queue (only while :meth:`run` runs)."""
        if self._q is None:
            raise RuntimeError("the worker is not running")
        return self._q

    def stop(self) -> None:
        """Ask for a graceful stop (thread-safe; also from a handler or a signal handler)."""
        self._stopping = True  # the fetcher stops leasing at once
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._request_stop)

    def _request_stop(self) -> None:
        self._stopping = True
        self._stop_ev.set()
        self._slot_ev.set()

    def _on_signal(self, sig: int) -> None:
        name = signal.Signals(sig).name
        if self._stopping:
            log.warning("second %s: exiting at once (leases will expire)", name)
            logging.shutdown()
            os._exit(1)
        log.info("%s: stopping; running jobs get %g s (signal again to exit now)", name,
                 self.grace)
        self._request_stop()

    def run_forever(self) -> int:
        """Run until SIGTERM/SIGINT (graceful; a second signal exits at once) or
        ``idle_exit``; returns the exit status (0)."""
        asyncio.run(self.run(handle_signals=True))
        return 0

    # ------------------------------------------------------------------------------ main

    async def run(self, *, handle_signals: bool = False) -> dict[Outcome, int]:
        """Work until :meth:`stop` (or ``idle_exit``), then shut down gracefully: stop
        leasing, give running jobs ``grace`` seconds, requeue the rest. Returns the counts
        of outcomes. Connection errors are logged and retried, never raised."""
        self._loop = loop = asyncio.get_running_loop()
        self._stop_ev, self._slot_ev = asyncio.Event(), asyncio.Event()
        if self._stopping:
            self._stop_ev.set()
        own = not isinstance(self._queue_arg, AsyncQueue)
        holder = f"{socket.gethostname()[:150]}:{os.getpid()}"  # shown while it holds a lease
        q = self._q = (AsyncQueue(self._queue_arg, holder=holder, **self._queue_opts)
                       if not isinstance(self._queue_arg, AsyncQueue) else self._queue_arg)
        self._pool = ThreadPool(self._pool_size) if self._pool_size else None
        signals = (signal.SIGTERM, signal.SIGINT) if handle_signals else ()
        for sig in signals:
            loop.add_signal_handler(sig, self._on_signal, sig)
        heart = asyncio.create_task(self._heartbeat(q.config.lease * self.heartbeat))
        fetcher = asyncio.create_task(self._fetch())
        stopper = asyncio.create_task(self._stop_ev.wait())
        try:
            await asyncio.wait({fetcher, stopper}, return_when=asyncio.FIRST_COMPLETED)
            self._request_stop()
            await asyncio.wait({fetcher})
            await self._drain()
            if not fetcher.cancelled() and (exc := fetcher.exception()) is not None:
                raise exc
        finally:
            for task in (heart, fetcher, stopper):
                task.cancel()
            await asyncio.gather(heart, stopper, return_exceptions=True)
            for job in self._jobs:  # only after a hard stop (run() itself cancelled)
                if job.task is not None:
                    job.task.cancel()
            for sig in signals:
                loop.remove_signal_handler(sig)
            self._stopping = False  # the worker may run again
            if self._pool is not None:
                self._pool.shutdown()
            if own:
                await q.close()
            self._q = None
        return dict(self.counts)

    async def _drain(self) -> None:
        """Requeue what never started; give running jobs ``grace`` s, requeue the rest;
        wait for the reports."""
        ahead, self._buffer = list(self._buffer), deque()
        await self._give_back(ahead)
        tasks = [j.task for j in self._jobs if j.task is not None]
        running = [j.task for j in self._jobs if j.running and j.task is not None]
        if running:
            log.info("waiting up to %g s for %d running jobs", self.grace, len(running))
            await asyncio.wait(running, timeout=self.grace)
        left = [j for j in self._jobs if j.running and not j.cancelled]
        for job in left:
            job.cancel(SHUTDOWN)
            if job.task is not None:
                job.task.cancel()
        await self._give_back(left)
        if tasks:
            await asyncio.wait(tasks, timeout=10.0)
        end = time.monotonic() + 10.0
        while (self._done or self._flushes) and time.monotonic() < end:
            self._flush()
            if self._flushes:
                await asyncio.wait(self._flushes, timeout=end - time.monotonic())

    async def _give_back(self, items: Sequence[Job | Lease]) -> None:
        leases = [x if isinstance(x, Lease) else x.lease for x in items]
        if not leases:
            return
        got = await asyncio.gather(*(self.queue.requeue(x) for x in leases),
                                   return_exceptions=True)
        for item, ok in zip(items, got, strict=True):
            back = ok is True
            error = None if back else f"requeue failed: {ok}"
            if isinstance(item, Job):
                self._settle(item, Outcome.REQUEUED if back else Outcome.LOST, error)
            else:
                self._emit(item, Outcome.REQUEUED if back else Outcome.LOST, error, 0.0)
        log.info("gave back %d unfinished items", sum(1 for x in got if x is True))

    # ------------------------------------------------------------------------------ fetch

    async def _fetch(self) -> None:
        q, loop, errors = self.queue, asyncio.get_running_loop(), 0
        idle_since = loop.time()
        while not self._stopping:
            room = min(self._room(), self._per_call())
            if room <= 0:
                self._slot_ev.clear()
                await self._slot_ev.wait()
                continue
            self._incoming += room
            try:
                leases = await q.lease_many(room, block=True, timeout=self.poll)
                errors = 0
            except _NETWORK as exc:
                errors += 1
                if errors == 1 or errors % 20 == 0:
                    log.warning("cannot lease from %s (retrying): %s", q.name, exc)
                await asyncio.sleep(min(5.0, 0.05 * 2**errors))
                continue
            finally:
                self._incoming -= room
            if self._stopping:
                await self._give_back(leases)
                break
            self._buffer.extend(leases)
            self._dispatch()
            if leases or self._busy:
                idle_since = loop.time()
            elif self.idle_exit is not None and loop.time() - idle_since >= self.idle_exit:
                log.info("idle for %g s: stopping", self.idle_exit)
                break

    def _room(self) -> int:
        """Leases to ask for now: free slots plus the prefetch, less what is at hand or asked
        for already."""
        return (self.concurrency + self._ahead() - self._busy - len(self._buffer)
                - self._incoming)

    def _per_call(self) -> int:
        """Most leases one call asks for: a third of what the worker may hold, so that while
        jobs are short several calls are in flight (the server takes one batch while this
        process runs another) instead of one big call at a time."""
        return min(P.MAX_BATCH, max(1, (self.concurrency + self._ahead() + 2) // 3))

    def _ahead(self) -> int:
        """Items to lease beyond the free slots: as many as start within ~50 ms."""
        avg = self._job_avg
        if not self.prefetch or avg is None:
            return 0
        return min(self.prefetch, int(self.concurrency * 0.05 / max(avg, 1e-6)))

    def _dispatch(self) -> None:
        """Start buffered items while slots are free. On Python 3.12+ in the common case
        (async handler, no timeout, no job hooks) each job's task starts eagerly: a handler
        that returns without suspending is done before this returns, never scheduled; for
        at most EAGER_BUDGET s per round, so that a run of handlers that never await cannot
        hold up the heartbeat."""
        loop = self._loop
        assert loop is not None
        eager = _EAGER if self._fast and not _hooks.JOB_HOOKS else None
        until = time.monotonic() + EAGER_BUDGET
        self._dispatching = True
        try:
            while self._buffer and self._busy < self.concurrency and not self._stopping:
                job = Job(self._buffer.popleft())
                self._jobs.add(job)
                self._busy += 1
                self.max_in_flight = max(self.max_in_flight, self._busy)
                if eager is not None and job.started < until:
                    task = asyncio.Task(self._run_job(job), loop=loop, **eager)
                    if job.task is None:  # (a report task made by _ended stays)
                        job.task = task
                else:
                    job.task = loop.create_task(self._run_job(job))
        finally:
            self._dispatching = False

    def _release(self, late: asyncio.Future[Any] | None = None) -> None:
        if late is not None and not late.cancelled():
            late.exception()  # a timed-out sync handler returned at last: drop its outcome
        self._busy -= 1
        if self._buffer and not self._dispatching:  # (a job run eagerly by _dispatch)
            self._dispatch()
        self._slot_ev.set()

    async def _run_job(self, job: Job) -> None:
        late: asyncio.Future[Any] | None = None
        result: Any = None
        err: BaseException | None = None
        factories = _hooks.JOB_HOOKS
        try:
            if self._fast and not factories:  # async, no timeout, no hooks: the common case
                CURRENT.set(job)  # this task's own context
                try:
                    result = await self.handler(job.lease)
                except Exception as exc:
                    err = exc
            else:
                result, err, late = await execute(self.handler, job, self._pool,
                                                  self.job_timeout, factories)
        except asyncio.CancelledError:
            if job.reason not in (LOST, SHUTDOWN):
                raise  # not ours: a hard stop
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
        if self._ended(job, result, err, late):
            await self._report(job, result, err)

    def _ended(self, job: Job, result: Any, err: BaseException | None,
               late: asyncio.Future[Any] | None) -> bool:
        """The handler returned (or raised, or was cancelled): free its slot and settle what
        needs no server call. True if the job must still be reported (completed with a
        result, or failed) by the caller; a job that ended inside its eager first step (no
        ``job.task`` yet) gets a task of its own for that instead."""
        job.running = False
        took = time.monotonic() - job.started
        avg = self._job_avg
        self._job_avg = took if avg is None else avg * 0.9 + took * 0.1
        if late is None:
            self._release()
        else:  # the thread cannot be stopped: its slot stays taken until it returns
            late.add_done_callback(self._release)
        if job.reason == LOST:
            self._settle(job, Outcome.LOST, None)
        elif job.reason == SHUTDOWN:
            pass  # requeued by _drain
        elif err is None and job.reason is None and result is None:
            self._done.append(job)
            if len(self._done) == 1:
                asyncio.get_running_loop().call_soon(self._flush)
        elif job.task is not None:
            return True
        else:
            job.task = asyncio.get_running_loop().create_task(self._report(job, result, err))
        return False

    def _flush(self, _: object = None) -> None:
        """Complete every job that succeeded since the last flush, in one call; at most two
        calls in flight (the rest waits and makes the next batch bigger)."""
        if self._done and len(self._flushes) < 2:
            task = asyncio.create_task(self._complete(self._done))
            self._done = []
            self._flushes.add(task)
            task.add_done_callback(self._flushes.discard)
            task.add_done_callback(self._flush)

    async def _complete(self, jobs: list[Job]) -> None:
        """Complete ``jobs`` and, in the same round trip, lease as many next items as there
        is room for (the fetcher then only waits while the queue is empty)."""
        q = self.queue
        leases = [j.lease for j in jobs]
        more: list[Lease] = []
        n = 0 if self._stopping or len(leases) > P.MAX_BATCH else max(
            0, min(self._room(), self._per_call()))
        self._incoming += n
        try:
            if n:
                flags, more = await q.complete_many_and_lease(leases, n=n)
            else:
                flags = await q.complete_many(leases)
        except (LeaseqError, *_NETWORK) as exc:
            log.error("could not complete %d jobs (their leases will expire): %s",
                      len(jobs), exc)
            for job in jobs:
                self._settle(job, Outcome.ERROR, str(exc))
            return
        finally:
            self._incoming -= n
        if more:
            if self._stopping:
                await self._give_back(more)
            else:
                self._buffer.extend(more)
                self._dispatch()
        now, live, emit = time.monotonic(), self._jobs, self._emit
        for job, ok in zip(jobs, flags, strict=True):
            if job in live:
                live.remove(job)
                emit(job.lease, Outcome.COMPLETED if ok else Outcome.STALE, None,
                     now - job.started, job._hooks)

    async def _report(self, job: Job, result: Any, err: BaseException | None) -> None:
        outcome, text = await report(self.queue, job, result, err, self.job_timeout)
        self._settle(job, outcome, text)

    def _settle(self, job: Job, outcome: Outcome, error: str | None) -> None:
        if job in self._jobs:
            self._jobs.remove(job)
            self._emit(job.lease, outcome, error, time.monotonic() - job.started, job._hooks)

    def _emit(self, lease: Lease, outcome: Outcome, error: str | None, seconds: float,
              entered: _hooks.Entered | None = None) -> None:
        self.counts[outcome] += 1
        if self.on_result is not None or entered is not None:
            result = JobResult(lease, outcome, error, seconds)
            if self.on_result is not None:
                try:
                    self.on_result(result)
                except Exception:
                    log.exception("on_result hook failed")
            if entered is not None:
                entered.settled(result)

    # ------------------------------------------------------------------------------ heartbeat

    async def _heartbeat(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            held: list[Job | Lease] = [
                j for j in self._jobs if j.running and not j.cancelled]
            held += self._buffer
            for i in range(0, len(held), 1000):
                chunk = held[i : i + 1000]
                try:
                    flags = await self.queue.extend_many(
                        [x.lease if isinstance(x, Job) else x for x in chunk])
                except (LeaseqError, *_NETWORK) as exc:
                    log.warning("heartbeat failed (leases may expire): %s", exc)
                    break
                for x, ok in zip(chunk, flags, strict=True):
                    if not ok:
                        self._lose(x)

    def _lose(self, x: Job | Lease) -> None:
        lease = x.lease if isinstance(x, Job) else x
        if isinstance(x, Job):
            if not x.running or x.cancelled:
                return
            x.cancel(LOST)
            if self._pool is None and x.task is not None:
                x.task.cancel()
        elif x in self._buffer:
            self._buffer.remove(x)
            self._emit(x, Outcome.LOST, None, 0.0)
        else:
            return
        log.warning("lease lost: queue=%s id=%s attempt=%d (its outcome will be ignored)",
                    self.queue.name, lease.id, lease.attempt)
