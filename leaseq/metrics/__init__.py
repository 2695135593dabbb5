"""Prometheus metrics for leaseq (``pip install 'leaseq[metrics]'``).

* Queue metrics, read from the server at every scrape (one pipelined round trip for all
  queues on a single server, one per queue on a cluster): gauges ``leaseq_queue_pending``,
  ``_delayed``, ``_leased``, ``_dead``, ``_delayed_due``, ``_leases_expired`` and counters
  ``leaseq_items_{added,leased,completed,failed,retried,expired,dead_lettered,requeued,
  removed,purged,dead_purged}_total`` from each queue's lifetime counters (kept on the server:
  they survive worker restarts), all labelled ``queue``; ``leaseq_queue_up{queue}`` is 0 for a
  queue whose stats could not be read (the scrape goes on without it).
* Worker histograms (this process's jobs, after :func:`instrument`):
  ``leaseq_job_duration_seconds{queue,outcome}`` and ``leaseq_queue_wait_seconds{queue}``.

Serve them with :func:`asgi_app` (mount it in any ASGI app), :func:`serve` (a plain HTTP
server on a thread), ``leaseq worker --metrics-port N``, or register :class:`QueueCollector`
in your own registry. See docs/metrics.md.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from ..discovery import Unreadable, aread_stats, ascrape, queue_names, read_stats, scrape
from ._queues import QueueCollector, families
from ._worker import (
    ADDED_HEADER,
    WorkerMetrics,
    instrument,
    worker_collector,
    worker_metrics,
)

__all__ = [
    "ADDED_HEADER",
    "QueueCollector",
    "Unreadable",
    "WorkerMetrics",
    "aread_stats",
    "ascrape",
    "asgi_app",
    "families",
    "instrument",
    "queue_names",
    "read_stats",
    "registry",
    "scrape",
    "serve",
    "worker_metrics",
]

log = logging.getLogger("leaseq.metrics")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def registry(client: Any = None, *, url: str | None = None,
             queues: Sequence[str] | None = None) -> CollectorRegistry:
    """A registry with the queue metrics of a sync client (or ``url``; ``queues`` None: every
    queue on the server) and this process's worker histograms once :func:`instrument` ran."""
    from ..connection import sync_client

    reg = CollectorRegistry(auto_describe=False)
    reg.register(QueueCollector(sync_client(client, url), queues))
    reg.register(_WorkerProxy())
    return reg


class _WorkerProxy:
    """This process's worker histograms, whenever they come to exist."""

    def collect(self) -> Any:
        m = worker_collector()
        return m.collect() if m is not None else iter(())


def _is_async(client: Any) -> bool:
    return inspect.iscoroutinefunction(getattr(client, "execute_command", None))


def asgi_app(client: Any, *, queues: Sequence[str] | None = None
             ) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """An ASGI app answering GET/HEAD (any path: mount it where you like, e.g. ``/metrics``)
    with the Prometheus text exposition of every queue on ``client``'s server (or of
    ``queues``), read fresh at each request, plus this process's worker histograms.

    ``client`` is a redis-py client, asyncio (read on the loop) or sync (read on a thread).
    A server that cannot be reached answers 503 with the error; a queue whose stats script
    fails is left out, with ``leaseq_queue_up`` 0."""
    from ..connection import async_client, sync_client

    conn = async_client(client) if _is_async(client) else sync_client(client)
    names = None if queues is None else list(queues)

    async def render() -> bytes:
        if _is_async(conn):
            stats, failed = await ascrape(conn, names)
        else:
            stats, failed = await asyncio.to_thread(scrape, conn, names)
        for u in failed:
            log.warning("metrics: cannot read queue %r: %s", u.queue, u.error)
        reg = CollectorRegistry(auto_describe=False)
        reg.register(_Fixed(families(stats, failed)))
        reg.register(_WorkerProxy())
        return generate_latest(reg)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        method = scope.get("method", "GET")
        if method not in ("GET", "HEAD"):
            await _respond(send, 405, b"method not allowed\n", b"text/plain; charset=utf-8",
                           [(b"allow", b"GET, HEAD")])
            return
        try:
            body = await render()
        except Exception as exc:
            log.warning("metrics scrape failed: %s", exc)
            await _respond(send, 503, f"leaseq metrics unavailable: {exc}\n".encode(),
                           b"text/plain; charset=utf-8")
            return
        await _respond(send, 200, b"" if method == "HEAD" else body,
                       CONTENT_TYPE_LATEST.encode(), length=len(body))

    return app


class _Fixed:
    def __init__(self, metrics: list[Any]) -> None:
        self.metrics = metrics

    def collect(self) -> Any:
        return iter(self.metrics)


async def _respond(send: Send, status: int, body: bytes, content_type: bytes,
                   extra: list[tuple[bytes, bytes]] | None = None,
                   length: int | None = None) -> None:
    headers = [(b"content-type", content_type),
               (b"content-length", str(len(body) if length is None else length).encode()),
               *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def serve(port: int, *, host: str = "127.0.0.1", client: Any = None, url: str | None = None,
          queues: Sequence[str] | None = None, instrument_process: bool = True) -> int:
    """Serve ``/metrics`` on ``host:port`` from a daemon thread of this process (port 0: any
    free port) and, with ``instrument_process``, call :func:`instrument`. Returns the port."""
    from prometheus_client import start_http_server

    if instrument_process:
        instrument()
    server, _thread = start_http_server(port, addr=host,
                                        registry=registry(client, url=url, queues=queues))
    bound = int(server.server_address[1])
    log.info("metrics on http://%s:%d/metrics", host, bound)
    return bound
