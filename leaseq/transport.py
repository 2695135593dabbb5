"""The hot call path: scripts sent on connections that a queue holds out of its client's pool.

``redis.Redis.execute_command`` spends most of its time around the socket (pool checkout,
retry wrapper, observability hooks): about 100 µs of CPU per call on the project machine,
against about 40 µs for packing the same command with hiredis and using the connection's own
``send_packed_command`` / ``read_response``. A :class:`Channel` keeps the connections it used
(at most one per concurrent caller), packs each call with hiredis, and calls the engine's
scripts as functions of the leaseq library (FCALL: the helpers are defined once per load, not
on every call; about a fifth less server time). It goes back to the full client path for
everything unusual:

* the library is not loaded (a fresh server, FUNCTION FLUSH): it is loaded and the call made
  again; a server without FCALL (Redis 6.2), or an ACL that forbids FCALL or loading the
  library, switches the channel to EVALSHA; NOSCRIPT is answered by EVAL. None of these
  refusals ran any of the script, so repeating the call is safe; a script that ran and failed
  is never repeated;
* a held connection that the server closed while it sat idle (its ``timeout``, CLIENT KILL, a
  restart) is seen before anything is sent (one non-blocking poll, as the pool does at every
  checkout) and connected again;
* a connection error or timeout during the call: the connection is dropped, and the call is
  repeated through ``execute_command`` (so with the client's own retry policy) only if that
  policy retries at all; otherwise the error is raised, as ``execute_command`` would have
  (a repeat is recognised by its lease token or call key: ``docs/guarantees.md``);
* clients it cannot serve this way (clusters, single-connection clients, RESP3, non-redis-py
  objects) always take the full path (EVALSHA).

All the queues of one client share its channel (:func:`channel_for`), so the connections held
are at most as many as the calls in flight at once, however many queues there are. They go
back to the pool on :meth:`Channel.close` (and when the client is garbage-collected); after a
fork the child never reuses the parent's sockets.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import weakref
from collections.abc import Sequence
from typing import Any

import hiredis
import redis
import redis.asyncio
from redis import exceptions as rex
from redis._parsers.base import BaseParser

from . import scripts

_NET = (rex.ConnectionError, rex.TimeoutError, OSError)


def _pool_of(client: Any, kind: type) -> Any:
    """The client's connection pool when the fast path can serve it, else None."""
    if not isinstance(client, kind) or getattr(client, "connection", None) is not None or (
            getattr(client, "single_connection_client", False)
            or getattr(client, "_single_connection_client", False)):
        return None  # its commands must all run on its one connection (e.g. WAIT after writes)
    pool = getattr(client, "connection_pool", None)
    kwargs = getattr(pool, "connection_kwargs", None) or {}
    if pool is None or kwargs.get("protocol") not in (None, 2, "2"):
        return None
    return pool


def _retries(conn: Any) -> bool:
    retry = getattr(conn, "retry", None)
    try:
        return bool(retry is not None and retry.get_retries() != 0)
    except Exception:
        return True


def _refusal(exc: rex.ResponseError, fcall: bool) -> str:
    """What to do after the server answered a fast call with an error: ``"source"`` (EVALSHA
    met NOSCRIPT: send the source), ``"load"`` (the library is not loaded), ``"evalsha"`` (no
    FCALL here: use scripts); else the script ran and failed: raise that error, mapped."""
    if fcall:
        why = scripts.fcall_refusal(exc)
        if why is not None:
            return "load" if why == "missing" else "evalsha"
    elif scripts.is_noscript(exc):
        return "source"
    raise scripts.translate(exc) from exc


def _repeat_or_raise(exc: BaseException, conn: Any) -> None:
    """After a fast call failed on its connection: return if the call may be repeated through
    the client (a network error, and a client whose policy retries); else raise what leaseq
    reports for ``exc``."""
    if isinstance(exc, _NET) and _retries(conn):
        return
    if isinstance(exc, Exception):
        mapped = scripts.translate(exc)
        if mapped is not exc:
            raise mapped from exc
    raise exc


def _nothing() -> bool:  # for a hiredis Reader without has_data (older releases)
    return False


