"""A worker process with tracing on: ``python -m otel.consumer URL QUEUE OUT KIND``.

Runs the queue's items until idle with an ``async`` or ``sync`` handler, then writes every
span it finished (from the SDK's in-memory exporter) to OUT as JSON lines. The handler returns
the ids of the span current while it runs, so the test can check it ran inside its span.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import leaseq.otel
from leaseq import Lease
from leaseq.worker import Worker


def seen(lease: Lease) -> dict[str, str]:
    if lease.data.get("fail"):
        raise ValueError(f"item {lease.id} fails")
    ctx = trace.get_current_span().get_span_context()
    return {"trace_id": f"{ctx.trace_id:032x}", "span_id": f"{ctx.span_id:016x}"}


async def aseen(lease: Lease) -> dict[str, str]:
    return seen(lease)


def as_dict(span: ReadableSpan) -> dict[str, Any]:
    ctx = span.get_span_context()
    assert ctx is not None
    return {
        "name": span.name, "kind": span.kind.name,
        "trace_id": f"{ctx.trace_id:032x}", "span_id": f"{ctx.span_id:016x}",
        "parent_id": f"{span.parent.span_id:016x}" if span.parent else None,
        "attributes": dict(span.attributes or {}), "status": span.status.status_code.name,
        "events": [e.name for e in span.events],
        "links": [f"{link.context.trace_id:032x}" for link in span.links],
    }


def main() -> None:
    url, queue, out, kind = sys.argv[1:5]
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    leaseq.otel.instrument(tracer_provider=provider, link=kind.endswith("link"))
    handler: Any = seen if kind.startswith("sync") else aseen
    worker = Worker(queue, handler, url=url, concurrency=4, max_attempts=1, idle_exit=1.0)
    asyncio.run(worker.run())
    with open(out, "w") as f:
        for span in exporter.get_finished_spans():
            f.write(json.dumps(as_dict(span)) + "\n")


if __name__ == "__main__":
    main()
