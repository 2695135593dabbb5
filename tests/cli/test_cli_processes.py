"""Commands that start processes: ``leaseq worker`` (one process and supervised ones) and
``leaseq demo`` on the embedded server of the isolated state dir."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from leaseq import Queue
from leaseq.server import ServerProcess

ROOT = Path(__file__).resolve().parents[2]


def leaseq(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    env.pop("LEASEQ_URL", None)
    return subprocess.run([sys.executable, "-m", "leaseq.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("processes", [None, 2])
def test_worker_command_runs_a_handler_until_idle(valkey_server: ServerProcess,
                                                  queue_name: str,
                                                  processes: int | None) -> None:
    from worker import jobs_for_tests  # tests/ is on sys.path under pytest

    with Queue(queue_name, url=valkey_server.url) as q:
        q.add_many({"n": i} for i in range(100))
        more = ["--processes", str(processes)] if processes else []
        done = leaseq("worker", f"{jobs_for_tests.__name__}:sync_echo", "--queue", q.name,
                      "--url", valkey_server.url, "-c", "8", "--idle-exit", "0.5", *more)
        assert done.returncode == 0, done.stderr
        s = q.stats()
        assert s.counter("completed") == 100 and s.pending + s.leased == 0


def test_worker_command_server_down_is_one_line() -> None:
    done = leaseq("worker", "json:loads", "--queue", "q", "--url", "redis://127.0.0.1:1")
    assert done.returncode == 1 and "cannot reach" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_demo_loses_nothing_and_completes_nothing_twice() -> None:
    done = leaseq("demo", "--items", "2000", "--json", timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(done.stdout)
    assert summary["ok"] is True
    assert summary["lost"] == 0 and summary["duplicates"] == 0
    assert summary["completed"] + summary["dead_lettered"] == summary["items"] == 2000
    assert summary["dead_lettered"] == 3  # the poison items
    assert summary["retried"] > 0 and summary["killed_pid"] is not None
