"""The ``Torrelque`` class: Torrelque 0.9's queue API on a :class:`leaseq.aio.Queue`.

See the package docstring (:mod:`leaseq.compat.torrelque`) for the design.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from redis import exceptions as rex
from redis.commands.core import AsyncScript

from leaseq import protocol as P
from leaseq import scripts
from leaseq.aio import Queue
from leaseq.codec import rewrap
from leaseq.errors import InvalidId
from leaseq.keys import validate_id
from leaseq.models import Lease, State

from ._types import (
    DEFAULT_SERIALISER,
    TorrelqueError,
    TorrelqueLookupError,
    TorrelqueQueueStats,
    TorrelqueTaskSerialiser,
    TorrelqueTaskState,
    TorrelqueTaskStatus,
    TorrelqueTimeoutError,
    count,
    num,
    pack,
    unpack,
)

__all__ = ["Torrelque"]

logger = logging.getLogger("leaseq.compat.torrelque")

# Engine scripts that run inside a MULTI or a caller's pipeline, where the usual NOSCRIPT
# fallback (EVAL) is not available: they are loaded up front.
_PRELOADED = ("add", "complete", "requeue", "state")
_FINAL = (TorrelqueTaskStatus.COMPLETED, TorrelqueTaskStatus.REJECTED)
_PRUNE_AFTER = 600.0  # seconds past its deadline after which a held lease is forgotten

Command = tuple[scripts.Arg, ...]


@dataclass(slots=True)
class _Held:
    """A task this instance dequeued: its lease (for fenced calls) and envelope header."""

    lease: Lease
    meta: dict[str, Any]
    body: bytes | None  # serialised task data; None for an item added through plain leaseq
    timeout: float
    dequeued: float  # server time of the dequeue (s)
    expires: float  # local monotonic time the lease runs out


def _evalsha(call: P.Call[Any]) -> Command:
    sha = scripts.script(call.script).sha
    return ("EVALSHA", sha, len(call.keys), *call.keys, *call.args)


def _is_noscript(exc: BaseException) -> bool:
    return isinstance(exc, rex.NoScriptError) or (
        isinstance(exc, rex.ResponseError) and str(exc).startswith("NOSCRIPT"))


def _seconds(value: object, what: str, *, zero: bool = False) -> float:
    """A validated duration in seconds (InvalidArgument, a ValueError, otherwise)."""
    return P.ms(value, what, zero=zero) / 1000.0


class Torrelque:
    """A reliable work queue with Torrelque 0.9's API, on leaseq.

    Args:
        client: a ``redis.asyncio.Redis`` (or ``redis.asyncio.RedisCluster``) client.
        queue: queue name (leaseq keys ``leaseq:{<queue>}:*``; no braces).
        serialiser: how task data and results become bytes (JSON by default).
    """

    task_timeout: float = 300
    """Default task timeout (s): a task not released or requeued within it comes back."""
    sweep_interval: float = 30
    """Seconds between two sweeps of :meth:`schedule_sweep`."""
    result_ttl: float = 3600
    """Default time (s) a released task's result (and state) stays readable."""
    watch_interval: float = 0.05
    """First poll interval of :meth:`watch` (s), used again after each change."""
    watch_max_interval: float = 1.0
    """Longest poll interval of :meth:`watch` (s); the interval grows 1.5x per idle poll."""

    def __init__(self, client: Any, *, queue: str = "trq",
                 serialiser: TorrelqueTaskSerialiser = DEFAULT_SERIALISER) -> None:
        self.client = client
        self.serialiser = serialiser
        # max_attempts=0: Torrelque retries a task forever (no dead letters).
        self._queue = Queue(queue, client, max_attempts=0)
        self._cfg = self._queue.config
        self._held: dict[str, _Held] = {}
        self._next_prune = 0.0
        self._loaded = False
        self._script_objects: dict[str, AsyncScript] = {}
        self._sweep_task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Future[Any]] = set()

    @property
    def queue(self) -> str:
        """The queue's name."""
        return self._queue.name

    # ------------------------------------------------------------------------------ produce

    async def enqueue(self, task: Any, task_timeout: float | None = None,
                      delay: float | None = None, pipeline: Any = None) -> str:
        """Add a task; it is ready after ``delay`` seconds. Returns its id (32 hex digits).
        With ``pipeline`` the write is queued there and happens when the caller executes it."""
        timeout = self._timeout(task_timeout)
        wait = None if delay is None else _seconds(delay, "delay", zero=True)
        task_id = uuid.uuid4().hex
        envelope = pack({"to": timeout, "et": time.time()}, self._dumps(task))
        if pipeline is not None:
            entry = P.entry(self._cfg, envelope, task_id, wait)
            await self._on_pipeline(pipeline, [_evalsha(P.add(self._cfg, [entry]))])
        else:
            await self._queue.add(envelope, id=task_id, delay=wait)
        return task_id

    # ------------------------------------------------------------------------------ consume

    async def dequeue(self, timeout: float | None = None, max_tasks: int = 1) -> Any:
        """The next task as ``(task_id, data)``, or a list of up to ``max_tasks`` such pairs
        when ``max_tasks > 1``. Waits without polling up to ``timeout`` seconds (None: forever),
        then raises :class:`TorrelqueTimeoutError`."""
        lease_for = self._timeout(None)
        leases = await self._queue.lease_many(P.count(max_tasks, "max_tasks"), lease=lease_for,
                                              timeout=timeout)
        if not leases:
            raise TorrelqueTimeoutError(f"no task in queue {self.queue!r} within {timeout} s")
        try:
            pairs = await self._take(leases, lease_for)
        except asyncio.CancelledError:  # cancelled while extending: the tasks go straight back
            task = asyncio.ensure_future(
                asyncio.gather(*(self._queue.requeue(x) for x in leases), return_exceptions=True))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
            raise
        return pairs if max_tasks > 1 else pairs[0]

    async def _take(self, leases: list[Lease], lease_for: float) -> list[tuple[str, Any]]:
        now = time.monotonic()
        held: list[_Held] = []
        out: list[tuple[str, Any]] = []
        bad: list[tuple[Lease, Exception]] = []
        own: dict[float, list[Lease]] = {}  # leases whose task timeout is not lease_for
        for lease in leases:
            meta: dict[str, Any] = {}
            body: bytes | None = None
            try:
                raw = lease.data
                if isinstance(raw, bytes):
                    meta, body = unpack(raw)
                    data = self.serialiser.loads(body)
                else:  # an item added through plain leaseq (JSON codec)
                    data = raw
            except Exception as exc:
                bad.append((lease, exc))
            timeout = num(meta, "to")
            timeout = timeout if timeout is not None and timeout > 0 else lease_for
            if timeout != lease_for:
                own.setdefault(timeout, []).append(lease)
            if not bad or bad[-1][0] is not lease:  # decoded
                held.append(_Held(lease, meta, body, timeout,
                                  lease.deadline_ms / 1000.0 - lease_for, now + timeout))
                out.append((lease.id, data))
        if own:
            await asyncio.gather(*(self._queue.extend_many(ls, t) for t, ls in own.items()))
        if bad:
            # Give the good ones back; the bad ones stay leased until their timeout, as if
            # this consumer had crashed on them, so nothing is lost and the error is loud.
            if held:
                await asyncio.gather(*(self._queue.requeue(h.lease) for h in held))
            ids = ", ".join(f"{x.id} ({type(e).__name__}: {e})" for x, e in bad)
            raise TorrelqueError(f"cannot deserialise task(s) {ids}") from bad[0][1]
        for h in held:
            self._held[h.lease.id] = h
        self._prune(now)
        return out

    def _prune(self, now: float) -> None:
        """Forget leases that ran out long ago (their tasks went back or to someone else)."""
        if now < self._next_prune:
            return
        self._next_prune = now + 60.0
        for task_id in [k for k, h in self._held.items() if h.expires + _PRUNE_AFTER < now]:
            del self._held[task_id]

    async def requeue(self, task_id: str, delay: float | None = None,
                      task_timeout: float | None = None, pipeline: Any = None) -> None:
        """Put a task this instance dequeued back, ready after ``delay`` seconds (no sweep
        needed), with a new ``task_timeout`` if given. A lease that is no longer current (the
        task timed out and went back or to another consumer) is left alone.

        A task this instance did not dequeue is given back whatever lease it has now (no-op
        if it is not being worked on); its timeout and counters then stay as they were."""
        delay_ms = P.ms(0 if delay is None else delay, "delay", zero=True)
        held = self._held.get(task_id)
        if held is None:
            # Not dequeued here: give back whatever lease the task has now (as Torrelque did
            # for any id); its stored header (timeout, counters) stays as it was.
            try:
                validate_id(task_id)
            except InvalidId as exc:
                raise TorrelqueLookupError(f"task {task_id!r} not found: {exc}") from exc
            one: P.Giveback = ((task_id, 0, 0), delay_ms, b"")
        else:
            timeout = held.timeout if task_timeout is None else _seconds(task_timeout,
                                                                         "task_timeout")
            payload = b""
            if held.body is not None:
                meta = dict(held.meta, to=timeout, rc=count(held.meta, "rc") + 1,
                            lr=time.time(), ld=held.dequeued)
                payload = self._cfg.codec.encode(pack(meta, held.body))
                payload = rewrap(held.lease._hraw, payload)  # keeps the item's headers
            one = (P.fenced(held.lease), delay_ms, payload)
        commands: list[Command] = [_evalsha(P.requeue(self._cfg, [one]))]
        if pipeline is not None:
            await self._on_pipeline(pipeline, commands)
        else:
            await self._transact(commands)
        self._held.pop(task_id, None)

    async def release(self, task_id: str, result: Any = None, result_ttl: float | None = None,
                      status: TorrelqueTaskStatus = TorrelqueTaskStatus.COMPLETED,
                      pipeline: Any = None) -> None:
        """Finish a task with a final ``status`` (COMPLETED or REJECTED). With a ``result``
        (any value but None) the task's state and result stay readable for ``result_ttl``
        seconds; without one the task is forgotten at once. Works for any task id; a lease
        of this instance that ran out still finishes the task if nobody finished it first."""
        try:
            final = TorrelqueTaskStatus(status)
        except ValueError:
            final = None
        if final not in _FINAL:
            raise TorrelqueError(f"release needs a final status (COMPLETED, REJECTED), "
                                 f"not {status!r}")
        assert final is not None
        held = self._held.get(task_id)
        target: Lease | str = held.lease if held is not None else validate_id(task_id)
        stored: bytes | None = None
        ttl = 0.0
        if result is not None:
            ttl = _seconds(self.result_ttl if result_ttl is None else result_ttl, "result_ttl")
            meta = await self._release_meta(task_id, held)
            meta.update(st=int(final), rt=time.time())
            stored = pack(meta, self._dumps(result))
        if pipeline is not None:
            done = P.done(self._cfg, target, None, stored, ttl or None)
            await self._on_pipeline(pipeline, [_evalsha(P.complete(self._cfg, [done]))])
        else:
            await self._queue.complete(target, result=stored, result_ttl=ttl or None)
        self._held.pop(task_id, None)

    async def _release_meta(self, task_id: str, held: _Held | None) -> dict[str, Any]:
        """The header kept with a result: what the state of the task said until now."""
        meta: dict[str, Any]
        if held is not None:
            meta = {k: v for k, v in held.meta.items() if k in ("et", "rc", "lr")}
            meta.update(to=held.timeout, ld=held.dequeued,
                        dc=held.lease.attempt + count(held.meta, "rc"))
            return meta
        try:
            s = await self.get_task_state(task_id)
        except TorrelqueLookupError:
            return {}
        pairs = (("et", s.enqueue_time), ("to", s.timeout), ("lr", s.last_requeue_time),
                 ("ld", s.last_dequeue_time))
        meta = {k: v for k, v in pairs if v is not None}
        meta.update(rc=s.requeue_count, dc=s.dequeue_count)
        return meta

    # ------------------------------------------------------------------------------ inspect

    async def get_task_state(self, task_id: str) -> TorrelqueTaskState:
        """The state of a task; :class:`TorrelqueLookupError` when it is unknown (never
        added, released without a result, or its result expired)."""
        try:
            st = await self._queue.state(task_id)
        except InvalidId as exc:  # no task can have such an id
            raise TorrelqueLookupError(f"task {task_id!r} not found: {exc}") from exc
        if st.state is State.UNKNOWN:
            raise TorrelqueLookupError(f"task {task_id!r} not found in queue {self.queue!r}")
        if st.state is State.COMPLETED:
            return self._released_state(st.result)
        meta: dict[str, Any] = {}
        if st.payload is not None:
            try:
                raw = self._cfg.codec.decode(st.payload)
            except Exception:
                raw = None
            if isinstance(raw, bytes):
                meta = unpack(raw)[0]
        timeout = num(meta, "to") or self._timeout(None)
        status = {
            State.PENDING: TorrelqueTaskStatus.PENDING,
            State.DELAYED: TorrelqueTaskStatus.DELAYED,
            State.LEASED: TorrelqueTaskStatus.WORKING,
        }.get(st.state, TorrelqueTaskStatus.REJECTED)  # DEAD (plain leaseq use only)
        dequeued = num(meta, "ld")
        if st.state is State.LEASED and st.deadline_ms is not None:
            dequeued = st.deadline_ms / 1000.0 - timeout
        rc = count(meta, "rc")
        return TorrelqueTaskState(status, num(meta, "et"), timeout, None, None,
                                  st.attempts + rc, rc, dequeued, num(meta, "lr"))

    def _released_state(self, kept: Any) -> TorrelqueTaskState:
        if not isinstance(kept, bytes):  # completed through plain leaseq
            return TorrelqueTaskState(TorrelqueTaskStatus.COMPLETED, None, None, kept, None,
                                      0, 0, None, None)
        meta, body = unpack(kept)
        code = count(meta, "st")
        status = TorrelqueTaskStatus(code) if code in _FINAL else TorrelqueTaskStatus.COMPLETED
        result = self.serialiser.loads(body) if meta else kept
        return TorrelqueTaskState(status, num(meta, "et"), num(meta, "to"), result,
                                  num(meta, "rt"), count(meta, "dc"), count(meta, "rc"),
                                  num(meta, "ld"), num(meta, "lr"))

    async def watch(self, task_id: str,
                    timeout: float | None = None) -> AsyncIterator[TorrelqueTaskState]:
        """Yield the task's state now and after each change, until a final status.

        Polls :meth:`get_task_state` (no keyspace notifications needed): every
        ``watch_interval`` s after a change, backing off 1.5x per idle poll up to
        ``watch_max_interval`` s. A change is a new status or new dequeue/requeue counts
        (states passed through between two polls are not seen). Raises
        :class:`TorrelqueLookupError` if the task is unknown at the start and
        :class:`TorrelqueTimeoutError` after ``timeout`` seconds; ends without a final state
        if the task is released without a result (its state is gone)."""
        loop = asyncio.get_running_loop()
        end = None if timeout is None else loop.time() + _seconds(timeout, "timeout", zero=True)
        state = await self.get_task_state(task_id)
        yield state
        interval = self.watch_interval
        while not state.status.isfinal():
            pause = interval
            if end is not None:
                left = end - loop.time()
                if left <= 0:
                    raise TorrelqueTimeoutError(f"task {task_id!r} not final within {timeout} s")
                pause = min(pause, left)
            await asyncio.sleep(pause)
            try:
                new = await self.get_task_state(task_id)
            except TorrelqueLookupError:
                return
            if (new.status, new.dequeue_count, new.requeue_count) != (
                    state.status, state.dequeue_count, state.requeue_count):
                state = new
                interval = self.watch_interval
                yield state
            else:
                interval = min(interval * 1.5, self.watch_max_interval)

    async def get_queue_stats(self) -> TorrelqueQueueStats:
        """Task counts, read atomically."""
        s = await self._queue.stats()
        return TorrelqueQueueStats(s.pending + s.delayed + s.leased + s.dead, s.pending,
                                   s.leased, s.delayed)

    # ------------------------------------------------------------------------------ sweep

    async def sweep(self) -> tuple[int, int, int]:
        """Return timed-out tasks and due delayed tasks to the queue now; returns
        ``(stale, delayed, undequeued)`` counts (undequeued is always 0: leaseq has no gap
        between popping and marking a task). Never needed: every dequeue does this too."""
        promoted, reclaimed = await self._queue.sweep()
        return reclaimed, promoted, 0

    def schedule_sweep(self) -> None:
        """Run :meth:`sweep` every ``sweep_interval`` seconds in a background task (of the
        running event loop) until :meth:`unschedule_sweep`. Calling it again does nothing."""
        if self._sweep_task is None or self._sweep_task.done():
            self._sweep_task = asyncio.get_running_loop().create_task(self._sweep_loop())

    def unschedule_sweep(self) -> None:
        """Stop the background sweep."""
        if self._sweep_task is not None:
            self._sweep_task.cancel()
            self._sweep_task = None

    async def _sweep_loop(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception:
                logger.exception("torrelque sweep of queue %r failed", self.queue)
            await asyncio.sleep(self.sweep_interval)

    async def close(self) -> None:
        """Stop the sweep and finish pending calls (not in Torrelque; the client stays open)."""
        self.unschedule_sweep()
        await self._queue.close()

    # ------------------------------------------------------------------------------ plumbing

    def _timeout(self, value: float | None) -> float:
        return _seconds(self.task_timeout if value is None else value, "task_timeout")

    def _dumps(self, obj: Any) -> bytes:
        data = self.serialiser.dumps(obj)
        if not isinstance(data, bytes | bytearray):
            raise TorrelqueError(f"serialiser.dumps must return bytes, not {type(data).__name__}")
        return bytes(data)

    async def _load(self) -> None:
        """Load the scripts run inside MULTI or a caller's pipeline (once per instance)."""
        if self._loaded:
            return
        client = self._queue.client
        try:
            for name in _PRELOADED:
                await client.script_load(scripts.script(name).source)
        except Exception as exc:
            raise scripts.translate(exc) from exc
        self._loaded = True

    def _script_object(self, sha: str) -> AsyncScript | None:
        """A redis-py script object for ``sha``, so a caller's pipeline reloads it if needed."""
        if sha not in self._script_objects:
            sources = {scripts.script(n).sha: scripts.script(n).source for n in _PRELOADED}
            if sha not in sources:
                return None
            self._script_objects[sha] = self._queue.client.register_script(sources[sha])
        return self._script_objects[sha]

    async def _on_pipeline(self, pipeline: Any, commands: Sequence[Command]) -> None:
        """Queue ``commands`` on a caller's pipeline (they run when the caller executes it)."""
        await self._load()
        registry = getattr(pipeline, "scripts", None)
        for cmd in commands:
            if isinstance(registry, set) and cmd[0] == "EVALSHA":
                obj = self._script_object(str(cmd[1]))
                if obj is not None:
                    registry.add(obj)
            queued = pipeline.execute_command(*cmd)
            if queued is not pipeline and inspect.isawaitable(queued):
                await queued  # a pipeline in WATCH mode runs commands at once

    async def _transact(self, commands: Sequence[Command]) -> list[Any]:
        """Run ``commands`` in one MULTI/EXEC (all keys share the queue's slot). Every use is
        safe to repeat, so a NOSCRIPT (server restarted or flushed) reloads and retries once."""
        for attempt in (0, 1):
            await self._load()
            pipe = self._queue.client.pipeline(transaction=True)
            for cmd in commands:
                pipe.execute_command(*cmd)
            try:
                replies: list[Any] = await pipe.execute(raise_on_error=False)
            except Exception as exc:
                if attempt == 0 and _is_noscript(exc):
                    self._loaded = False
                    continue
                raise scripts.translate(exc) from exc
            errors = [r for r in replies if isinstance(r, Exception)]
            if attempt == 0 and any(_is_noscript(e) for e in errors):
                self._loaded = False
                continue
            if errors:
                raise scripts.translate(errors[0]) from errors[0]
            return replies
        raise TorrelqueError("scripts could not be loaded")  # pragma: no cover

    def __repr__(self) -> str:
        return f"<Torrelque queue={self.queue!r}>"
