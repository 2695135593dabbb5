"""Job hooks (:func:`leaseq.hooks.add_job_hook`) in the worker runtime: entered in the
handler's own context (task or pool thread), exited with the handler's exception, told the
settled outcome; a broken hook never changes a job."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from leaseq import Lease, Queue, hooks
from leaseq.server import ServerProcess
from leaseq.worker import JobResult, Outcome, Retry, Worker

from .test_worker import q_url, work

SEEN: contextvars.ContextVar[str] = contextvars.ContextVar("seen_by_handler")


@dataclass
class Record:
    item: str
    entered_thread: str = ""
    exited_thread: str = ""
    exc: BaseException | None = None
    exited: bool = False
    outcome: Outcome | None = None


@dataclass
class Recorder:
    records: list[Record] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def factory(self, lease: Lease) -> Any:
        rec = Record(lease.id)
        with self.lock:
            self.records.append(rec)
        return Hook(rec)

    def by_id(self) -> dict[str, Record]:
        return {r.item: r for r in self.records}


class Hook:
    def __init__(self, rec: Record) -> None:
        self.rec = rec
        self.token: contextvars.Token[str] | None = None

    def __enter__(self) -> Hook:
        self.rec.entered_thread = threading.current_thread().name
        self.token = SEEN.set(f"hooked {self.rec.item}")
        return self

    def __exit__(self, et: Any, exc: BaseException | None, tb: Any) -> bool:
        assert self.token is not None
        SEEN.reset(self.token)  # raises if not in the context __enter__ ran in
        self.rec.exited_thread = threading.current_thread().name
        self.rec.exc, self.rec.exited = exc, True
        return True  # ignored: a hook cannot swallow a failure

    def settled(self, result: JobResult) -> None:
        self.rec.outcome = result.outcome


@pytest.fixture
def q(valkey_server: ServerProcess, queue_name: str) -> Any:
    with Queue(queue_name, url=valkey_server.url, max_attempts=1) as queue:
        yield queue


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    rec = Recorder()
    remove = hooks.add_job_hook(rec.factory)
    yield rec
    remove()
    assert hooks.JOB_HOOKS == ()


def seen(lease: Lease) -> str:
    return SEEN.get("not hooked")


@pytest.mark.parametrize("kind", ["async", "sync", "async-timeout"])
def test_hooks_wrap_every_handler_run(q: Queue, arun: Any, recorder: Recorder,
                                      kind: str) -> None:
    q.add("ok", id="ok")
    q.add("fail", id="fail")
    q.add("retry", id="retry")
    done: list[JobResult] = []

    def body(lease: Lease) -> str:
        if lease.data == "fail":
            raise ValueError("boom")
        if lease.data == "retry":
            raise Retry(reason="later")
        return seen(lease)

    async def ahandle(lease: Lease) -> str:
        return body(lease)

    handler: Any = body if kind == "sync" else ahandle
    timeout = 30.0 if kind == "async-timeout" else None
    w = Worker(q.name, handler, url=q_url(q), concurrency=3, max_attempts=1,
               job_timeout=timeout, on_result=done.append)
    arun(work(w, lambda: len(done) == 3))
    recs = recorder.by_id()
    assert set(recs) == {"ok", "fail", "retry"}
    assert q.state("ok").result == "hooked ok"  # the handler saw the hook's contextvar
    assert isinstance(recs["fail"].exc, ValueError) and isinstance(recs["retry"].exc, Retry)
    assert recs["ok"].exc is None
    assert {r.item: r.outcome for r in recs.values()} == {
        "ok": Outcome.COMPLETED, "fail": Outcome.DEAD, "retry": Outcome.DEAD}
    for r in recs.values():
        assert r.exited and r.entered_thread == r.exited_thread
        if kind == "sync":
            assert r.entered_thread.startswith("leaseq-worker")
        else:
            assert r.entered_thread == threading.current_thread().name
    assert q.state("fail").last_error.startswith("ValueError: boom")  # type: ignore[union-attr]


def test_a_timed_out_async_job_exits_its_hooks_with_the_cancellation(
        q: Queue, arun: Any, recorder: Recorder) -> None:
    import asyncio

    q.add("slow", id="slow")
    done: list[JobResult] = []

    async def slow(lease: Lease) -> None:
        await asyncio.sleep(30)

    w = Worker(q.name, slow, url=q_url(q), job_timeout=0.2, max_attempts=1,
               on_result=done.append)
    arun(work(w, lambda: len(done) == 1))
    (rec,) = recorder.records
    assert isinstance(rec.exc, asyncio.CancelledError) and rec.outcome is Outcome.DEAD


def test_broken_hooks_never_change_a_job(q: Queue, arun: Any, recorder: Recorder,
                                         caplog: pytest.LogCaptureFixture) -> None:
    class BadExit:
        def __enter__(self) -> None:
            return None

        def __exit__(self, *exc: Any) -> None:
            raise RuntimeError("exit bug")

    def bad_factory(lease: Lease) -> Any:
        if lease.id == "a":
            raise RuntimeError("factory bug")
        return BadExit()

    remove = hooks.add_job_hook(bad_factory)
    try:
        q.add(1, id="a")
        q.add(2, id="b")
        done: list[JobResult] = []

        async def handle(lease: Lease) -> int:
            return int(lease.data) * 10

        w = Worker(q.name, handle, url=q_url(q), on_result=done.append)
        arun(work(w, lambda: len(done) == 2))
    finally:
        remove()
    assert {r.outcome for r in done} == {Outcome.COMPLETED}
    assert q.state("a").result == 10 and q.state("b").result == 20
    assert {r.outcome for r in recorder.records} == {Outcome.COMPLETED}  # the good hook too
    text = caplog.text
    assert "factory bug" in text and "exit bug" in text
