"""What every command shares: the ``--url``/``--json`` options, turning failures into one
clear line on stderr (exit 1), opening queues, and JSON-safe output."""

from __future__ import annotations

import base64
import dataclasses
import enum
import json
import os
import re
from collections.abc import Callable
from pathlib import PurePath
from typing import Any, TypeVar

import click
import redis
from rich.console import Console

from ..connection import ENV_URL, server_url, sync_client
from ..discovery import queue_names
from ..errors import LeaseqConnectionError, LeaseqError
from ..keys import QueueKeys
from ..queue import Queue
from ..server.embedded import EmbeddedServerError

F = TypeVar("F", bound=Callable[..., Any])

console = Console()
err_console = Console(stderr=True)

_PASSWORD = re.compile(r"(://[^:/@]*:)[^@]*@")


def mask(url: str) -> str:
    """``url`` without its password."""
    return _PASSWORD.sub(r"\1***@", url)


def url_option(f: F) -> F:
    return click.option(
        "--url", envvar=ENV_URL, metavar="URL",
        help=f"Server URL (redis://, rediss://, unix://); default ${ENV_URL}, else the "
             "embedded server.",
    )(f)


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(f)


def describe(exc: BaseException) -> str:
    """One line saying what went wrong, with no password in it."""
    if isinstance(exc, LeaseqConnectionError | redis.ConnectionError | redis.TimeoutError):
        text = f"cannot reach the server: {exc}"
    elif isinstance(exc, redis.AuthenticationError | redis.ResponseError):
        text = f"the server refused: {exc}"
    elif isinstance(exc, EmbeddedServerError):
        text = f"embedded server: {exc}"
    elif isinstance(exc, LeaseqError | ValueError | redis.RedisError | OSError):
        text = str(exc) or type(exc).__name__
    else:
        text = f"{type(exc).__name__}: {exc}"
    return mask(" ".join(text.split()))


class Group(click.Group):
    """A click group whose commands fail with one line on stderr and exit 1, never a
    traceback (usage errors keep click's exit 2; ``LEASEQ_DEBUG=1`` shows the traceback)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except KeyboardInterrupt:
            raise click.exceptions.Exit(130) from None
        except (LeaseqError, redis.RedisError, EmbeddedServerError, ValueError, OSError,
                ImportError, AttributeError, TypeError) as exc:
            if os.environ.get("LEASEQ_DEBUG"):
                raise
            raise click.ClickException(describe(exc)) from None


class Session:
    """Connections of one command: the resolved URL, a raw client, queues by name."""

    def __init__(self, url: str | None) -> None:
        self.url = server_url(url)
        if self.url.partition("://")[0] not in ("redis", "rediss", "unix"):
            raise click.ClickException(
                f"bad URL {mask(self.url)!r}: expected redis://, rediss:// or unix://")
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = sync_client(None, self.url)
        return self._client

    def ping(self) -> None:
        """Raise a clear error now if the server cannot be reached."""
        try:
            self.client.ping()
        except redis.RedisError as exc:
            raise LeaseqConnectionError(f"{mask(self.url)}: {exc}") from exc

    def queue(self, name: str, *, must_exist: bool = True, **opts: Any) -> Queue:
        """The queue ``name``; with ``must_exist``, an error if it was never used."""
        keys = QueueKeys.of(name)
        if must_exist and not self.exists(keys):
            raise click.ClickException(f"unknown queue {name!r} (no such queue on this server)")
        return Queue(name, self.client, **opts)

    def exists(self, keys: QueueKeys) -> bool:
        try:
            return bool(self.client.exists(keys.meta))
        except redis.RedisError as exc:
            raise LeaseqConnectionError(f"{mask(self.url)}: {exc}") from exc

    def queue_names(self) -> list[str]:
        """Every queue on the server (SCAN over the meta keys), sorted."""
        try:
            return queue_names(self.client)
        except redis.RedisError as exc:
            raise LeaseqConnectionError(f"{mask(self.url)}: {exc}") from exc

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def jsonable(value: Any) -> Any:
    """``value`` made JSON-safe: dataclasses and enums flattened, bytes as
    ``{"base64": ...}``."""
    if isinstance(value, bytes | bytearray | memoryview):
        return {"base64": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, PurePath):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)
                if f.name != "codec"}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def print_json(value: Any) -> None:
    click.echo(json.dumps(jsonable(value), ensure_ascii=False))


def preview(value: Any, width: int = 60) -> str:
    """A one-line preview of a payload."""
    if isinstance(value, bytes):
        text = "b" + repr(value[:width])[1:]
    else:
        try:
            text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        except (TypeError, ValueError):
            text = repr(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def decoded(item: Any) -> tuple[Any, str | None]:
    """(data, None) or (None, why) for a peeked item whose payload cannot be decoded."""
    try:
        return item.data, None
    except LeaseqError as exc:
        return None, str(exc)
