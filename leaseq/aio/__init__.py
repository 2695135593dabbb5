"""The asyncio face of leaseq: :class:`Queue` has the sync queue's methods, as coroutines."""

from .queue import Queue

__all__ = ["Queue"]
