"""Handlers that worker subprocesses (CLI, supervisor) import by name in the tests."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from leaseq import Lease


async def marked_sleep(lease: Lease) -> str:
    """Touch ``data["marker"]`` (its name gets the pid), then sleep ``data["sleep"]`` s."""
    data = lease.data
    Path(data["marker"]).parent.mkdir(parents=True, exist_ok=True)
    Path(f"{data['marker']}.{os.getpid()}").write_text(str(lease.attempt))
    await asyncio.sleep(data.get("sleep", 0))
    return f"done by {os.getpid()}"


async def echo(lease: Lease) -> object:
    return lease.data


def sync_echo(lease: Lease) -> object:
    return lease.data
