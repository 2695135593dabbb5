"""The dashboard's Starlette app: pages, live updates and actions (see :func:`create_app`)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from collections.abc import AsyncIterator, Sequence
from typing import Any
from urllib.parse import parse_qs, urlencode

import jinja2
import redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route

from ..errors import LeaseqConnectionError, LeaseqError
from . import view
from .reader import WHICH, Reader
from .security import CSRF_COOKIE, Csrf, Guard, parse_basic, same_origin

PAGE_SIZES = (20, 50, 100, 200, 500)
DEFAULT_PAGE = 50
LIST_PREVIEW = 120  # characters of payload shown in a list row
ERROR_PREVIEW = 200
ITEM_PREVIEW = 4096  # characters of payload/result shown on an item page
MAX_FORM = 64 * 1024
MAX_ROWS = 200  # queues listed on the overview (the ones holding the most items)

DONE = {
    "requeued": "{n} dead letter(s) moved back to pending.",
    "removed": "Item removed.",
    "gone": "The item was already gone.",
    "purged": "Queue purged: {n} item(s) deleted.",
}


class Dashboard:
    """The app's state: what to read, how to render, what is allowed."""

    def __init__(self, reader: Reader, *, read_only: bool, refresh: float, csrf: Csrf,
                 chart_span: float, metrics: bool) -> None:
        self.reader = reader
        self.read_only = read_only
        self.refresh = refresh
        self.csrf = csrf
        self.chart_span = chart_span
        self.metrics = metrics
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader("leaseq.dashboard", "templates"),
            autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
            lstrip_blocks=True)
        self.env.filters.update(span=view.span, utc=view.utc, rate=view.rate,
                                relative=view.relative, inert=view.inert)
        self.env.globals.update(preview=view.preview, value_preview=view.value_preview,
                                LIST_PREVIEW=LIST_PREVIEW, ERROR_PREVIEW=ERROR_PREVIEW,
                                ITEM_PREVIEW=ITEM_PREVIEW, WHICH=WHICH, PAGE_SIZES=PAGE_SIZES)

    # ------------------------------------------------------------------------------ rendering

    def fragment(self, request: Request, template: str, /, **ctx: Any) -> str:
        return self.env.get_template(template).render(**self._context(request, None), **ctx)

    def page(self, request: Request, template: str, status: int = 200, /,
             **ctx: Any) -> HTMLResponse:
        """A full page; sets the browser's CSRF cookie on first visit."""
        nonce = request.cookies.get(CSRF_COOKIE)
        fresh = not nonce
        if fresh:
            nonce = Csrf.new_nonce()
        html = self.env.get_template(template).render(**self._context(request, nonce), **ctx)
        response = HTMLResponse(html, status_code=status,
                                headers={"cache-control": "no-store"})
        if fresh:
            response.set_cookie(CSRF_COOKIE, nonce or "", path=_root(request) or "/",
                                httponly=True, samesite="strict",
                                secure=request.url.scheme == "https")
        return response

    def _context(self, request: Request, nonce: str | None) -> dict[str, Any]:
        root = _root(request)

        def url(path: str, **params: Any) -> str:
            query = urlencode({k: v for k, v in params.items() if v is not None})
            return f"{root}{path}" + (f"?{query}" if query else "")

        return {
            "url": url, "read_only": self.read_only, "metrics": self.metrics,
            "csrf": self.csrf.token_for(nonce) if nonce else "",
            "nonce": getattr(request.state, "csp_nonce", ""),
            "refresh_ms": int(self.refresh * 1000),
        }

    def chart(self, overview: Any, span_s: float | None = None) -> str:
        span_ms = (span_s or self.chart_span) * 1000.0
        points = overview.history
        return view.chart([
            view.Series("completed/s", "#2a7", [(t, r["completed"]) for t, r in points]),
            view.Series("added/s", "#36c", [(t, r["added"]) for t, r in points]),
            view.Series("failed/s", "#d43", [(t, r["failed"]) for t, r in points]),
        ], now_ms=overview.now_ms, span_ms=span_ms)


def _root(request: Request) -> str:
    return str(request.scope.get("root_path", "") or "").rstrip("/")


def _dash(request: Request) -> Dashboard:
    d: Dashboard = request.app.state.dashboard
    return d


def _int(value: str | None, default: int, low: int, high: int) -> int:
    try:
        n = int(value) if value is not None else default
    except ValueError:
        n = default
    return min(max(n, low), high)


def _fail_page(d: Dashboard, request: Request, exc: Exception) -> HTMLResponse:
    if isinstance(exc, LeaseqConnectionError | redis.ConnectionError | redis.TimeoutError):
        return d.page(request, "error.html", 503, title="Server unreachable",
                      message=f"cannot reach the server: {exc}")
    return d.page(request, "error.html", 400, title="Cannot show this",
                  message=str(exc) or type(exc).__name__)


