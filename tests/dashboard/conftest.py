"""Fixtures of the dashboard tests: apps on the real valkey server, a live uvicorn server in a
thread, and Debian's chromium driven by Playwright."""

from __future__ import annotations

import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import leaseq

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def valkey_server() -> Iterator[Any]:
    """The dashboard tests' own server (overrides the session's shared one): the overview
    lists the biggest queues of a server, so other tests' queues must not crowd them out."""
    from leaseq.server.process import ServerProcess

    server = ServerProcess(kind="valkey")
    server.start()
    yield server
    server.close()


@pytest.fixture
def q(valkey_server: Any, queue_name: str) -> Iterator[Any]:
    """A queue on this module's server (dead-letters at the first failure), purged after."""
    queue = leaseq.Queue(queue_name, url=valkey_server.url, max_attempts=1)
    yield queue
    queue.purge()
    queue.close()


@pytest.fixture
def dash(valkey_server: Any) -> Iterator[Callable[..., Any]]:
    """``dash(**create_app options)``: a TestClient (Host 127.0.0.1) on an app reading the
    session's valkey server; closed at teardown."""
    from starlette.testclient import TestClient

    from leaseq.dashboard import create_app

    clients: list[TestClient] = []

    def make(*, base_url: str = "http://127.0.0.1", **kw: Any) -> TestClient:
        client = TestClient(create_app(valkey_server.url, **kw), base_url=base_url)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.__exit__(None, None, None)


def csrf_of(html: str) -> str:
    """The CSRF token in a page's forms."""
    m = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert m, "no CSRF token in the page"
    return m.group(1)


def row_cells(html: str, queue: str) -> dict[str, str]:
    """The overview's cells (by data-k) of the row of ``queue``, without markup."""
    from html import escape

    start = html.index(f'<tr data-queue="{escape(queue)}">')
    row = html[start : html.index("</tr>", start)]
    return {k: re.sub(r"<[^>]+>", "", v).strip()
            for k, v in re.findall(r'data-k="(\w+)">(.*?)</td>', row, re.S)}


class LiveServer:
    """uvicorn serving ``app`` in a thread on a free loopback port."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        from leaseq.dashboard import bound_socket

        self.sock = bound_socket("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on",
                                                    timeout_graceful_shutdown=1))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       daemon=True)

    def start(self) -> LiveServer:
        self.thread.start()
        end = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > end or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


@pytest.fixture
def live(valkey_server: Any) -> Iterator[Callable[..., str]]:
    """``live(**create_app options)``: the URL of a live dashboard on the valkey server."""
    from leaseq.dashboard import create_app

    servers: list[LiveServer] = []

    def start(**kw: Any) -> str:
        s = LiveServer(create_app(valkey_server.url, **kw)).start()
        servers.append(s)
        return s.url

    yield start
    for s in servers:
        s.stop()


def chromium_path() -> str | None:
    for candidate in ("/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's chromium, headless, through Playwright (never a downloaded browser)."""
    path = chromium_path()
    if path is None:
        pytest.skip("chromium not found (apt-get install chromium); browser tests skipped")
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="playwright is not installed (test extra)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context and page; dialogs are recorded (and dismissed) in
    ``page.dialogs``."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    pg = context.new_page()
    pg.dialogs = []

    def on_dialog(d: Any) -> None:
        pg.dialogs.append(d.message)
        d.dismiss()

    pg.on("dialog", on_dialog)
    pg.set_default_timeout(15000)
    yield pg
    context.close()
