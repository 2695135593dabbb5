"""Running the dashboard with uvicorn, refusing unsafe binds."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import uvicorn

from .app import create_app
from .security import check_bind, parse_basic


def bound_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (port 0: a free one)."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def serve(client_or_url: Any = None, *, host: str = "127.0.0.1", port: int = 8765,
          read_only: bool = False, token: str | None = None,
          basic_auth: tuple[str, str] | str | None = None, refresh: float = 2.0,
          on_ready: Callable[[str], None] | None = None, **options: Any) -> None:
    """Serve the dashboard until interrupted.

    Raises :class:`~leaseq.dashboard.UnsafeBind` before opening anything when ``host`` is not
    loopback and neither ``token`` nor ``basic_auth`` is given. ``on_ready`` is called with the
    dashboard's URL once the socket is bound (``port=0`` picks a free port). Other keyword
    arguments go to :func:`create_app`.
    """
    basic = parse_basic(basic_auth)
    check_bind(host, token=token, basic_auth=basic)
    app = create_app(client_or_url, read_only=read_only, token=token, basic_auth=basic,
                     refresh=refresh, **options)
    sock = bound_socket(host, port)
    try:
        shown = f"[{host.strip('[]')}]" if ":" in host.strip("[]") else host
        url = f"http://{shown}:{sock.getsockname()[1]}/"
        config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2,
                                lifespan="on")
        server = uvicorn.Server(config)
        if on_ready is not None:
            on_ready(url)
        server.run(sockets=[sock])
    finally:
        sock.close()
