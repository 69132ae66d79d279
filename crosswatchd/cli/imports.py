"""``import tautulli``: backfill history into the outbox."""

from __future__ import annotations

import sys
from datetime import date
from typing import Any

import aiohttp
import click

from crosswatchd.app import anime_lists, open_outbox, tautulli_client
from crosswatchd.cli._base import main, run, settings_of
from crosswatchd.errors import ConfigError
from crosswatchd.logs import configure_logging

__all__ = ["import_"]


@main.group("import")
def import_() -> None:
    """Import old plays."""


@import_.command("tautulli")
@click.option(
    "--since", type=click.DateTime(formats=["%Y-%m-%d"]), help="Only plays from this day."
)
@click.option("--dry-run", is_flag=True, help="Show what would be sent; write nothing.")
@click.option("--user", "users", multiple=True, help="Tautulli username (repeatable).")
@click.pass_context
def import_tautulli(ctx: click.Context, since: Any, dry_run: bool, users: tuple[str, ...]) -> None:
    """Backfill Tautulli's play history into the outbox (every target, deduplicated)."""
    from crosswatchd.importer import format_summary, run_import

    settings = settings_of(ctx)
    # stdout is the report; problems reach the user as the one-line error on stderr.
    configure_logging("error", json=False, stream=sys.stderr)
    if not settings.tautulli.url:
        raise ConfigError("tautulli.url", "set tautulli.url (e.g. http://127.0.0.1:8181)")
    if not settings.tautulli.api_key:
        raise ConfigError(
            "tautulli.api_key", "set tautulli.api_key (Tautulli: Settings, Web Interface, API)"
        )
    chosen = list(users) or list(settings.tautulli.users)
    since_day: date | None = since.date() if since else None
    tty = sys.stderr.isatty()

    def progress(done: int, total: int) -> None:
        if tty:
            pct = f" {100 * done // total:3d}%" if total else ""
            click.echo(f"\r  read {done:,} / {total:,} history rows{pct}", nl=False, err=True)

    async def go() -> str:
        timeout = aiohttp.ClientTimeout(total=settings.delivery.timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            client = tautulli_client(settings, session)
            # The stored Anime-Lists copy (fetched or re-validated if due, as the daemon
            # would) tells which AniDB plays the mapping cannot place.
            anime = anime_lists(settings, session)
            await anime.ensure()
            outbox = await open_outbox(settings)
            try:
                summary = await run_import(
                    client,
                    outbox,
                    users=chosen,
                    since=since_day,
                    dry_run=dry_run,
                    progress=progress,
                    anime=anime,
                )
            finally:
                await outbox.close()
        if tty:
            click.echo("", err=True)
        return format_summary(summary, dry_run)

    if not settings.providers() and not dry_run:
        raise ConfigError("trakt.client_id", "no delivery target configured to import into")
    # A running daemon shares the outbox safely (WAL, short transactions, busy timeout).
    click.echo(run(go()))
