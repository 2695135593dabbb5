"""Fault injection for tests: a TCP proxy that loses a reply after the call has run."""

from __future__ import annotations

import contextlib
import socket
import threading


class CuttingProxy:
    """Forwards 127.0.0.1:port to the server; when armed with a marker, the next request that
    contains it is delivered, its reply is swallowed and both sides are closed."""

    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.target = (host, target_port)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.marker: bytes | None = None
        self.cuts = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self, marker: bytes = b"") -> None:
        """Lose the reply to the next request containing ``marker`` (any request: b"")."""
        with self._lock:
            self.marker = marker

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            state = {"cut_next_reply": False}
            threading.Thread(target=self._up, args=(client, server, state), daemon=True).start()
            threading.Thread(target=self._down, args=(server, client, state),
                             daemon=True).start()

    def _up(self, client: socket.socket, server: socket.socket, state: dict[str, bool]) -> None:
        try:
            while data := client.recv(65536):
                with self._lock:
                    if self.marker is not None and self.marker in data:
                        self.marker = None
                        state["cut_next_reply"] = True
                server.sendall(data)
        except OSError:
            pass

    def _down(self, server: socket.socket, client: socket.socket,
              state: dict[str, bool]) -> None:
        try:
            while data := server.recv(65536):
                if state["cut_next_reply"]:  # the call ran; its reply is lost
                    self.cuts += 1
                    break
                client.sendall(data)
        except OSError:
            pass
        for s in (client, server):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self.listener.close()
