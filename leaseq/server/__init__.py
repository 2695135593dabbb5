"""Local Redis/Valkey servers: throwaway test servers and clusters, and the embedded server.

``ServerProcess``/``LocalCluster`` start child servers on 127.0.0.1 for tests and tools;
``ensure_running``/``status``/``stop`` manage the persistent per-user embedded Valkey that
leaseq uses when no server URL is given.
"""

from .cluster import ClusterError, LocalCluster
from .embedded import (
    EmbeddedServer,
    EmbeddedServerError,
    EmbeddedStatus,
    default_url,
    ensure_running,
    state_dir_path,
    status,
    stop,
)
from .process import ServerKind, ServerProcess, ServerProcessError, find_binary, free_port

__all__ = [
    "ClusterError",
    "EmbeddedServer",
    "EmbeddedServerError",
    "EmbeddedStatus",
    "LocalCluster",
    "ServerKind",
    "ServerProcess",
    "ServerProcessError",
    "default_url",
    "ensure_running",
    "find_binary",
    "free_port",
    "state_dir_path",
    "status",
    "stop",
]
