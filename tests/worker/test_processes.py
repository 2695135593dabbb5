"""Worker processes: SIGKILL mid-job (the item comes back), SIGTERM (graceful, exit 0),
a second signal (exit at once), and the supervisor restarting a killed child."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from leaseq import Lease, Queue, State
from leaseq.server import ServerProcess
from leaseq.worker import JobResult, Outcome, Supervisor, Worker, WorkerSpec

from . import jobs_for_tests

ROOT = Path(__file__).resolve().parents[2]
SLEEPER = f"{jobs_for_tests.__name__}:marked_sleep"


def spawn_worker(url: str, queue: str, *args: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    return subprocess.Popen(
        [sys.executable, "-m", "leaseq.cli", "worker", SLEEPER, "--queue", queue, "--url", url,
         "--log-level", "WARNING", *args],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


def wait_for_marker(marker: Path, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    end = time.monotonic() + timeout
    while not marker.with_name(f"{marker.name}.{proc.pid}").exists():
        if proc.poll() is not None:
            _, err = proc.communicate()
            pytest.fail(f"worker exited early ({proc.returncode}): {err.decode()[-2000:]}")
        assert time.monotonic() < end, "the worker never started the job"
        time.sleep(0.02)


@pytest.fixture
def q(valkey_server: ServerProcess, queue_name: str) -> Any:
    with Queue(queue_name, url=valkey_server.url) as queue:
        yield queue


def test_sigkill_mid_job_the_item_goes_to_another_worker(
        q: Queue, valkey_server: ServerProcess, tmp_path: Path, arun: Any) -> None:
    marker = tmp_path / "started"
    q.add({"marker": str(marker), "sleep": 60}, id="k")
    proc = spawn_worker(valkey_server.url, q.name, "--lease", "1")
    try:
        wait_for_marker(marker, proc)
        proc.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert q.state("k").state is State.LEASED  # nobody finished it; its lease still runs
    got: list[tuple[int, float]] = []
    done: list[JobResult] = []

    async def rescue(lease: Lease) -> str:
        got.append((lease.attempt, time.monotonic() - killed_at))
        return "rescued"

    async def run() -> None:
        w = Worker(q.name, rescue, url=valkey_server.url, on_result=done.append)
        task = asyncio.create_task(w.run())
        end = time.monotonic() + 10
        while not done:
            assert time.monotonic() < end
            await asyncio.sleep(0.02)
        w.stop()
        await task

    arun(run())
    assert [a for a, _ in got] == [2]
    assert 0.2 <= got[0][1] < 5  # after the lease ran out, not before
    assert [r.outcome for r in done] == [Outcome.COMPLETED]
    assert q.state("k").result == "rescued" and q.stats().counter("completed") == 1


def test_sigterm_gives_unfinished_items_back_and_exits_0(
        q: Queue, valkey_server: ServerProcess, tmp_path: Path) -> None:
    marker = tmp_path / "started"
    q.add({"marker": str(marker), "sleep": 60}, id="slow")
    proc = spawn_worker(valkey_server.url, q.name, "--grace", "0.3", "--lease", "30")
    try:
        wait_for_marker(marker, proc)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        assert time.monotonic() - t0 < 10
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    st = q.state("slow")
    assert st.state is State.PENDING and st.attempts == 0  # not counted as an attempt


def test_second_signal_exits_at_once(
        q: Queue, valkey_server: ServerProcess, tmp_path: Path) -> None:
    marker = tmp_path / "started"
    q.add({"marker": str(marker), "sleep": 60}, id="slow")
    proc = spawn_worker(valkey_server.url, q.name, "--grace", "60", "--lease", "30")
    try:
        wait_for_marker(marker, proc)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.3)
        assert proc.poll() is None  # still waiting for the job (grace 60 s)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) != 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert q.state("slow").state is State.LEASED  # left to expire


def test_supervisor_restarts_a_killed_child_not_a_clean_exit(
        q: Queue, valkey_server: ServerProcess) -> None:
    q.add_many(range(50))
    spec = WorkerSpec(q.name, f"{jobs_for_tests.__name__}:echo", url=valkey_server.url,
                      lease=1.0, idle_exit=2.0, log_level="ERROR")
    sup = Supervisor(spec, 2, restart_delay=0.1)
    sup.start()
    try:
        end = time.monotonic() + 20
        while len(sup.pids) < 2:
            assert time.monotonic() < end
            time.sleep(0.02)
        first = set(sup.pids)
        victim = sup.pids[0]
        os.kill(victim, signal.SIGKILL)
        while sup.restarts == 0:
            sup.poll()
            assert time.monotonic() < end, "the killed child was not restarted"
            time.sleep(0.02)
        assert victim not in sup.pids and set(sup.pids) - first
        while sup.poll():  # both end by idle_exit (status 0): no restart
            assert time.monotonic() < end + 20
            time.sleep(0.05)
        assert sup.restarts == 1
    finally:
        sup.kill()
    assert q.stats().counter("completed") == 50
