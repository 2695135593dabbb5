"""``leaseq dashboard``: serve the web dashboard (needs the ``dashboard`` extra)."""

from __future__ import annotations

import click

from .common import Session, err_console, mask, url_option

INSTALL = "pip install 'leaseq[dashboard]'"


@click.command()
@url_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; anything but loopback needs --token or --basic-auth.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="Port to bind (0: a free one).")
@click.option("--read-only", is_flag=True, help="Hide and refuse every action.")
@click.option("--token", envvar="LEASEQ_DASHBOARD_TOKEN", metavar="TOKEN",
              help="Require this bearer token (default $LEASEQ_DASHBOARD_TOKEN); a browser "
                   "opens the page once with ?token=TOKEN.")
@click.option("--basic-auth", envvar="LEASEQ_DASHBOARD_BASIC_AUTH", metavar="USER:PASSWORD",
              help="Require HTTP basic auth (default $LEASEQ_DASHBOARD_BASIC_AUTH).")
@click.option("--refresh", type=click.FloatRange(0.2), default=2.0, show_default=True,
              help="Seconds between live updates of an open page.")
def dashboard(url: str | None, host: str, port: int, read_only: bool, token: str | None,
              basic_auth: str | None, refresh: float) -> None:
    """Serve a live web dashboard of every queue on the server (Ctrl-C stops it)."""
    try:
        from .. import dashboard as dash
    except ImportError as exc:
        missing = getattr(exc, "name", None) or str(exc)
        raise click.ClickException(
            f"the dashboard needs its extra ({missing} is missing): {INSTALL}") from None
    try:
        basic = dash.security.parse_basic(basic_auth)
        dash.check_bind(host, token=token, basic_auth=basic)
    except ValueError as exc:  # UnsafeBind is a ValueError
        raise click.ClickException(str(exc)) from None
    session = Session(url)
    session.ping()
    session.close()

    def ready(where: str) -> None:
        err_console.print(f"leaseq dashboard on {where} (server {mask(session.url)})"
                          f"{', read-only' if read_only else ''}; Ctrl-C stops it",
                          markup=False, highlight=False, soft_wrap=True)

    dash.serve(session.url, host=host, port=port, read_only=read_only, token=token,
               basic_auth=basic, refresh=refresh, on_ready=ready)
