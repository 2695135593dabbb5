"""Load leaseq's Lua scripts and run them by SHA.

Each transition lives in ``leaseq/lua/<name>.lua``; a line ``-- @include "<file>"`` is replaced by
``leaseq/lua/includes/<file>.lua`` so shared helpers are written once. Scripts run with EVALSHA;
on NOSCRIPT (a fresh server, ``SCRIPT FLUSH``, a failover) the call is repeated once as EVAL, which
also caches the script again. Server errors become :class:`~leaseq.errors.LeaseqError` subclasses;
connection failures become :class:`~leaseq.errors.LeaseqConnectionError`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, NoReturn

from redis import exceptions as rex

from .errors import LeaseqConnectionError, LeaseqError, PermissionDenied, from_script_error

_INCLUDE = re.compile(r'^--\s*@include\s+"([a-z_]+)"\s*$', re.MULTILINE)

Arg = str | bytes | int | float


@dataclass(frozen=True, slots=True)
class Script:
    """One Lua script, with its includes expanded."""

    name: str
    source: str
    sha: str


def _read(path: str) -> str:
    node = resources.files("leaseq").joinpath("lua")
    for part in path.split("/"):
        node = node.joinpath(part)
    return node.read_text(encoding="utf-8")


def expand(source: str, seen: frozenset[str] = frozenset()) -> str:
    """Replace every ``-- @include "x"`` line with includes/x.lua (each included once)."""
    done: set[str] = set(seen)

    def repl(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in done:
            return f"-- (included above: {name})"
        done.add(name)
        return expand(_read(f"includes/{name}.lua"), frozenset(done))

    return _INCLUDE.sub(repl, source)


@cache
def script(name: str) -> Script:
    """The script ``leaseq/lua/<name>.lua`` (cached for the life of the process)."""
    source = expand(_read(f"{name}.lua"))
    return Script(name, source, hashlib.sha1(source.encode("utf-8")).hexdigest())


# The engine's scripts, also served as one Redis Functions library (FCALL) where the server has
# them: the helpers are then defined once per load instead of on every call.
ENGINE_SCRIPTS = ("add", "lease", "complete", "extend", "fail", "requeue", "remove", "state",
                  "stats", "peek", "purge", "sweep", "dead_requeue", "dead_purge")
READ_ONLY = frozenset({"state", "stats", "peek"})  # registered with the no-writes flag


@dataclass(frozen=True, slots=True)
class Library:
    """The engine's scripts as one function library: ``functions[name]`` is what FCALL calls.

    Its name carries a hash of its code, so several leaseq versions can share a server."""

    name: str
    source: str
    functions: dict[str, str]


@cache
def library() -> Library:
    """Every engine script wrapped as ``function(KEYS, ARGV)`` after the includes they use,
    each include once (scripts bind KEYS/ARGV to locals on their first lines, so a body runs
    unchanged as a function)."""
    done: list[str] = []

    def include(name: str) -> None:
        if name not in done:
            for dep in _INCLUDE.findall(_read(f"includes/{name}.lua")):
                include(dep)
            done.append(name)

    bodies = []
    for name in ENGINE_SCRIPTS:
        body = _read(f"{name}.lua")
        for dep in _INCLUDE.findall(body):
            include(dep)
        bodies.append((name, _INCLUDE.sub("", body)))
    helpers = "\n".join(_INCLUDE.sub("", _read(f"includes/{n}.lua")) for n in done)
    code = helpers + "".join(f"\nlocal function run_{n}(KEYS, ARGV)\n{b}\nend\n" for n, b in bodies)
    version = hashlib.sha1(code.encode("utf-8")).hexdigest()[:12]
    functions = {n: f"leaseq_{version}_{n}" for n in ENGINE_SCRIPTS}
    register = "".join(
        f"redis.register_function{{function_name='{functions[n]}', callback=run_{n}"
        + (", flags={'no-writes'}" if n in READ_ONLY else "") + "}\n"
        for n in ENGINE_SCRIPTS)
    name = f"leaseq_{version}"
    return Library(name, f"#!lua name={name}\n{code}\n{register}", functions)


def fcall_refusal(exc: rex.ResponseError) -> str | None:
    """Why the server refused an FCALL of the library without running it: ``"missing"`` (not
    loaded: a fresh server, FUNCTION FLUSH), ``"unsupported"`` (no FCALL before Redis 7, or an
    ACL without it), or None: the function ran and raised (never repeat that call)."""
    text = str(exc)
    if text.startswith("Function not found") or "ERR Function not found" in text:
        return "missing"
    low = text.lower()
    if "'fcall'" in low and ("unknown command" in low or "no permissions" in low
                             or isinstance(exc, rex.NoPermissionError)):
        return "unsupported"
    return None


def _fcall_args(name: str, keys: Sequence[str], args: Sequence[Arg]) -> tuple[Any, ...]:
    return ("FCALL", library().functions[name], len(keys), *keys, *args)


def load_library(client: Any) -> bool:
    """Load (or replace) the library on a sync client's server; False if the server or the ACL
    refuses it (leaseq then keeps to EVALSHA)."""
    try:
        client.execute_command("FUNCTION", "LOAD", "REPLACE", library().source)
    except Exception as exc:
        return _load_failed(exc)
    return True


async def aload_library(client: Any) -> bool:
    """:func:`load_library` for an asyncio client."""
    try:
        await client.execute_command("FUNCTION", "LOAD", "REPLACE", library().source)
    except Exception as exc:
        return _load_failed(exc)
    return True


def fcall(client: Any, name: str, keys: Sequence[str], args: Sequence[Arg]) -> Any:
    """Call the library's function ``name`` through the client's full path; a refusal (see
    :func:`fcall_refusal`) raises :class:`FunctionUnavailable`, other errors are mapped."""
    try:
        return client.execute_command(*_fcall_args(name, keys, args))
    except Exception as exc:
        _fcall_failed(exc)


async def afcall(client: Any, name: str, keys: Sequence[str], args: Sequence[Arg]) -> Any:
    """:func:`fcall` for an asyncio client."""
    try:
        return await client.execute_command(*_fcall_args(name, keys, args))
    except Exception as exc:
        _fcall_failed(exc)


def _fcall_failed(exc: Exception) -> NoReturn:
    if isinstance(exc, rex.ResponseError) and fcall_refusal(exc) is not None:
        raise FunctionUnavailable(str(exc)) from exc
    reraise(exc)


def _load_failed(exc: Exception) -> bool:
    if isinstance(exc, rex.ResponseError):
        return False  # refused (ACL, no FUNCTION command): leaseq keeps to EVALSHA
    reraise(exc)


class FunctionUnavailable(Exception):
    """The library's function could not be called (not loaded, or FCALL not allowed)."""


