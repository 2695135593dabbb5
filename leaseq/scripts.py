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
from typing import Any

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


def translate(exc: Exception) -> Exception:
    """Map a redis-py exception raised by a script call to leaseq's error tree."""
    if isinstance(exc, LeaseqError):
        return exc
    if isinstance(exc, rex.NoPermissionError):
        err: LeaseqError = PermissionDenied(f"the server's ACL refused the call: {exc}")
    elif isinstance(exc, rex.ConnectionError | rex.TimeoutError):
        err = LeaseqConnectionError(f"lost the connection to the server: {exc}")
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
        mapped = translate(exc)
        if mapped is exc:
            raise
        raise mapped from exc


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
        mapped = translate(exc)
        if mapped is exc:
            raise
        raise mapped from exc
