"""The per-user embedded server, always in a temp state dir (never the real home)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from leaseq.server import embedded
from leaseq.server.embedded import EmbeddedServerError, ensure_running, state_dir_path, status

ROOT = Path(__file__).resolve().parents[2]


def _gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not embedded._alive(pid):
            return True
        time.sleep(0.02)
    return False


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    """A fresh state dir; whatever server was started in it is stopped afterwards."""
    sd = tmp_path / "state"
    yield sd
    state = embedded._read_state(sd)
    try:
        embedded.stop(sd, timeout=10)
    finally:
        if state is not None and embedded._alive(state["pid"]):
            os.kill(state["pid"], signal.SIGKILL)


def _client_set(url: str, key: str, value: str) -> None:
    client = redis.Redis.from_url(url)
    client.set(key, value)
    client.close()


def _client_get(url: str, key: str) -> bytes | None:
    client = redis.Redis.from_url(url)
    try:
        value: bytes | None = client.get(key)
        return value
    finally:
        client.close()


def test_state_dir_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("LEASEQ_STATE_DIR", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert state_dir_path() == tmp_path / "xdg" / "leaseq"
    monkeypatch.setenv("LEASEQ_STATE_DIR", str(tmp_path / "explicit"))
    assert state_dir_path() == tmp_path / "explicit"
    assert state_dir_path(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("LEASEQ_STATE_DIR")
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert state_dir_path() == tmp_path / "home" / ".local" / "state" / "leaseq"


def test_start_reuse_and_security(state_dir: Path) -> None:
    first = ensure_running(state_dir)
    again = ensure_running(state_dir)
    assert again.pid == first.pid and again.port == first.port
    assert first.url == f"redis://:{first.password}@127.0.0.1:{first.port}/0"
    assert oct(state_dir.stat().st_mode & 0o777) == "0o700"
    for name in ("password", "valkey.conf", "server.json"):
        assert oct((state_dir / name).stat().st_mode & 0o777) == "0o600", name
    state = json.loads((state_dir / "server.json").read_text())
    assert state["pid"] == first.pid and state["port"] == first.port
    assert {"password_file", "binary", "started_at"} <= state.keys()
    assert first.password not in (state_dir / "server.json").read_text()

    no_retry = Retry(NoBackoff(), 0)  # redis-py retries AuthenticationError by default
    anonymous = redis.Redis(host="127.0.0.1", port=first.port, retry=no_retry)
    with pytest.raises(redis.AuthenticationError):
        anonymous.ping()
    anonymous.close()
    wrong = redis.Redis(host="127.0.0.1", port=first.port, password="nope", retry=no_retry)
    with pytest.raises(redis.AuthenticationError):
        wrong.ping()
    wrong.close()

    client = first.client(decode_responses=True)
    try:
        assert client.config_get("bind")["bind"] == "127.0.0.1"
        assert client.config_get("protected-mode")["protected-mode"] == "yes"
        assert client.config_get("appendonly")["appendonly"] == "yes"
        assert client.config_get("appendfsync")["appendfsync"] == "everysec"
    finally:
        client.close()
    st = status(state_dir)
    assert st.running and not st.crashed and st.pid == first.pid and st.port == first.port
    assert st.uptime is not None and st.uptime >= 0 and st.data_dir == state_dir / "data"
    assert st.url is not None and first.password not in st.url


def test_env_var_selects_state_dir(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEASEQ_STATE_DIR", str(state_dir))
    server = ensure_running()
    assert server.state_dir == state_dir
    assert embedded.default_url() == server.url


_CHILD = (
    "import json, sys; from leaseq.server.embedded import ensure_running; "
    "s = ensure_running(sys.argv[1]); print(json.dumps([s.pid, s.url]))"
)


def test_shared_across_processes_and_outlives_starter(state_dir: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(state_dir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    results = []
    for child in children:
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
        results.append(json.loads(out))
    assert results[0] == results[1]  # both processes got the same server
    pid, url = results[0]
    assert not _gone(pid, timeout=0.2)  # the starters have exited; the server has not
    assert ensure_running(state_dir).pid == pid
    _client_set(url, "k", "v")
    assert _client_get(url, "k") == b"v"


def test_stale_state_file_is_replaced(state_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    state_dir.mkdir(mode=0o700)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = {"pid": dead.pid, "port": 1, "started_at": 0}
    (state_dir / "server.json").write_text(json.dumps(stale))
    st = status(state_dir)
    assert st.crashed and not st.running and "gone" in (st.reason or "")
    with caplog.at_level(logging.WARNING, logger="leaseq.server.embedded"):
        server = ensure_running(state_dir)
    assert server.pid != dead.pid
    assert "stale" in caplog.text
    assert status(state_dir).running


def test_stop_and_data_survives_restart(state_dir: Path) -> None:
    first = ensure_running(state_dir)
    _client_set(first.url, "durable", "yes")
    assert embedded.stop(state_dir) is True
    assert _gone(first.pid)
    assert not (state_dir / "server.json").exists()
    st = status(state_dir)
    assert not st.running and not st.crashed
    assert embedded.stop(state_dir) is False
    second = ensure_running(state_dir)
    assert second.pid != first.pid
    assert second.password == first.password  # same secret across restarts
    assert _client_get(second.url, "durable") == b"yes"


def test_sigkill_is_reported_as_crash_and_data_survives(state_dir: Path) -> None:
    first = ensure_running(state_dir)
    _client_set(first.url, "acked", "before-crash")
    os.kill(first.pid, signal.SIGKILL)
    assert _gone(first.pid)
    st = status(state_dir)
    assert st.crashed and not st.running and st.pid == first.pid
    assert st.reason is not None and str(first.pid) in st.reason
    assert st.aof_size > 0
    second = ensure_running(state_dir)
    assert second.pid != first.pid
    assert _client_get(second.url, "acked") == b"before-crash"


def test_missing_binary_raises_clear_error(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(embedded, "find_binary", lambda kind: None)
    with pytest.raises(EmbeddedServerError, match="valkey-server"):
        ensure_running(state_dir)
    assert issubclass(EmbeddedServerError, RuntimeError)


def test_live_unrelated_pid_in_state_file_is_stale(state_dir: Path) -> None:
    state_dir.mkdir(mode=0o700)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stale = {"pid": other.pid, "port": 1, "data_dir": str(state_dir / "data")}
        (state_dir / "server.json").write_text(json.dumps(stale))
        started = time.monotonic()
        server = ensure_running(state_dir)
        assert time.monotonic() - started < 3  # not ours: no grace period
        assert server.pid != other.pid
        assert other.poll() is None  # an unrelated process is never killed
    finally:
        other.kill()
        other.wait()


def test_hung_server_is_killed_and_replaced(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(embedded, "HUNG_AFTER", 1.0)
    first = ensure_running(state_dir)
    _client_set(first.url, "k", "kept")
    os.kill(first.pid, signal.SIGSTOP)
    try:
        st = status(state_dir)
        assert st.crashed and "does not answer" in (st.reason or "")
        second = ensure_running(state_dir)
    finally:
        if embedded._alive(first.pid):
            os.kill(first.pid, signal.SIGKILL)
    assert second.pid != first.pid
    assert _gone(first.pid)
    assert _client_get(second.url, "k") == b"kept"