def reraise(exc: Exception) -> NoReturn:
    """Raise ``exc`` as leaseq reports it (mapped and chained, or as it is)."""
    mapped = translate(exc)
    if mapped is exc:
        raise exc
    raise mapped from exc


def translate(exc: Exception) -> Exception:
    """Map a redis-py exception raised by a script call to leaseq's error tree."""
    if isinstance(exc, LeaseqError):
        return exc
    if isinstance(exc, rex.NoPermissionError):
        err: LeaseqError = PermissionDenied(f"the server's ACL refused the call: {exc}")
    elif isinstance(exc, rex.ConnectionError | rex.TimeoutError):
        err = LeaseqConnectionError(f"lost the connection to the server: {exc}")
    elif isinstance(exc, rex.ClusterError | rex.TryAgainError | rex.ReadOnlyError):
        # refused before anything ran: the cluster is down or resharding, or a failover left
        # the client on a replica; the call may simply be made again
        err = LeaseqConnectionError(f"the server cannot serve the call right now: {exc}")
    elif isinstance(exc, rex.ResponseError):
        err = from_script_error(str(exc))
    elif isinstance(exc, rex.RedisError):
        err = LeaseqConnectionError(f"redis client error: {exc}")
    else:
        return exc
    return err


def is_noscript(exc: Exception) -> bool:
    return isinstance(exc, rex.NoScriptError) or (
        isinstance(exc, rex.ResponseError) and str(exc).startswith("NOSCRIPT")
    )


def run(client: Any, name: str, keys: Sequence[str], args: Sequence[Arg], *,
        source: bool = False) -> Any:
    """Run script ``name`` on a sync client (Redis or RedisCluster) in one round trip
    (``source``: send it as EVAL at once, the server having just said NOSCRIPT)."""
    s = script(name)
    try:
        try:
            if source:
                return client.execute_command("EVAL", s.source, len(keys), *keys, *args)
            return client.execute_command("EVALSHA", s.sha, len(keys), *keys, *args)
        except rex.ResponseError as exc:
            if not is_noscript(exc):
                raise
            return client.execute_command("EVAL", s.source, len(keys), *keys, *args)
    except Exception as exc:
        reraise(exc)


async def arun(client: Any, name: str, keys: Sequence[str], args: Sequence[Arg], *,
               source: bool = False) -> Any:
    """Run script ``name`` on an asyncio client (Redis or RedisCluster) in one round trip
    (``source`` as in :func:`run`)."""
    s = script(name)
    try:
        try:
            if source:
                return await client.execute_command("EVAL", s.source, len(keys), *keys, *args)
            return await client.execute_command("EVALSHA", s.sha, len(keys), *keys, *args)
        except rex.ResponseError as exc:
            if not is_noscript(exc):
                raise
            return await client.execute_command("EVAL", s.source, len(keys), *keys, *args)
    except Exception as exc:
        reraise(exc)
