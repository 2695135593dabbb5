"""Choosing the server: a client given in code, else ``url``, else ``$LEASEQ_URL``, else the
embedded server (started or reused on first use)."""

from __future__ import annotations

import os
from typing import Any

import redis
import redis.asyncio
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialWithJitterBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from .errors import InvalidArgument, LeaseqConnectionError

ENV_URL = "LEASEQ_URL"


# The retry policy of the clients leaseq opens from a URL (redis-py's ``from_url`` sets none):
# every leaseq call is safe to repeat after a connection error (docs/guarantees.md).
RETRIES = 3


def _backoff() -> ExponentialWithJitterBackoff:
    return ExponentialWithJitterBackoff(base=0.01, cap=0.5)


def server_url(url: str | None = None) -> str:
    """The URL to use: ``url``, else ``$LEASEQ_URL``, else the embedded server's."""
    if url:
        return url
    env = os.environ.get(ENV_URL)
    if env:
        return env
    from .server import embedded  # imported only when no server is named

    try:
        return embedded.ensure_running().url
    except embedded.EmbeddedServerError as exc:
        raise LeaseqConnectionError(f"cannot start the embedded server: {exc}") from exc


def _decodes(client: Any) -> bool:
    pool = getattr(client, "connection_pool", None)
    kwargs = getattr(pool, "connection_kwargs", None) or {}
    if isinstance(client, RedisCluster | AsyncRedisCluster):
        encoder = client.get_encoder()
        return bool(getattr(encoder, "decode_responses", False))
    return bool(kwargs.get("decode_responses", False))


def _bytes_client(client: Any, cluster: type, make: Any) -> Any:
    """``client`` itself if it returns bytes, else a twin on a non-decoding pool."""
    if not _decodes(client):
        return client
    if isinstance(client, cluster):
        raise InvalidArgument("pass a RedisCluster created with decode_responses=False")
    pool = client.connection_pool
    kwargs = dict(pool.connection_kwargs, decode_responses=False)
    return make(connection_pool=pool.__class__(connection_class=pool.connection_class,
                                               **kwargs))


def sync_client(client: Any = None, url: str | None = None) -> Any:
    """A sync client that returns bytes (payloads must round-trip exactly)."""
    if client is None:
        return redis.Redis.from_url(server_url(url), retry=Retry(_backoff(), RETRIES))
    if isinstance(client, redis.asyncio.Redis | AsyncRedisCluster):
        raise InvalidArgument("leaseq.Queue needs a sync client; use leaseq.aio.Queue")
    return _bytes_client(client, RedisCluster, redis.Redis)


def async_client(client: Any = None, url: str | None = None) -> Any:
    """An asyncio client that returns bytes (a ``ConnectionPool`` is accepted too)."""
    if client is None:
        return redis.asyncio.Redis.from_url(
            server_url(url), retry=AsyncRetry(_backoff(), RETRIES))
    if isinstance(client, redis.asyncio.ConnectionPool):
        client = redis.asyncio.Redis(connection_pool=client)
    if isinstance(client, redis.Redis | RedisCluster):
        raise InvalidArgument("leaseq.aio.Queue needs an asyncio client; use leaseq.Queue")
    return _bytes_client(client, AsyncRedisCluster, redis.asyncio.Redis)


def block_cap(client: Any, max_block: float) -> float:
    """The longest a blocking wait may last on this client without its socket timing out."""
    pool = getattr(client, "connection_pool", None)
    kwargs = getattr(pool, "connection_kwargs", None) or {}
    timeout = kwargs.get("socket_timeout")
    if isinstance(timeout, int | float) and timeout > 0:
        return max(0.05, min(max_block, timeout * 0.8))
    return max_block
