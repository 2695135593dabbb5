"""The leaseq error tree.

Every error leaseq raises on purpose is a :class:`LeaseqError`. Script failures travel from Lua as
``LEASEQ <code> <message>`` error replies and are mapped to classes in :data:`SCRIPT_ERRORS`, the
only place where codes are known.
"""

from __future__ import annotations

import re

# What servers append to an error raised inside a script: "script: <sha>, on @user_script:N."
_SCRIPT_SUFFIX = re.compile(
    r"\s*script: (?:[0-9a-f]{40}, |leaseq_\w+, )?on @user_(?:script|function):\d+\.?\s*$")


class LeaseqError(Exception):
    """Base class of every error leaseq raises."""


class InvalidQueueName(LeaseqError, ValueError):
    """The queue name is empty, too long, or holds braces or control characters."""


class InvalidId(LeaseqError, ValueError):
    """An item id is empty, too long, or holds control characters."""


class InvalidArgument(LeaseqError, ValueError):
    """A duration, count or option is out of range (non-positive lease, NaN, negative delay...)."""


class SerializationError(LeaseqError, ValueError):
    """The payload cannot be encoded (or a stored payload cannot be decoded)."""


class PayloadTooLarge(LeaseqError, ValueError):
    """The encoded payload is larger than the queue's ``max_payload``."""


class InvalidHeader(LeaseqError, ValueError):
    """An item header is not a str name (1-256 printable characters) with a str value, or
    there are too many or too large ones."""


class InvalidToken(LeaseqError, ValueError):
    """A lease token is malformed or belongs to another item."""


class LeaseqConnectionError(LeaseqError, ConnectionError):
    """The server could not be reached or the connection broke; the cause is chained."""


class PermissionDenied(LeaseqError, PermissionError):
    """The server's ACL refused the call (a key outside the user's patterns, or a command the
    user may not run, also inside a script). See docs/security.md for the ACL leaseq needs."""


class ScriptError(LeaseqError):
    """A server-side script failed in a way leaseq did not expect (corrupt keys, wrong type)."""


class IdExists(LeaseqError):
    """Raised by calls that require a new id when the id is already present."""


class NotFound(LeaseqError, LookupError):
    """The item (or queue) does not exist."""


SCRIPT_ERRORS: dict[str, type[LeaseqError]] = {
    "ARG": InvalidArgument,
    "TOKEN": InvalidToken,
    "EXISTS": IdExists,
    "NOTFOUND": NotFound,
}


def from_script_error(message: str) -> LeaseqError:
    """Turn a server error reply into the matching :class:`LeaseqError`.

    Replies raised by leaseq's scripts look like ``LEASEQ <code> <text>``; anything else (a
    WRONGTYPE on a corrupted key, an out-of-memory refusal...) becomes a :class:`ScriptError`
    whose message keeps the server's first line but none of the Lua traceback.
    """
    text = _SCRIPT_SUFFIX.sub("", message.strip().splitlines()[0] if message.strip() else "")
    marker = text.find("LEASEQ ")
    if marker >= 0:
        code, _, detail = text[marker + len("LEASEQ ") :].partition(" ")
        return SCRIPT_ERRORS.get(code, ScriptError)(detail.strip() or code)
    if "NOPERM" in text or "ACL failure" in text or "can't run this command" in text:
        return PermissionDenied(f"the server's ACL refused a leaseq script: {text}")
    return ScriptError(f"server refused a leaseq script: {text or 'script failed'}")