class _Wire:
    """Sync calls on a held connection's socket with a reader of our own: one ``sendall``,
    ``recv_into`` until hiredis has the reply. The same bytes, errors and timeouts as the
    connection's own ``send_packed_command`` / ``read_response`` (redis-py's error classes, the
    socket's timeout), without its layers; about a quarter of the client's time per call."""

    __slots__ = ("buf", "poller", "reader", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = hiredis.Reader(protocolError=rex.InvalidResponse,
                                     replyError=BaseParser.parse_error)
        self.poller = select.poll()
        self.poller.register(sock, select.POLLIN)
        self.buf = bytearray(65536)

    def stale(self) -> bool:
        """True if the socket has something to read before we sent anything: the server
        closed it while it sat idle (its ``timeout``, CLIENT KILL, a restart) or stray data."""
        try:
            return bool(self.poller.poll(0)) or bool(getattr(self.reader, "has_data",
                                                             _nothing)())
        except (OSError, ValueError):
            return True

    def exchange(self, packed: bytes) -> Any:
        sock, reader, buf = self.sock, self.reader, self.buf
        try:
            sock.sendall(packed)
        except TimeoutError as exc:
            raise rex.TimeoutError("Timeout writing to socket") from exc
        except OSError as exc:
            raise rex.ConnectionError(f"Error while writing to socket: {exc}") from exc
        reply = reader.gets()
        while reply is False:
            try:
                n = sock.recv_into(buf)
            except TimeoutError as exc:
                raise rex.TimeoutError("Timeout reading from socket") from exc
            except OSError as exc:
                raise rex.ConnectionError(f"Error while reading from socket: {exc}") from exc
            if not n:
                raise rex.ConnectionError("Connection closed by server.")
            reader.feed(buf, 0, n)  # type: ignore[arg-type]  # (hiredis takes any buffer)
            reply = reader.gets()
        if isinstance(reply, rex.RedisError):  # an error reply (LOADING is a ConnectionError)
            raise reply
        return reply


def _wire(conn: Any) -> _Wire | None:
    """The :class:`_Wire` of a connected connection (made again after a reconnect); None when
    it is not connected (the connection's own methods then connect it)."""
    sock = getattr(conn, "_sock", None)
    if not isinstance(sock, socket.socket):
        return None
    wire = getattr(conn, "_leaseq_wire", None)
    if wire is None or wire.sock is not sock:
        wire = _Wire(sock)
        try:
            conn._leaseq_wire = wire
        except AttributeError:  # a connection class without __dict__: its own methods
            return None
    return wire


def _packed(name: str, keys: Sequence[str], args: Sequence[scripts.Arg],
            fcall: bool) -> list[bytes]:
    command: Any = (("FCALL", scripts.library().functions[name]) if fcall
                    else ("EVALSHA", scripts.script(name).sha)) + (len(keys), *keys, *args)
    return [hiredis.pack_command(command)]


def _release_all(pool: Any, held: list[Any], pid: int) -> None:
    if os.getpid() != pid:
        held.clear()
        return
    while held:
        conn = held.pop()
        try:
            pool.release(conn)
        except Exception:
            conn.disconnect()


_ATTR = "_leaseq_channel"

# Bumped in a child process right after a fork: a channel made before it sees a new value and
# drops the parent's connections (their sockets are shared with the parent). Cheaper than
# comparing os.getpid() on every call (a system call each time).
_forks = 0


def _forked() -> None:
    global _forks
    _forks += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)


class _Holder:
    """What both channels do with the connections they hold."""

    __slots__ = ("_forks", "_held")

    def __init__(self) -> None:
        self._held: list[Any] = []
        self._forks = _forks

    def _pop_held(self) -> Any:
        """A held connection (None if there is none); after a fork, never one of the parent's."""
        if self._forks != _forks:
            self._held.clear()
            self._forks = _forks
        try:
            return self._held.pop()
        except IndexError:
            return None


def channel_for(client: Any) -> Channel:
    """The channel of a sync client (made on first use, then shared by its queues)."""
    chan = getattr(client, _ATTR, None)
    if not isinstance(chan, Channel):
        chan = Channel(client)
        with contextlib.suppress(AttributeError, TypeError):  # a client without __dict__
            setattr(client, _ATTR, chan)
    return chan


def async_channel_for(client: Any) -> AsyncChannel:
    """The channel of an asyncio client (made on first use, then shared by its queues)."""
    chan = getattr(client, _ATTR, None)
    if not isinstance(chan, AsyncChannel):
        chan = AsyncChannel(client)
        with contextlib.suppress(AttributeError, TypeError):
            setattr(client, _ATTR, chan)
    return chan