# ---------------------------------------------------------------------------------- pages

async def overview_data(d: Dashboard) -> dict[str, Any]:
    ov = await d.reader.overview()
    rows = ov.rows
    totals = {k: sum(int(getattr(r.stats, k)) for r in rows) for k in
              ("pending", "delayed", "leased", "dead")}
    if len(rows) > MAX_ROWS:  # the biggest ones; totals still count every queue
        rows = sorted(rows, key=lambda r: -(r.stats.pending + r.stats.delayed
                                           + r.stats.leased + r.stats.dead))[:MAX_ROWS]
    return {"ov": ov, "rows": sorted(rows, key=lambda r: r.name), "totals": totals,
            "count": len(ov.rows), "chart": d.chart(ov)}


async def overview(request: Request) -> Response:
    d = _dash(request)
    try:
        data = await overview_data(d)
    except (LeaseqError, redis.RedisError, OSError) as exc:
        return _fail_page(d, request, exc)
    return d.page(request, "overview.html", **data)


async def queue_page(request: Request) -> Response:
    d = _dash(request)
    p = request.query_params
    name = p.get("q", "")
    which = p.get("which", "pending")
    if which not in WHICH:
        which = "pending"
    size = _int(p.get("n"), DEFAULT_PAGE, 1, PAGE_SIZES[-1])
    start = _int(p.get("start"), 0, 0, 2**53)
    if p.get("from"):  # the form's field counts from 1, like the row numbers
        start = _int(p.get("from"), 1, 1, 2**53) - 1
    try:
        win = await d.reader.window(name, which, start, size)
    except (LeaseqError, redis.RedisError, OSError) as exc:
        return _fail_page(d, request, exc)
    done = p.get("done")
    message = DONE[done].format(n=_int(p.get("count"), 0, 0, 2**53)) if done in DONE else None
    return d.page(request, "queue.html", name=name, win=win, stats=win.stats, message=message,
                  last_start=max(0, ((win.total - 1) // size) * size))


async def item_page(request: Request) -> Response:
    d = _dash(request)
    name, item_id = request.query_params.get("q", ""), request.query_params.get("id", "")
    try:
        st = await d.reader.item(name, item_id)
    except (LeaseqError, redis.RedisError, OSError) as exc:
        return _fail_page(d, request, exc)
    return d.page(request, "item.html", name=name, st=st)


async def purge_page(request: Request) -> Response:
    d = _dash(request)
    if d.read_only:
        return _forbidden(d, request)
    name = request.query_params.get("q", "")
    try:
        stats = await d.reader.queue(name).stats()
    except (LeaseqError, redis.RedisError, OSError) as exc:
        return _fail_page(d, request, exc)
    return d.page(request, "purge.html", name=name, stats=stats, wrong=False)


def _forbidden(d: Dashboard, request: Request, why: str | None = None) -> HTMLResponse:
    return d.page(request, "error.html", 403, title="Not allowed",
                  message=why or "this dashboard is read-only: actions are disabled")


async def action(request: Request) -> Response:
    """POST: requeue one or all dead letters, remove an item, purge a queue (confirmed)."""
    d = _dash(request)
    if d.read_only:
        return _forbidden(d, request)
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            return _forbidden(d, request, "form too large")
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace"),
                                         keep_blank_values=True).items()} \
        if ctype == "application/x-www-form-urlencoded" else {}
    if not same_origin(request.scope) or not d.csrf.valid(request.cookies.get(CSRF_COOKIE),
                                                          form.get("csrf")):
        return _forbidden(d, request, "the form's CSRF token is missing or wrong: reload the "
                                      "page and try again")
    op, name, item_id = form.get("op", ""), form.get("q", ""), form.get("id", "")
    back = {"q": name, "which": form.get("which") or None}
    try:
        q = d.reader.queue(name)
        if op == "requeue_dead":
            n = await q.dead_requeue([item_id])
            back.update(done="requeued", count=str(n))
        elif op == "requeue_all_dead":
            n = await q.dead_requeue()
            back.update(done="requeued", count=str(n))
        elif op == "remove":
            back.update(done="removed" if await q.remove(item_id) else "gone")
        elif op == "purge":
            if form.get("confirm") != name:
                stats = await q.stats()
                return d.page(request, "purge.html", 400, name=name, stats=stats, wrong=True)
            n = await q.purge()
            back.update(done="purged", count=str(n))
        else:
            return d.page(request, "error.html", 400, title="Unknown action",
                          message=f"unknown action {op!r}")
    except (LeaseqError, redis.RedisError, OSError) as exc:
        return _fail_page(d, request, exc)
    query = urlencode({k: v for k, v in back.items() if v is not None})
    return RedirectResponse(f"{_root(request)}/queue?{query}", status_code=303)


# ---------------------------------------------------------------------------------- live

async def _fragment(d: Dashboard, request: Request, what: str, name: str) -> str:
    try:
        if what == "queue":
            stats = await d.reader.queue(name).stats()
            return d.fragment(request, "_queue_stats.html", name=name, stats=stats)
        return d.fragment(request, "_overview.html", **await overview_data(d))
    except (LeaseqError, redis.RedisError, OSError) as exc:
        return d.fragment(request, "_error.html", message=str(exc))


async def fragment(request: Request) -> Response:
    """The live part of a page, for clients that poll instead of listening to /events."""
    d = _dash(request)
    html = await _fragment(d, request, request.query_params.get("view", "overview"),
                           request.query_params.get("q", ""))
    return HTMLResponse(html, headers={"cache-control": "no-store"})


async def events(request: Request) -> Response:
    """Server-sent events: the live part of a page every ``refresh`` seconds (event
    ``update``; ``?limit=N`` ends the stream after N events)."""
    d = _dash(request)
    what = request.query_params.get("view", "overview")
    name = request.query_params.get("q", "")
    limit = _int(request.query_params.get("limit"), 0, 0, 10**9)

    async def stream() -> AsyncIterator[str]:
        yield f"retry: {max(1000, int(d.refresh * 1000))}\n\n"
        sent = 0
        while True:
            html = await _fragment(d, request, what, name)
            data = "".join(f"data: {line}\n" for line in html.splitlines() or [""])
            yield f"event: update\n{data}\n"
            sent += 1
            if limit and sent >= limit:
                return
            await asyncio.sleep(d.refresh)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"cache-control": "no-store", "x-accel-buffering": "no"})


