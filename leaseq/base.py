"""What the sync and the asyncio queue share: settings, validation of them, the client."""

from __future__ import annotations

from typing import Any

from . import protocol as P
from .codec import DEFAULT_MAX_PAYLOAD, Codec, Serializer
from .errors import InvalidArgument
from .keys import QueueKeys
from .models import Backoff

CHUNK = 1000  # items per round trip in the *_many calls


class QueueBase:
    """Settings of a queue; subclasses add the I/O (sync or asyncio).

    Args:
        name: queue name (1-200 chars, no braces or control characters).
        client: a redis-py client (``Redis``/``RedisCluster``, sync or asyncio to match the
            queue class); default: ``url``, then ``$LEASEQ_URL``, then the embedded server.
        lease: default lease duration in seconds.
        max_attempts: leases an item may take before it is dead-lettered (0: unlimited).
        backoff: retry delay policy used by ``fail`` when no ``retry_in`` is given.
        dead_max, dead_ttl: dead letters kept at most (count; age in seconds; 0: no cap).
        result_ttl: default time a result given to ``complete`` stays readable.
        serializer: payload serializer (JSON by default; bytes are always stored raw).
        max_payload: largest encoded payload accepted, in bytes.
        unique_by_content: derive the id of an item added without one from its payload, so
            an equal payload already in the queue is not added twice.
        max_block: longest single server-side wait of a blocking lease (it loops until the
            caller's timeout).
        holder: a name this queue's leases carry (e.g. ``"host:pid"``), shown by ``peek``,
            ``state`` and the dashboard while the item is leased; stored in the item's record,
            so it costs no extra server call. The worker runtime names its host and process.
    """

    def __init__(
        self, name: str, client: Any = None, *, url: str | None = None, lease: float = 30.0,
        max_attempts: int = 5, backoff: Backoff | None = None, dead_max: int = 100_000,
        dead_ttl: float = 7 * 86400.0, result_ttl: float = 3600.0,
        serializer: Serializer | None = None, max_payload: int = DEFAULT_MAX_PAYLOAD,
        unique_by_content: bool = False, max_block: float = 2.0, holder: str = "",
    ) -> None:
        keys = QueueKeys.of(name)
        P.ms(lease, "lease")
        P.ms(dead_ttl, "dead_ttl", zero=True)
        P.ms(result_ttl, "result_ttl")
        for value, what in ((max_attempts, "max_attempts"), (dead_max, "dead_max")):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidArgument(f"{what} must be an int >= 0, not {value!r}")
        self.config = P.Config(
            keys, Codec(serializer, max_payload), lease, max_attempts, backoff or Backoff(),
            dead_max, dead_ttl, result_ttl, unique_by_content, holder,
        )
        self.client = self._connect(client, url)
        self._owned = self.client is not client
        self._max_block = P.ms(max_block, "max_block") / 1000.0

    def _connect(self, client: Any, url: str | None) -> Any:
        raise NotImplementedError

    @property
    def name(self) -> str:
        """The queue's name."""
        return self.config.keys.name
