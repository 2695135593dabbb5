"""Process-wide hooks for instrumentation (what :mod:`leaseq.metrics` and :mod:`leaseq.otel`
build on): header providers called at every add, and job hooks entered around every handler
run of the worker runtime. With none registered, neither path does any extra work beyond one
check of an empty tuple.

* :func:`add_header_provider` ``(fn)``: ``fn()`` returns headers (or None) to store with every
  item added from this process, sync or asyncio; headers given to ``add``/``add_many`` win
  over a provider's, and a later provider's win over an earlier one's. A provider that raises
  is logged and skipped (the add goes on); headers it returns are validated like any others.
* :func:`add_job_hook` ``(factory)``: ``factory(lease)`` returns a context manager that the
  worker enters right before the handler runs and exits right after it returns or raises, in
  the handler's own context: the job's task for an async handler, the pool thread for a sync
  one, so a contextvar set in ``__enter__`` (an OpenTelemetry current span, say) is seen by
  the handler. ``__exit__`` gets the handler's exception (None on success; a cancellation
  shows as ``asyncio.CancelledError``), its return value is ignored (a hook cannot swallow a
  failure), and an error raised by a factory, ``__enter__`` or ``__exit__`` is logged and
  never changes the job. If the context manager also has a method ``settled(result)``, it is
  called once the job's outcome is known, with the :class:`leaseq.worker.JobResult`
  (``outcome`` completed, stale, retried, dead, lost, requeued or error), on the worker's loop.

Both return a function that removes the registration again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import Any

from .models import Lease

log = logging.getLogger("leaseq.hooks")

HeaderProvider = Callable[[], Mapping[str, str] | None]
JobHookFactory = Callable[[Lease], AbstractContextManager[Any]]

_lock = threading.Lock()
PROVIDERS: tuple[HeaderProvider, ...] = ()
JOB_HOOKS: tuple[JobHookFactory, ...] = ()


def add_header_provider(fn: HeaderProvider) -> Callable[[], None]:
    """Call ``fn()`` at every add of this process and store the headers it returns with the
    items. Returns a function that removes this provider (idempotent)."""
    return _register("PROVIDERS", fn, "header provider")


def add_job_hook(factory: JobHookFactory) -> Callable[[], None]:
    """Enter ``factory(lease)`` around every handler run of the worker runtime in this
    process (see the module docstring). Returns a function that removes it (idempotent)."""
    return _register("JOB_HOOKS", factory, "job hook factory")


def _register(registry: str, fn: Callable[..., Any], what: str) -> Callable[[], None]:
    """Append ``fn`` to the module's tuple ``registry``, copy-on-write (the add and worker
    paths read the tuple without a lock); the function returned removes this registration."""
    if not callable(fn):
        raise TypeError(f"a {what} must be callable, not {type(fn).__name__}")
    entry = _Once(fn)
    table = globals()
    with _lock:
        table[registry] = (*table[registry], entry)

    def remove() -> None:
        with _lock:
            table[registry] = tuple(x for x in table[registry] if x is not entry)

    return remove


class _Once:
    """A registration: its own identity, so the same function registered twice is removed
    one registration at a time."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def __call__(self, *args: Any) -> Any:
        return self.fn(*args)


def headers_for(explicit: Mapping[str, str] | None) -> Mapping[str, str] | None:
    """The headers of an add: the providers' (in order), then ``explicit`` over them."""
    providers = PROVIDERS
    if not providers:
        return explicit
    merged: dict[str, str] = {}
    for provider in providers:
        try:
            got = provider()
        except Exception:
            log.exception("header provider %r failed (skipped)", getattr(provider, "fn", provider))
            continue
        if got:
            merged.update(got)
    if explicit:
        merged.update(explicit)
    return merged or None


class Entered:
    """The job hooks entered around one handler run, in entry order."""

    __slots__ = ("managers",)

    def __init__(self, lease: Lease, factories: tuple[JobHookFactory, ...]) -> None:
        self.managers: list[Any] = []
        for factory in factories:
            try:
                cm = factory(lease)
                cm.__enter__()
            except Exception:
                log.exception("job hook %r failed on entry (skipped)",
                              getattr(factory, "fn", factory))
                continue
            self.managers.append(cm)

    def exit(self, exc: BaseException | None) -> None:
        """Exit every entered hook, last first, with the handler's exception (or None)."""
        for cm in reversed(self.managers):
            try:
                if exc is None:
                    cm.__exit__(None, None, None)
                else:
                    cm.__exit__(type(exc), exc, exc.__traceback__)
            except Exception:
                log.exception("job hook %r failed on exit (ignored)", cm)

    def settled(self, result: Any) -> None:
        """Tell every hook that has ``settled`` the job's final result."""
        for cm in self.managers:
            fn = getattr(cm, "settled", None)
            if fn is not None:
                try:
                    fn(result)
                except Exception:
                    log.exception("job hook %r failed in settled() (ignored)", cm)
