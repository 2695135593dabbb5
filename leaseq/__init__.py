"""leaseq: reliable work queues on Redis and Valkey.

Producers add items; workers lease them for a while and complete them; an item whose lease runs
out comes back by itself. Every transition is one atomic script on the server.
"""

from .codec import JsonSerializer, Serializer
from .errors import (
    IdExists,
    InvalidArgument,
    InvalidHeader,
    InvalidId,
    InvalidQueueName,
    InvalidToken,
    LeaseqConnectionError,
    LeaseqError,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    ScriptError,
    SerializationError,
)
from .models import (
    AddResult,
    Backoff,
    FailOutcome,
    Item,
    ItemState,
    Lease,
    Peeked,
    State,
    Stats,
)
from .queue import Queue

__version__ = "0.1.0"

__all__ = [
    "AddResult",
    "Backoff",
    "FailOutcome",
    "IdExists",
    "InvalidArgument",
    "InvalidHeader",
    "InvalidId",
    "InvalidQueueName",
    "InvalidToken",
    "Item",
    "ItemState",
    "JsonSerializer",
    "Lease",
    "LeaseqConnectionError",
    "LeaseqError",
    "NotFound",
    "PayloadTooLarge",
    "Peeked",
    "PermissionDenied",
    "Queue",
    "ScriptError",
    "SerializationError",
    "Serializer",
    "State",
    "Stats",
    "__version__",
]