class Channel(_Holder):
    """Runs leaseq scripts for a sync client, in one round trip each."""

    __slots__ = ("__weakref__", "_finalizer", "_pool", "client", "fcall")

    def __init__(self, client: Any) -> None:
        super().__init__()
        self.client = client
        self._pool = _pool_of(client, redis.Redis)
        self.fcall = self._pool is not None  # until the server says it has no FCALL for us
        self._finalizer = (weakref.finalize(self, _release_all, self._pool, self._held,
                                            os.getpid())
                           if self._pool is not None else None)

    def run(self, name: str, keys: Sequence[str], args: Sequence[scripts.Arg]) -> Any:
        """The reply of script ``name``; errors mapped as :func:`leaseq.scripts.run` maps them."""
        pool = self._pool
        if pool is None:
            return scripts.run(self.client, name, keys, args)
        held = self._held
        conn = self._pop_held()
        if conn is None:
            try:
                conn = pool.get_connection()
            except _NET:
                return scripts.run(self.client, name, keys, args)
            wire = _wire(conn)
        elif (wire := _wire(conn)) is None or wire.stale():
            conn.disconnect()  # the next send connects again
            wire = None
        fcall = self.fcall and name in scripts.ENGINE_SCRIPTS
        try:
            if wire is not None:
                reply = wire.exchange(_packed(name, keys, args, fcall)[0])
            else:
                conn.send_packed_command(_packed(name, keys, args, fcall), check_health=False)
                reply = conn.read_response()
        except rex.ResponseError as exc:  # the server answered: the connection is in step
            held.append(conn)
            return self._recover(_refusal(exc, fcall), name, keys, args)
        except BaseException as exc:
            conn.disconnect()
            pool.release(conn)
            _repeat_or_raise(exc, conn)
            return scripts.run(self.client, name, keys, args)
        held.append(conn)
        return reply

    def _recover(self, how: str, name: str, keys: Sequence[str],
                 args: Sequence[scripts.Arg]) -> Any:
        if how == "load" and scripts.load_library(self.client):
            try:
                return scripts.fcall(self.client, name, keys, args)
            except scripts.FunctionUnavailable:
                pass
        if how != "source":
            self.fcall = False
        return scripts.run(self.client, name, keys, args, source=how == "source")

    def close(self) -> None:
        """Give the held connections back to the client's pool."""
        if self._finalizer is not None:
            self._finalizer()


class AsyncChannel(_Holder):
    """The asyncio twin of :class:`Channel` (same rules, awaited I/O)."""

    __slots__ = ("_pool", "client", "fcall")

    def __init__(self, client: Any) -> None:
        super().__init__()
        self.client = client
        self._pool = _pool_of(client, redis.asyncio.Redis)
        self.fcall = self._pool is not None

    async def run(self, name: str, keys: Sequence[str], args: Sequence[scripts.Arg]) -> Any:
        """The reply of script ``name``; errors mapped as :func:`leaseq.scripts.arun` maps them."""
        pool = self._pool
        if pool is None:
            return await scripts.arun(self.client, name, keys, args)
        held = self._held
        conn = self._pop_held()
        if conn is None:
            try:
                conn = await pool.get_connection()
            except _NET:
                return await scripts.arun(self.client, name, keys, args)
        else:
            try:
                stale = await conn.can_read()
            except _NET:
                stale = True
            if stale:
                await conn.disconnect()  # the next send connects again
        fcall = self.fcall and name in scripts.ENGINE_SCRIPTS
        try:
            await conn.send_packed_command(_packed(name, keys, args, fcall), check_health=False)
            reply = await conn.read_response()
        except rex.ResponseError as exc:
            held.append(conn)
            return await self._recover(_refusal(exc, fcall), name, keys, args)
        except BaseException as exc:
            await _drop(pool, conn)
            _repeat_or_raise(exc, conn)
            return await scripts.arun(self.client, name, keys, args)
        held.append(conn)
        return reply

    async def _recover(self, how: str, name: str, keys: Sequence[str],
                       args: Sequence[scripts.Arg]) -> Any:
        if how == "load" and await scripts.aload_library(self.client):
            try:
                return await scripts.afcall(self.client, name, keys, args)
            except scripts.FunctionUnavailable:
                pass
        if how != "source":
            self.fcall = False
        return await scripts.arun(self.client, name, keys, args, source=how == "source")

    async def close(self) -> None:
        """Give the held connections back to the client's pool."""
        held, self._held = self._held, []
        if self._pool is None or self._forks != _forks:
            return
        for conn in held:
            try:
                await self._pool.release(conn)
            except Exception:
                await _drop(self._pool, conn)


async def _drop(pool: Any, conn: Any) -> None:
    try:
        await conn.disconnect()
    finally:
        with contextlib.suppress(Exception):
            await pool.release(conn)
