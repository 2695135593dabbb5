"""What a handler sees and raises: :class:`Retry`, :class:`JobContext`, :func:`current`; and
how a handler given as ``"module:function"`` is found, how errors become dead-letter text, and
the small daemon thread pool that runs sync handlers."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import importlib
import inspect
import os
import queue as stdqueue
import sys
import threading
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ..hooks import Entered, JobHookFactory
from ..models import Lease

Handler = Callable[[Lease], Any]
"""A handler takes the :class:`~leaseq.Lease` (``.data``, ``.id``, ``.attempt``) and returns a
result (kept with the completed item unless None) or raises to fail the attempt. It may be a
plain function (run in a worker thread) or an ``async def`` (run as a task on the loop)."""

HandlerRef = str | Handler  # a callable, or "module:function"

_EVENT_LOCK = threading.Lock()
CURRENT: contextvars.ContextVar[JobContext] = contextvars.ContextVar("leaseq_job")


class Retry(Exception):
    """Raise from a handler to fail this attempt and retry after ``delay`` seconds (None: the
    queue's backoff). It counts as an attempt: at ``max_attempts`` the item is dead-lettered."""

    def __init__(self, delay: float | None = None, reason: str = "retry requested") -> None:
        super().__init__(reason)
        self.delay = delay
        self.reason = reason


class JobContext:
    """The running job, as seen by its handler (see :func:`current`).

    ``cancelled`` becomes True when the worker no longer wants the handler's result: the lease
    was lost (``lost``), the job timed out, or the worker is shutting down past its grace
    period. Async handlers are cancelled then; sync handlers should poll ``cancelled`` or sleep
    with :meth:`wait`, which returns early on cancellation.
    """

    __slots__ = ("_event", "_hooks", "lease", "reason")

    def __init__(self, lease: Lease) -> None:
        self.lease = lease
        self.reason: str | None = None
        self._event: threading.Event | None = None  # made on first need: most jobs never wait
        self._hooks: Entered | None = None  # the job hooks entered around the handler

    @property
    def lost(self) -> bool:
        """True once a heartbeat found the lease gone (expired and taken, or removed)."""
        return self.reason == "lease lost"

    @property
    def cancelled(self) -> bool:
        """True once the handler's outcome will be ignored."""
        return self.reason is not None

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True if the job was cancelled meanwhile (for sync
        handlers; an async handler is cancelled instead)."""
        event = self._ev()
        return self.reason is not None or event.wait(seconds)

    def cancel(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
        self._ev().set()

    def _ev(self) -> threading.Event:
        if self._event is None:
            with _EVENT_LOCK:
                if self._event is None:
                    self._event = threading.Event()
        return self._event


def current() -> JobContext:
    """The job the calling handler runs (async or sync); LookupError outside a handler."""
    return CURRENT.get()


def is_async(handler: Handler) -> bool:
    """True when calling ``handler`` returns a coroutine (``async def`` or async ``__call__``)."""
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
        getattr(handler, "__call__", None)  # noqa: B004 (objects with an async __call__)
    )


def load(ref: str | Callable[..., Any]) -> Callable[..., Any]:
    """Resolve ``"package.module:attr"`` (the current directory is importable) or return a
    callable as is. Raises ImportError/AttributeError/TypeError with a one-line message."""
    if not isinstance(ref, str):
        if not callable(ref):
            raise TypeError(f"handler must be callable, not {type(ref).__name__}")
        return ref
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        raise ImportError(f"handler must look like 'module:function', not {ref!r}")
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(f"cannot import {module_name!r}: {exc}") from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AttributeError(f"module {module_name!r} has no attribute {attr!r}") from None
    if not callable(obj):
        raise TypeError(f"{ref} is not callable")
    return obj  # type: ignore[no-any-return]


def error_text(exc: BaseException, frames: int = 3, limit: int = 1500) -> str:
    """``Type: message`` and the last ``frames`` frames, at most ``limit`` characters."""
    head = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    lines = [head[: limit // 2]]
    here = str(Path(__file__).parent)
    stack = [f for f in traceback.extract_tb(exc.__traceback__)
             if not f.filename.startswith(here)]  # the worker's own frames say nothing
    for f in stack[-frames:]:
        code = f" | {f.line.strip()[:120]}" if f.line else ""
        lines.append(f"  {Path(f.filename).name}:{f.lineno} in {f.name}{code}")
    return "\n".join(lines)[:limit]


async def call_async(handler: Handler, ctx: JobContext,
                     hooks: tuple[JobHookFactory, ...] = ()) -> Any:
    """Run an async handler with ``ctx`` as :func:`current`, inside the job ``hooks``."""
    CURRENT.set(ctx)  # the task has its own copy of the context
    if not hooks:
        result: Awaitable[Any] = handler(ctx.lease)
        return await result
    entered = ctx._hooks = Entered(ctx.lease, hooks)
    try:
        value = await handler(ctx.lease)
    except BaseException as exc:
        entered.exit(exc)
        raise
    entered.exit(None)
    return value


def call_sync(handler: Handler, ctx: JobContext, hooks: tuple[JobHookFactory, ...]) -> Any:
    """Run a sync handler with ``ctx`` as :func:`current`, inside the job ``hooks`` (entered
    and exited on this thread)."""
    token = CURRENT.set(ctx)
    try:
        if not hooks:
            return handler(ctx.lease)
        entered = ctx._hooks = Entered(ctx.lease, hooks)
        try:
            value = handler(ctx.lease)
        except BaseException as exc:
            entered.exit(exc)
            raise
        entered.exit(None)
        return value
    finally:
        CURRENT.reset(token)


def _retrieve(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()


class ThreadPool:
    """A fixed set of daemon threads for sync handlers (daemon: a handler that never returns
    cannot keep the process alive after shutdown)."""

    def __init__(self, size: int, name: str = "leaseq-worker") -> None:
        self._jobs: stdqueue.SimpleQueue[tuple[Callable[[], None]] | None] = (
            stdqueue.SimpleQueue()
        )
        self._threads = [threading.Thread(target=self._loop, name=f"{name}-{i}", daemon=True)
                         for i in range(size)]
        for t in self._threads:
            t.start()

    def _loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            job[0]()

    def run(self, handler: Handler, ctx: JobContext,
            hooks: tuple[JobHookFactory, ...] = ()) -> asyncio.Future[Any]:
        """Run ``handler(ctx.lease)`` on a thread, inside the job ``hooks``; the future (of the
        calling loop) gets the result or the exception."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        fut.add_done_callback(_retrieve)  # an abandoned job's late error is not "unretrieved"

        def settle(ok: bool, value: Any) -> None:
            if not fut.done():
                (fut.set_result if ok else fut.set_exception)(value)

        def job() -> None:
            try:
                value, ok = call_sync(handler, ctx, hooks), True
            except BaseException as exc:
                value, ok = exc, False
            with contextlib.suppress(RuntimeError):  # a closed loop waits for nothing
                loop.call_soon_threadsafe(settle, ok, value)

        self._jobs.put((job,))
        return fut

    def shutdown(self) -> None:
        """Let every thread exit once its current job returns (never waits)."""
        for _ in self._threads:
            self._jobs.put(None)
