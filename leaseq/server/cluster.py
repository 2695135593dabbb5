"""A local Redis/Valkey cluster of N masters, formed with plain CLUSTER commands (no CLI)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

import redis
import redis.asyncio.cluster
import redis.cluster

from .process import (
    AppendFsync,
    ServerKind,
    ServerProcess,
    ServerProcessError,
    admin_client,
    command,
)

SLOTS = 16384


class ClusterError(ServerProcessError):
    """The cluster could not be formed or did not become healthy in time."""


def slot_ranges(masters: int) -> list[tuple[int, int]]:
    """Split the 16384 slots into ``masters`` contiguous inclusive ranges of near-equal size."""
    return [(i * SLOTS // masters, (i + 1) * SLOTS // masters - 1) for i in range(masters)]


def _info(text: Any) -> dict[str, str]:
    if isinstance(text, dict):
        return {str(k): str(v) for k, v in text.items()}
    if isinstance(text, bytes):
        text = text.decode()
    out: dict[str, str] = {}
    for line in str(text).splitlines():
        key, sep, value = line.strip().partition(":")
        if sep:
            out[key] = value
    return out


class LocalCluster:
    """``masters`` cluster-enabled servers on 127.0.0.1, each owning an even share of slots.

    ``start()`` returns once every node reports ``cluster_state:ok``, knows every node and sees
    all 16384 slots assigned. No replicas: a killed node's slots are unavailable until
    ``restart_node()`` (same port and data dir, so it rejoins with its old id and slots).
    """

    def __init__(
        self,
        masters: int = 3,
        *,
        kind: ServerKind = "valkey",
        binary: str | Path | None = None,
        password: str | None = None,
        appendonly: bool = False,
        appendfsync: AppendFsync = "everysec",
        node_timeout_ms: int = 3000,
        extra_config: Iterable[str] = (),
    ) -> None:
        if masters < 1:
            raise ValueError("a cluster needs at least one master")
        self.masters = masters
        self.password = password
        extra = list(extra_config)
        self.nodes: list[ServerProcess] = [
            ServerProcess(
                binary,
                kind=kind,
                password=password,
                appendonly=appendonly,
                appendfsync=appendfsync,
                cluster=True,
                cluster_node_timeout_ms=node_timeout_ms,
                extra_config=extra,
            )
            for _ in range(masters)
        ]

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """(host, port) of every node, in node order."""
        return [(node.host, node.port) for node in self.nodes]

    @property
    def startup_nodes(self) -> list[redis.cluster.ClusterNode]:
        """redis-py ``ClusterNode`` objects for every node (for the sync ``RedisCluster``)."""
        return [
            redis.cluster.ClusterNode(host, port)  # type: ignore[no-untyped-call]
            for host, port in self.addresses
        ]

    @property
    def url(self) -> str:
        """URL of the first node; ``RedisCluster.from_url`` discovers the rest."""
        return self.nodes[0].url

    def start(self, timeout: float = 30.0) -> LocalCluster:
        """Start all nodes, assign slots, introduce the nodes, wait until the cluster is ok."""
        deadline = time.monotonic() + timeout
        try:
            for node in self.nodes:
                if not node.running:
                    node.start(timeout=max(1.0, deadline - time.monotonic()))
            self._form()
            self.wait_ready(max(1.0, deadline - time.monotonic()))
        except BaseException:
            self.stop()
            raise
        return self

    def _form(self) -> None:
        ranges = slot_ranges(self.masters)
        clients = [
            admin_client(node.host, node.port, self.password, timeout=5.0, decode_responses=True)
            for node in self.nodes
        ]
        try:
            fresh = [_info(command(c, "CLUSTER", "INFO")) for c in clients]
            if all(i.get("cluster_slots_assigned") == str(SLOTS) for i in fresh):
                return  # already formed (nodes.conf survived a full restart)
            for index, (client, (low, high)) in enumerate(zip(clients, ranges, strict=True)):
                with contextlib.suppress(redis.ResponseError):  # only valid on a fresh node
                    command(client, "CLUSTER", "SET-CONFIG-EPOCH", index + 1)
                try:
                    command(client, "CLUSTER", "ADDSLOTSRANGE", low, high)
                except redis.ResponseError as exc:
                    if "unknown subcommand" not in str(exc).lower():
                        raise
                    command(client, "CLUSTER", "ADDSLOTS", *range(low, high + 1))
            for node in self.nodes[1:]:
                command(clients[0], "CLUSTER", "MEET", node.host, node.port)
        finally:
            for client in clients:
                client.close()

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Block until every running node sees a healthy cluster of all nodes; ClusterError if
        that does not happen within ``timeout``."""
        deadline = time.monotonic() + timeout
        problem = "not checked"
        while True:
            problem = self._health_problem()
            if not problem:
                return
            if time.monotonic() >= deadline:
                raise ClusterError(f"cluster not ready after {timeout:.1f}s: {problem}")
            time.sleep(0.05)

    def _health_problem(self) -> str:
        for index, node in enumerate(self.nodes):
            if not node.running:
                return f"node {index} is not running"
            client = admin_client(node.host, node.port, self.password, decode_responses=True)
            try:
                info = _info(command(client, "CLUSTER", "INFO"))
            except redis.RedisError as exc:
                return f"node {index}: {exc}"
            finally:
                client.close()
            expected = {
                "cluster_state": "ok",
                "cluster_slots_assigned": str(SLOTS),
                "cluster_known_nodes": str(self.masters),
                "cluster_size": str(self.masters),
            }
            for key, want in expected.items():
                if info.get(key) != want:
                    return f"node {index} {key}={info.get(key)} (want {want})"
        return ""

    def stop(self) -> None:
        """Stop every node (data dirs are kept); idempotent."""
        for node in self.nodes:
            node.stop()

    def close(self) -> None:
        """Stop every node and delete their temp data dirs."""
        for node in self.nodes:
            node.close()

    def kill_node(self, index: int) -> None:
        """SIGKILL node ``index`` (crash simulation)."""
        self.nodes[index].kill()

    def restart_node(self, index: int, timeout: float = 30.0, wait: bool = True) -> None:
        """Start node ``index`` again on its old port; with ``wait`` block until the cluster is
        healthy again (may take ~2x node timeout if the node had been marked failed)."""
        node = self.nodes[index]
        if node.running:
            node.stop()
        node.start(timeout=timeout)
        if wait:
            self.wait_ready(timeout)

    def client(self, **kw: Any) -> redis.cluster.RedisCluster:
        """A new sync cluster client (caller closes it); ``kw`` overrides defaults."""
        params: dict[str, Any] = {"startup_nodes": self.startup_nodes, "password": self.password}
        params.update(kw)
        return redis.cluster.RedisCluster(**params)

    def async_client(self, **kw: Any) -> redis.asyncio.cluster.RedisCluster:
        """A new asyncio cluster client (caller must ``await aclose()`` it)."""
        nodes = [redis.asyncio.cluster.ClusterNode(host, port) for host, port in self.addresses]
        params: dict[str, Any] = {"startup_nodes": nodes, "password": self.password}
        params.update(kw)
        return redis.asyncio.cluster.RedisCluster(**params)

    def __enter__(self) -> LocalCluster:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        ports = [node._port for node in self.nodes]
        return f"<LocalCluster masters={self.masters} ports={ports}>"
