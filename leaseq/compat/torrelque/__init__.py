"""Drop-in replacement for Torrelque 0.9 (asyncio work queues), on the leaseq engine.

Change ``import torrelque`` to ``from leaseq.compat import torrelque`` (or
``from torrelque import X`` to ``from leaseq.compat.torrelque import X``); nothing else changes.
Full notes: ``docs/compat/torrelque.md``.

Design
======
* **Storage.** Tasks live in an ordinary leaseq queue named like the Torrelque queue (keys
  ``leaseq:{<queue>}:*``, one hash tag, so Redis Cluster works). Torrelque's keys are not used:
  this is a migration of the code, not of tasks already queued by the original.
* **Per-task timeout.** A Torrelque task timeout is the leaseq lease duration of that task. The
  payload is stored in a small envelope (``trq1`` + JSON header + ``\\n`` + serialised data, see
  :mod:`._types`) whose header carries the timeout, the enqueue time and the requeue bookkeeping.
  ``dequeue`` leases its batch for the instance's ``task_timeout`` and, only for tasks whose own
  timeout differs, extends them to it right away (one ``extend_many`` per distinct timeout).
* **Fencing.** ``requeue`` and ``release`` take a task id; the instance keeps the leases it
  handed out (task id -> :class:`leaseq.Lease`) and makes fenced calls with them, so a consumer
  whose task timed out cannot requeue it away from the consumer that holds it now. ``release``
  of a task this instance did not dequeue completes it by id (the engine allows that);
  ``requeue`` of such a task raises :class:`TorrelqueLookupError` (the engine needs the token).
* **requeue** is one MULTI of two scripts: a guarded payload rewrite (new header: timeout,
  requeue count and times; applied only while the lease is current, the same test the engine's
  requeue makes) and the engine's ``requeue``. A delayed task becomes available at its due time
  by itself (each dequeue promotes due tasks): no sweep is needed for correctness.
* **release**: COMPLETED and REJECTED are both an engine ``complete``; with a result the final
  status, release time and counters are kept with it (same envelope) for ``result_ttl``, so
  ``get_task_state``/``watch`` tell them apart; without one nothing is kept and the task is
  unknown afterwards (:class:`TorrelqueLookupError`), as in Torrelque.
* **watch** polls ``get_task_state`` (``watch_interval`` 0.05 s, backing off 1.5x to
  ``watch_max_interval`` 1 s, back to the minimum after each change); it needs no keyspace
  notifications, and may miss states that last less than one poll.
* **pipeline=**: ``enqueue``/``requeue``/``release`` queue the same EVALSHA calls on the caller's
  ``redis.asyncio`` pipeline (scripts are loaded beforehand, and registered with the pipeline
  so it reloads them after a server restart); nothing is written before the caller executes it.
* **Clocks**: timeouts, delays and ``last_dequeue_time`` of a working task are server time;
  ``enqueue_time``, ``release_time`` and ``last_requeue_time`` are the client's ``time.time()``
  (informational only, never used for scheduling).
* **Approximations** in :class:`TorrelqueTaskState`: ``dequeue_count`` is exact;
  ``last_dequeue_time`` of a task that timed out (rather than being requeued) is that of its
  last requeue, or None; a task released by id through an instance that did not dequeue it
  keeps the counters read just before the release.
"""

from ._queue import Torrelque
from ._types import (
    TorrelqueError,
    TorrelqueLookupError,
    TorrelqueQueueStats,
    TorrelqueTaskSerialiser,
    TorrelqueTaskState,
    TorrelqueTaskStatus,
    TorrelqueTimeoutError,
)

__all__ = [
    "Torrelque",
    "TorrelqueError",
    "TorrelqueLookupError",
    "TorrelqueQueueStats",
    "TorrelqueTaskSerialiser",
    "TorrelqueTaskState",
    "TorrelqueTaskStatus",
    "TorrelqueTimeoutError",
]
