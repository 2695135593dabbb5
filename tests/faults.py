"""Fault injection for tests: a TCP proxy that breaks one call at a chosen moment."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from typing import Literal

Moment = Literal["before", "after", "mid", "stall"]
MOMENTS: tuple[Moment, ...] = ("before", "after", "mid", "stall")


class CuttingProxy:
    """Forwards 127.0.0.1:port to the server. When armed with a marker, the next request that
    contains it is broken at ``moment``:

    * ``"before"``: it never reaches the server (the call never runs), then the connection is
      closed;
    * ``"after"``: it ran, its reply is swallowed, then the connection is closed;
    * ``"mid"``: it ran, half of its reply is delivered, then the connection is closed;
    * ``"stall"``: it ran, its reply is held back and the connection left open, so the client
      sees its socket timeout (the client closes the connection itself).

    ``during``, if given, runs once the server has replied and before the client hears
    anything (after / mid / stall): another party acting while the caller is in the dark. No
    request of any connection is forwarded until it has returned.
    """

    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.target = (host, target_port)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.marker: bytes | None = None
        self.moment: Moment = "after"
        self.during: Callable[[], object] | None = None
        self.cuts = 0
        self.errors: list[Exception] = []  # what ``during`` raised
        self._lock = threading.Lock()
        self._gate = threading.Event()  # cleared while ``during`` runs
        self._gate.set()
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self, marker: bytes = b"", moment: Moment = "after",
            during: Callable[[], object] | None = None) -> None:
        """Break the next request containing ``marker`` (any request: b"") at ``moment``."""
        with self._lock:
            self.marker, self.moment, self.during = marker, moment, during

    def disarm(self) -> None:
        """Forget an armed fault that did not fire."""
        with self._lock:
            self.marker, self.during = None, None

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
                        if self.moment == "before":
                            self.cuts += 1
                if state["cut"] == "before":  # the call never reaches the server
                    break
                self._gate.wait()
                server.sendall(data)
        except OSError:
            pass
        self._close(client, server)

    def _down(self, server: socket.socket, client: socket.socket,
              state: dict[str, Moment | None]) -> None:
        try:
            while data := server.recv(65536):
                cut = state["cut"]
                if cut in ("after", "mid", "stall") and state.get("held") is None:
                    state["held"] = cut
                    with self._lock:
                        self.cuts += 1
                        during, self.during = self.during, None
                    if during is not None:
                        self._gate.clear()
                        try:
                            during()
                        except Exception as exc:  # the test asserts errors is empty
                            self.errors.append(exc)
                        finally:
                            self._gate.set()
                if cut == "stall":  # hold every reply; the client times out and hangs up
                    continue
                if cut == "after":  # the call ran; its reply is lost
                    break
                if cut == "mid":  # half a reply, then nothing
                    client.sendall(data[: max(1, len(data) // 2)])
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
