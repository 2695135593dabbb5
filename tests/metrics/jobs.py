"""Handlers the metrics tests' worker subprocesses import by name."""

from __future__ import annotations

from leaseq import Lease
from leaseq.worker import Retry


def flaky(lease: Lease) -> object:
    """Fails items whose data has ``"fail": true``; asks a retry for ``"retry": true``."""
    if lease.data.get("fail"):
        raise ValueError(f"item {lease.data.get('n')} fails")
    if lease.data.get("retry"):
        raise Retry(delay=0, reason="again")
    return lease.data.get("n")
