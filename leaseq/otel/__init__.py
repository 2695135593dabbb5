"""OpenTelemetry tracing for leaseq (``pip install 'leaseq[otel]'``).

:func:`instrument` turns it on for this process:

* at every ``add``/``add_many`` (sync or asyncio), the W3C trace context of the calling code
  (``traceparent``, ``tracestate``, and ``baggage`` with the default propagators) is stored
  with the item as headers, through the globally configured propagator; outside any span
  nothing is stored;
* the worker runtime runs each handler inside a CONSUMER span ``process <queue>``, a child of
  the producer's context (or, with ``link=True``, a new trace linked to it), current in the
  handler's own context (task or thread), with the attributes ``messaging.system`` =
  ``leaseq``, ``messaging.operation.type``/``messaging.operation.name`` = ``process``,
  ``messaging.destination.name`` = the queue, ``messaging.message.id`` = the item id,
  ``messaging.message.body.size``, and ``leaseq.attempt``. A handler that raises (including
  :class:`leaseq.worker.Retry` and a timeout's cancellation) gets the exception recorded on
  the span, ``error.type`` set and the span status ERROR.

leaseq makes no PRODUCER span of its own: the consumer span joins whatever span is current
where ``add`` is called (make one around it to see the send in the trace).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from .. import __version__, hooks
from ..models import Lease

__all__ = ["consumer_attributes", "instrument"]

_lock = threading.Lock()
_remove: Callable[[], None] | None = None


def inject_current() -> Mapping[str, str] | None:
    """The header provider: the current context, through the global propagator."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier or None


def consumer_attributes(lease: Lease) -> dict[str, Any]:
    """The attributes of the span a handler runs in."""
    return {
        "messaging.system": "leaseq",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": lease.queue,
        "messaging.message.id": lease.id,
        "messaging.message.body.size": len(lease.payload),
        "leaseq.attempt": lease.attempt,
    }


class _ConsumerSpan:
    """The job hook: a CONSUMER span around one handler run."""

    __slots__ = ("lease", "link", "span", "token", "tracer")

    def __init__(self, tracer: trace.Tracer, lease: Lease, link: bool) -> None:
        self.tracer, self.lease, self.link = tracer, lease, link
        self.span: trace.Span | None = None
        self.token: object = None

    def __enter__(self) -> trace.Span:
        lease = self.lease
        parent = propagate.extract(lease.headers) if lease.headers else None
        links: list[Link] = []
        if self.link and parent is not None:
            ctx = trace.get_current_span(parent).get_span_context()
            if ctx.is_valid:
                links.append(Link(ctx))
            parent = None
        span = self.span = self.tracer.start_span(
            f"process {lease.queue}", context=parent, kind=SpanKind.CONSUMER,
            attributes=consumer_attributes(lease), links=links)
        self.token = otel_context.attach(trace.set_span_in_context(span))
        return span

    def __exit__(self, et: type[BaseException] | None, exc: BaseException | None,
                 tb: object) -> None:
        span = self.span
        otel_context.detach(self.token)  # type: ignore[arg-type]
        if span is None:
            return
        if exc is not None:
            span.record_exception(exc)
            span.set_attribute("error.type", type(exc).__qualname__)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"[:500]))
        span.end()


def instrument(*, tracer_provider: trace.TracerProvider | None = None,
               link: bool = False) -> Callable[[], None]:
    """Store the caller's trace context with every item added from this process and run
    every handler of this process's workers in a CONSUMER span joined to it (see the module
    docstring). ``tracer_provider`` defaults to the global one. Calling it again replaces the
    previous set-up. Returns a function that turns tracing off again."""
    global _remove
    tracer = trace.get_tracer("leaseq", __version__, tracer_provider=tracer_provider)

    def factory(lease: Lease) -> _ConsumerSpan:
        return _ConsumerSpan(tracer, lease, link)

    with _lock:
        if _remove is not None:
            _remove()
        off_headers = hooks.add_header_provider(inject_current)
        off_jobs = hooks.add_job_hook(factory)

        def remove() -> None:
            global _remove
            off_headers()
            off_jobs()
            if _remove is remove:
                _remove = None

        _remove = remove
    return remove
