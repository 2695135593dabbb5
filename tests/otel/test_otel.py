"""OpenTelemetry: the trace context of the code calling ``add`` travels with the item, and a
worker in another process runs the handler in a CONSUMER span of the same trace (checked with
the SDK's in-memory exporter on both sides)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import leaseq.otel
from leaseq import Queue, hooks
from leaseq.keys import QueueKeys
from leaseq.protocol import split_item
from leaseq.server import ServerProcess

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def producer() -> Iterator[tuple[trace.Tracer, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    off = leaseq.otel.instrument(tracer_provider=provider)
    yield provider.get_tracer("test-producer"), exporter
    off()
    assert hooks.PROVIDERS == () and hooks.JOB_HOOKS == ()


def consume(url: str, queue: str, kind: str, tmp_path: Path) -> list[dict[str, Any]]:
    out = tmp_path / f"spans-{kind}.jsonl"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    done = subprocess.run([sys.executable, "-m", "otel.consumer", url, queue, str(out), kind],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in out.read_text().splitlines()]


@pytest.mark.parametrize("kind", ["async", "sync"])
def test_one_trace_joins_producer_and_consumer_processes(
        valkey_server: ServerProcess, queue_name: str, tmp_path: Path, kind: str,
        producer: tuple[trace.Tracer, InMemorySpanExporter]) -> None:
    tracer, exporter = producer
    with Queue(queue_name, url=valkey_server.url) as q:
        with tracer.start_as_current_span(f"send {queue_name}", kind=trace.SpanKind.PRODUCER):
            ok = q.add({"n": 1}, id="ok")
            bad = q.add({"fail": True}, id="bad")
        untraced = q.add({"n": 2}, id="untraced")  # outside any span: no headers at all
        assert ok and bad and untraced
        assert "traceparent" in q.state("ok").headers
        assert q.state("untraced").headers == {}
        raw = q.client.hget(QueueKeys.of(queue_name).items, "untraced")
        assert split_item(raw)[3] == b'J{"n":2}'
        spans = {s["attributes"]["messaging.message.id"]: s
                 for s in consume(valkey_server.url, queue_name, kind, tmp_path)}
        results = {i: q.state(i) for i in ("ok", "bad", "untraced")}
    (sent,) = exporter.get_finished_spans()
    sent_ctx = sent.get_span_context()
    assert sent_ctx is not None
    trace_id, span_id = f"{sent_ctx.trace_id:032x}", f"{sent_ctx.span_id:016x}"
    assert set(spans) == {"ok", "bad", "untraced"}
    for item in ("ok", "bad"):
        s = spans[item]
        assert s["trace_id"] == trace_id and s["parent_id"] == span_id, s
        assert s["kind"] == "CONSUMER" and s["name"] == f"process {queue_name}"
        assert s["attributes"]["messaging.destination.name"] == queue_name
        assert s["attributes"]["messaging.system"] == "leaseq"
        assert s["attributes"]["leaseq.attempt"] == 1
    assert spans["ok"]["status"] == "UNSET" and spans["ok"]["events"] == []
    assert spans["bad"]["status"] == "ERROR" and spans["bad"]["events"] == ["exception"]
    assert spans["bad"]["attributes"]["error.type"] == "ValueError"
    assert results["bad"].state.value == "dead"
    # the handler ran with its consumer span current (on the pool thread for sync handlers)
    assert results["ok"].result == {"trace_id": trace_id, "span_id": spans["ok"]["span_id"]}
    # an item added outside any span starts a trace of its own
    assert spans["untraced"]["parent_id"] is None and spans["untraced"]["trace_id"] != trace_id
    assert results["untraced"].result["span_id"] == spans["untraced"]["span_id"]


def test_link_mode_starts_a_new_trace_linked_to_the_producer(
        valkey_server: ServerProcess, queue_name: str, tmp_path: Path,
        producer: tuple[trace.Tracer, InMemorySpanExporter]) -> None:
    tracer, exporter = producer
    with Queue(queue_name, url=valkey_server.url) as q:
        with tracer.start_as_current_span("send", kind=trace.SpanKind.PRODUCER):
            q.add_many([{"n": 1}, {"n": 2}])
        spans = consume(valkey_server.url, queue_name, "async-link", tmp_path)
    (sent,) = exporter.get_finished_spans()
    trace_id = f"{sent.get_span_context().trace_id:032x}"  # type: ignore[union-attr]
    assert len(spans) == 2
    for s in spans:
        assert s["parent_id"] is None and s["trace_id"] != trace_id
        assert s["links"] == [trace_id]


def test_instrument_twice_replaces_and_off_removes(valkey_server: ServerProcess,
                                                   queue_name: str) -> None:
    first = leaseq.otel.instrument()
    second = leaseq.otel.instrument()
    assert len(hooks.PROVIDERS) == 1 and len(hooks.JOB_HOOKS) == 1
    first()  # already replaced: nothing left to undo
    assert len(hooks.PROVIDERS) == 1
    second()
    assert hooks.PROVIDERS == () and hooks.JOB_HOOKS == ()
