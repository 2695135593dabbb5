"""The ``leaseq`` command line (click + rich). Every command takes ``--url`` (else
``$LEASEQ_URL``, else the embedded server); read commands take ``--json``. Failures print one
line on stderr and exit 1 (usage errors: 2)."""

from __future__ import annotations

import click

from .. import __version__
from .common import Group
from .dashboard_cmd import dashboard
from .demo import demo
from .queue_cmds import add, dead, peek, purge, state, sweep
from .run_cmds import server, worker
from .stats_cmd import stats


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="leaseq")
def cli() -> None:
    """leaseq: reliable work queues on Redis and Valkey.

    Start with `leaseq demo`."""


for command in (add, stats, peek, state, dead, purge, sweep, worker, server, demo, dashboard):
    cli.add_command(command)


def main() -> None:
    """Entry point of the ``leaseq`` script."""
    cli(prog_name="leaseq")


__all__ = ["cli", "main"]
