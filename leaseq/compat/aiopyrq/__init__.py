"""Drop-in replacement for ``aio-py-rq`` (``aiopyrq``): ``Queue``, ``UniqueQueue`` and ``Pool``.

Change ``from aiopyrq import Queue, UniqueQueue, Pool`` to
``from leaseq.compat.aiopyrq import Queue, UniqueQueue, Pool``. Every method is a coroutine (the
original README calls some without ``await``; they need it there too). See
``docs/compat/aio-py-rq.md`` for the mapping and what differs.

Each facade sits on one :class:`leaseq.aio.Queue` named like the original queue (keys
``leaseq:{<name>}:*``), with ``max_attempts=0`` (nothing is ever dead-lettered). Items are values:

* ``Queue``: every added value is an item with a generated id; ``get_items`` leases items "until
  acknowledged" (a lease of :data:`HOLD` seconds, i.e. ten years) and the instance remembers the
  :class:`~leaseq.Lease` of every value it handed out, so ``ack_item``/``reject_item`` name the
  exact lease. ``reject_item`` is ``fail(lease, retry_in=0)``: the item goes back to its own
  place in the queue (ahead of everything added after it), so it is the next one out.
* ``UniqueQueue``: the same with ``unique_by_content=True``: the id is derived from the encoded
  value, so a value already waiting *or held* is not added again.
* ``Pool``: ids derived from content; ``get_items`` leases for ``ack_ttl`` seconds and
  ``ack_item`` gives the lease back with ``requeue(lease, delay=ack_valid_for)``: the item is due
  again ``ack_valid_for`` seconds later. A lease is exclusive, so an item is never handed out
  twice at once.

One key of its own: ``leaseq:{<name>}:aiopyrq:rollbacks`` (HASH, rollback counters, fields
``<content id>:n`` and ``<content id>:t``), under the queue's hash tag.

With ``synced_slaves_enabled``, every write is followed by ``WAIT count timeout_ms`` **on the
connection that made the write** (the facade then uses one dedicated connection: a client made
with ``single_connection_client=True`` on the given pool), and
:class:`NotEnoughSyncedSlavesError` is raised when fewer replicas acknowledged.
"""

from ._base import HOLD, AioPyRqError, NotEnoughSyncedSlavesError
from ._pool import Pool
from ._queue import Queue, UniqueQueue

__all__ = [
    "HOLD",
    "AioPyRqError",
    "NotEnoughSyncedSlavesError",
    "Pool",
    "Queue",
    "UniqueQueue",
]
