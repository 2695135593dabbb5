"""Finding the queues on a server: every queue ever used has a meta key, found by SCAN."""

from __future__ import annotations

from typing import Any

from .keys import META_SCAN_PATTERN, name_from_meta_key

SCAN_COUNT = 1000


def _name(key: bytes | str) -> str | None:
    text = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
    return name_from_meta_key(text)


def queue_names(client: Any) -> list[str]:
    """Every queue on the server of ``client`` (sync, plain or cluster), sorted."""
    names = {n for key in client.scan_iter(match=META_SCAN_PATTERN, count=SCAN_COUNT)
             if (n := _name(key)) is not None}
    return sorted(names)


async def aqueue_names(client: Any) -> list[str]:
    """Every queue on the server of the asyncio ``client`` (plain or cluster), sorted."""
    names = set()
    async for key in client.scan_iter(match=META_SCAN_PATTERN, count=SCAN_COUNT):
        n = _name(key)
        if n is not None:
            names.add(n)
    return sorted(names)
