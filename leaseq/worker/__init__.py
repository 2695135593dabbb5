"""Run handlers on a queue's items: :class:`Worker` (asyncio core, in-process),
:class:`Supervisor`/:func:`run_worker` (several supervised processes), and what handlers use:
:class:`Retry` and :func:`current`."""

from .handlers import Handler, JobContext, Retry, current
from .jobs import JobResult, Outcome
from .runtime import Worker
from .supervisor import Supervisor, WorkerSpec, run_worker

__all__ = [
    "Handler",
    "JobContext",
    "JobResult",
    "Outcome",
    "Retry",
    "Supervisor",
    "Worker",
    "WorkerSpec",
    "current",
    "run_worker",
]
