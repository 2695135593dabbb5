"""Worker processes: :class:`WorkerSpec` (a picklable recipe), :class:`Supervisor` (runs N
worker processes and restarts the ones that die) and :func:`run_worker`."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from multiprocessing.process import BaseProcess
from typing import Any

from ..connection import server_url
from ..models import Backoff
from .handlers import HandlerRef, load
from .jobs import JobResult
from .runtime import Worker

log = logging.getLogger("leaseq.worker.supervisor")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s[%(process)d] %(message)s"
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class WorkerSpec:
    """How to build a :class:`Worker`; picklable when ``handler``/``on_result`` are
    ``"module:attr"`` strings or module-level functions. See :class:`Worker` for the fields."""

    queue: str
    handler: HandlerRef
    url: str | None = None
    concurrency: int = 10
    lease: float = 30.0
    heartbeat: float = 1 / 3
    job_timeout: float | None = None
    max_attempts: int = 5
    backoff: Backoff | None = None
    grace: float = 30.0
    idle_exit: float | None = None
    prefetch: int | None = None
    on_result: str | Callable[[JobResult], None] | None = None
    log_level: int | str | None = None
    metrics_port: int | None = None  # serve /metrics here (needs leaseq[metrics])
    metrics_host: str = "127.0.0.1"

    def build(self) -> Worker:
        """A new worker following this spec (the handler is imported here)."""
        hook = load(self.on_result) if self.on_result is not None else None
        return Worker(
            self.queue, self.handler, url=self.url, concurrency=self.concurrency,
            lease=self.lease, heartbeat=self.heartbeat, job_timeout=self.job_timeout,
            max_attempts=self.max_attempts, backoff=self.backoff, grace=self.grace,
            idle_exit=self.idle_exit, prefetch=self.prefetch, on_result=hook,
        )


def configure_logging(level: int | str | None) -> None:
    """One line per record on stderr: time, level, logger[pid], message."""
    if level is not None:
        logging.basicConfig(level=level, format=LOG_FORMAT, stream=sys.stderr)


def _die_with_parent() -> None:
    with contextlib.suppress(Exception):  # Linux only; elsewhere an orphan runs on
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def start_metrics(spec: WorkerSpec) -> int | None:
    """Serve ``/metrics`` (the worker's queue and this process's job histograms) on
    ``spec.metrics_port`` from a thread, if set; returns the port bound."""
    if spec.metrics_port is None:
        return None
    from ..metrics import serve  # the optional extra, imported only when asked for

    return serve(spec.metrics_port, host=spec.metrics_host, url=spec.url, queues=[spec.queue])


def _child_main(spec: WorkerSpec) -> None:
    os.setpgrp()  # terminal ^C goes to the supervisor only; it forwards one SIGTERM
    _die_with_parent()
    configure_logging(spec.log_level)
    worker = spec.build()
    start_metrics(spec)
    sys.exit(worker.run_forever())


class Supervisor:
    """Runs ``processes`` worker processes (spawned, each in its own process group) and
    restarts any that dies with a non-zero status or a signal; a clean exit (status 0, e.g.
    ``idle_exit``) is not restarted. A child dying within 5 s of its start is restarted with
    a doubling delay (up to 30 s)."""

    def __init__(self, spec: WorkerSpec, processes: int, *, restart_delay: float = 0.5) -> None:
        if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
            raise ValueError(f"processes must be an int >= 1, not {processes!r}")
        self.spec = spec
        self.processes = processes
        self.restart_delay = restart_delay
        self.restarts = 0
        self._ctx = multiprocessing.get_context("spawn")
        self._slots: list[BaseProcess | None] = [None] * processes
        self._started: list[float] = [0.0] * processes
        self._delay: list[float] = [restart_delay] * processes
        self._due: list[float | None] = [None] * processes  # restart time of a dead slot
        self._stopping = False

    @property
    def pids(self) -> list[int]:
        """Pids of the live children."""
        return [p.pid for p in self._slots if p is not None and p.pid and p.is_alive()]

    def start(self) -> None:
        """Resolve the server URL once (starting the embedded server if needed), then spawn
        every child."""
        self.spec = replace(self.spec, url=server_url(self.spec.url))
        for i in range(self.processes):
            self._spawn(i)

    def _spawn(self, i: int) -> None:
        spec = self.spec
        if spec.metrics_port:  # child i serves on metrics_port + i
            spec = replace(spec, metrics_port=spec.metrics_port + i)
        p = self._ctx.Process(target=_child_main, args=(spec,), daemon=True,
                              name=f"leaseq-worker-{i}")
        p.start()
        self._slots[i], self._started[i], self._due[i] = p, time.monotonic(), None

    def poll(self) -> bool:
        """Reap dead children and restart those due; False once every child exited cleanly."""
        now = time.monotonic()
        for i, p in enumerate(self._slots):
            if p is not None and p.exitcode is not None:
                self._slots[i] = None
                code = p.exitcode
                if code == 0 or self._stopping:
                    continue
                fast = now - self._started[i] < 5.0
                self._delay[i] = min(30.0, self._delay[i] * 2) if fast else self.restart_delay
                how = f"signal {signal.Signals(-code).name}" if code < 0 else f"status {code}"
                log.warning("worker process %d died (%s); restarting in %.1f s",
                            p.pid, how, self._delay[i])
                self._due[i] = now + self._delay[i]
            due = self._due[i]
            if self._slots[i] is None and due is not None and due <= now and not self._stopping:
                self.restarts += 1
                self._spawn(i)
        return any(p is not None for p in self._slots) or any(d is not None for d in self._due)

    def stop(self, timeout: float | None = None) -> bool:
        """SIGTERM every child (graceful shutdown), wait up to ``timeout`` s (default: the
        grace period + 10 s), SIGKILL the rest. True if every child exited with status 0."""
        self._stopping = True
        self._due = [None] * self.processes
        live = [p for p in self._slots if p is not None and p.exitcode is None]
        for p in live:
            with contextlib.suppress(ProcessLookupError, TypeError):
                os.kill(p.pid, signal.SIGTERM)  # type: ignore[arg-type]
        end = time.monotonic() + (self.spec.grace + 10.0 if timeout is None else timeout)
        for p in live:
            p.join(max(0.0, end - time.monotonic()))
        clean = True
        for p in live:
            if p.exitcode is None:
                p.kill()
                p.join(5.0)
            clean = clean and p.exitcode == 0
        self._slots = [None] * self.processes
        return clean

    def kill(self) -> None:
        """SIGKILL every child now (their leases expire and their items come back)."""
        self._stopping = True
        for p in self._slots:
            if p is not None and p.exitcode is None:
                p.kill()
        for p in self._slots:
            if p is not None:
                p.join(5.0)

    def run(self) -> int:
        """Supervise until SIGTERM/SIGINT (children get SIGTERM and finish gracefully; a
        second signal SIGKILLs them) or until every child exited cleanly. Returns 0 if
        everything stopped cleanly, else 1."""
        hits: list[int] = []

        def on_signal(sig: int, _frame: Any) -> None:
            hits.append(sig)
            if len(hits) > 1:
                log.warning("second signal: killing the worker processes")
                self.kill()

        old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.start()
            while not hits and self.poll():
                time.sleep(0.1)
            if not hits:
                return 0
            log.info("%s: stopping %d worker processes", signal.Signals(hits[0]).name,
                     len(self.pids))
            return 0 if self.stop() and len(hits) == 1 else 1
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)


def run_worker(handler: HandlerRef, queue: str, *, processes: int | None = None,
               **options: Any) -> int:
    """Run a worker in this process (``processes`` None) or ``processes`` supervised worker
    processes, until SIGTERM/SIGINT (or ``idle_exit``). ``options`` are :class:`WorkerSpec`
    fields. Returns the exit status.

    Worker processes are spawned: the handler must be importable (``"module:function"`` or a
    module-level function), and a script calling this must do so under
    ``if __name__ == "__main__":``."""
    known = {f.name for f in fields(WorkerSpec)}
    unknown = set(options) - known
    if unknown:
        raise TypeError(f"unknown worker options: {', '.join(sorted(unknown))}")
    spec = WorkerSpec(queue, handler, **options)
    configure_logging(spec.log_level)
    if processes is None:
        worker = spec.build()
        start_metrics(spec)
        return worker.run_forever()
    load(handler)  # fail here, not in every child
    return Supervisor(spec, processes).run()