async def no_icon(request: Request) -> Response:
    return Response(status_code=204)


# ---------------------------------------------------------------------------------- the app

def _metrics_route(client_or_url: Any) -> BaseRoute | None:
    """``/metrics`` from ``leaseq.metrics.asgi_app`` when that module is installed."""
    try:
        metrics = importlib.import_module("leaseq.metrics")
    except ImportError:
        return None
    make = getattr(metrics, "asgi_app", None)
    if make is None:
        return None
    return Mount("/metrics", app=make(client_or_url))


def create_app(client_or_url: Any = None, *, read_only: bool = False, token: str | None = None,
               basic_auth: tuple[str, str] | str | None = None,
               allowed_hosts: Sequence[str] | None = None, refresh: float = 2.0,
               chart_span: float = 300.0, secret: bytes | None = None) -> Starlette:
    """The dashboard as a Starlette app, to serve or to mount (``Mount("/queues", app)``).

    Args:
        client_or_url: a ``redis://``/``rediss://``/``unix://`` URL, an asyncio redis client
            (plain or cluster) or pool, or None for ``$LEASEQ_URL``, else the embedded server.
        read_only: hide every action and refuse them (403).
        token: require this bearer token (header, or ``?token=`` once, kept in a cookie).
        basic_auth: require these credentials, ``(user, password)`` or ``"user:password"``.
        allowed_hosts: Host header names answered; default loopback names only when there are
            no credentials (guards against DNS rebinding), else any. ``["*"]``: any.
        refresh: seconds between live updates of an open page.
        chart_span: seconds of history in the throughput chart (kept in memory).
        secret: key of the CSRF tokens (random per app by default).

    Guarantees: every page escapes what it shows and reads windows of a queue, never a whole
    queue; every action is a POST carrying a CSRF token and is one public API call. Binding a
    server is the caller's business: :func:`leaseq.dashboard.serve` refuses a non-loopback
    address without credentials. If ``leaseq.metrics`` is installed, its ``asgi_app`` is
    mounted at ``/metrics`` (behind the same credentials).
    """
    if refresh <= 0 or chart_span <= 0:
        raise ValueError("refresh and chart_span must be > 0")
    reader = Reader(client_or_url, history=max(chart_span, 60.0),
                    sample_every=min(1.0, refresh))
    routes: list[BaseRoute] = [
        Route("/", overview),
        Route("/queue", queue_page),
        Route("/item", item_page),
        Route("/purge", purge_page),
        Route("/action", action, methods=["POST"]),
        Route("/fragment", fragment),
        Route("/events", events),
        Route("/favicon.ico", no_icon),
    ]
    metrics_route = _metrics_route(client_or_url)
    if metrics_route is not None:
        routes.append(metrics_route)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await reader.close()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.dashboard = Dashboard(reader, read_only=read_only, refresh=refresh,
                                    csrf=Csrf(secret), chart_span=chart_span,
                                    metrics=metrics_route is not None)
    app.add_middleware(Guard, token=token, basic_auth=parse_basic(basic_auth),
                       allowed_hosts=allowed_hosts)
    return app
