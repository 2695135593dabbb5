"""``leaseq worker`` and ``leaseq server start|stop|status``."""

from __future__ import annotations

import sys

import click
from rich.table import Table

from ..models import Backoff
from ..server import embedded
from ..worker import run_worker
from ..worker.handlers import load
from .common import Session, console, json_option, mask, print_json, url_option


@click.command()
@click.argument("handler", metavar="MODULE:FUNC")
@click.option("--queue", "-q", required=True, help="Queue to work on.")
@click.option("--concurrency", "-c", type=click.IntRange(1, 10_000), default=10,
              show_default=True, help="Jobs running at once per process.")
@click.option("--processes", "-p", type=click.IntRange(1, 256),
              help="Run N supervised worker processes (restarted if they die).")
@click.option("--lease", type=click.FloatRange(0.01), default=30.0, show_default=True,
              help="Lease seconds (extended while the job runs).")
@click.option("--timeout", "job_timeout", type=click.FloatRange(0.001),
              help="Fail a job running longer than this many seconds.")
@click.option("--max-attempts", type=click.IntRange(0), default=5, show_default=True,
              help="Attempts before an item is dead-lettered (0: unlimited).")
@click.option("--backoff", type=click.FloatRange(0), default=1.0, show_default=True,
              help="First retry delay in seconds (doubles per attempt).")
@click.option("--grace", type=click.FloatRange(0), default=30.0, show_default=True,
              help="Seconds in-flight jobs get at shutdown before they are requeued.")
@click.option("--prefetch", type=click.IntRange(0, 10_000),
              help="Most items leased ahead of free slots (default: --concurrency; only "
                   "while jobs are short).")
@click.option("--idle-exit", type=click.FloatRange(0.01),
              help="Exit (status 0) after this many seconds with nothing to do.")
@click.option("--metrics-port", type=click.IntRange(0, 65535),
              help="Serve Prometheus /metrics on this port (needs leaseq[metrics]); with "
                   "--processes, process i uses port N+i.")
@click.option("--metrics-host", default="127.0.0.1", show_default=True,
              help="Address the metrics server binds.")
@click.option("--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]),
              default="INFO", show_default=True)
@url_option
def worker(handler: str, queue: str, concurrency: int, processes: int | None, lease: float,
           job_timeout: float | None, max_attempts: int, backoff: float, grace: float,
           prefetch: int | None, idle_exit: float | None, metrics_port: int | None,
           metrics_host: str, log_level: str, url: str | None) -> None:
    """Run MODULE:FUNC on the items of a queue until SIGTERM/^C (graceful: in-flight jobs
    get --grace seconds, the rest is given back; a second signal exits at once).

    FUNC takes a leaseq.Lease (.data, .id, .attempt); it may be async. Its return value is
    kept as the item's result; an exception fails the attempt (leaseq.worker.Retry(delay=)
    asks for a retry delay)."""
    load(handler)  # a bad MODULE:FUNC fails here, with one line
    if metrics_port is not None:
        try:
            import prometheus_client  # noqa: F401
        except ImportError:
            raise click.ClickException(
                "--metrics-port needs prometheus-client: pip install 'leaseq[metrics]'"
            ) from None
        if processes and metrics_port == 0:
            raise click.UsageError("--metrics-port 0 cannot be combined with --processes")
    session = Session(url)
    session.ping()
    code = run_worker(
        handler, queue, processes=processes, url=session.url, concurrency=concurrency,
        lease=lease, job_timeout=job_timeout, max_attempts=max_attempts,
        backoff=Backoff(base=backoff) if backoff > 0 else Backoff(base=0, jitter=0),
        grace=grace, prefetch=prefetch, idle_exit=idle_exit, log_level=log_level,
        metrics_port=metrics_port, metrics_host=metrics_host,
    )
    sys.exit(code)


@click.group()
def server() -> None:
    """The embedded Valkey server used when no URL is given."""


@server.command("start")
@json_option
def server_start(as_json: bool) -> None:
    """Start the embedded server (or reuse the running one)."""
    s = embedded.ensure_running()
    info = {"running": True, "pid": s.pid, "port": s.port, "url": mask(s.url),
            "state_dir": str(s.state_dir), "unix_socket": str(s.unix_socket or "") or None}
    if as_json:
        print_json(info)
    else:
        console.print(f"embedded server running: pid {s.pid}, {mask(s.url)}, "
                      f"data in {s.data_dir}", highlight=False)


@server.command("stop")
@json_option
def server_stop(as_json: bool) -> None:
    """Stop the embedded server (its data is kept on disk)."""
    stopped = embedded.stop()
    if as_json:
        print_json({"stopped": stopped})
    else:
        click.echo("embedded server stopped" if stopped else "embedded server was not running")


@server.command("status")
@json_option
def server_status(as_json: bool) -> None:
    """Whether the embedded server runs (exit 0), crashed (exit 1) or is stopped (exit 3)."""
    st = embedded.status()
    code = 0 if st.running else 1 if st.crashed else 3
    if as_json:
        print_json(st)
        sys.exit(code)
    t = Table(show_header=False, box=None)
    t.add_row("status", "running" if st.running else "CRASHED" if st.crashed else "stopped")
    if st.reason:
        t.add_row("reason", st.reason)
    for label, value in (("pid", st.pid), ("url", st.url), ("uptime", st.uptime)):
        if value is not None:
            t.add_row(label, f"{value:.0f} s" if label == "uptime" else str(value))
    t.add_row("state dir", str(st.state_dir))
    t.add_row("data (AOF)", f"{st.aof_size:,} bytes")
    t.add_row("log", str(st.log_file))
    console.print(t)
    sys.exit(code)
