"""Fault injection for tests: a TCP proxy that breaks one call at a chosen moment."""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Literal

Moment = Literal["before", "after", "mid"]


class CuttingProxy:
    """Forwards 127.0.0.1:port to the server. When armed with a marker, the next request that
    contains it is broken at ``moment``: ``"before"`` it reaches the server (the call never
    runs), ``"after"`` it ran (its reply is swallowed), or ``"mid"``-reply (half of the reply
    is delivered). Then both sides of that connection are closed."""

    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.target = (host, target_port)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.marker: bytes | None = None
        self.moment: Moment = "after"
        self.cuts = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self, marker: bytes = b"", moment: Moment = "after") -> None:
        """Break the next request containing ``marker`` (any request: b"") at ``moment``."""
        with self._lock:
            self.marker, self.moment = marker, moment

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            state: dict[str, Moment | None] = {"cut": None}
            threading.Thread(target=self._up, args=(client, server, state), daemon=True).start()
            threading.Thread(target=self._down, args=(server, client, state),
                             daemon=True).start()

    def _up(self, client: socket.socket, server: socket.socket,
            state: dict[str, Moment | None]) -> None:
        try:
            while data := client.recv(65536):
                with self._lock:
                    if self.marker is not None and self.marker in data:
                        self.marker = None
                        state["cut"] = self.moment
                if state["cut"] == "before":  # the call never reaches the server
                    self.cuts += 1
                    break
                server.sendall(data)
        except OSError:
            pass
        self._close(client, server)

    def _down(self, server: socket.socket, client: socket.socket,
              state: dict[str, Moment | None]) -> None:
        try:
            while data := server.recv(65536):
                if state["cut"] == "after":  # the call ran; its reply is lost
                    self.cuts += 1
                    break
                if state["cut"] == "mid":  # half a reply, then nothing
                    client.sendall(data[: max(1, len(data) // 2)])
                    self.cuts += 1
                    break
                client.sendall(data)
        except OSError:
            pass
        self._close(client, server)

    @staticmethod
    def _close(*socks: socket.socket) -> None:
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self.listener.close()
