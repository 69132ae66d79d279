"""``import tautulli``: backfill history into the outbox."""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import date
from typing import Any

import aiohttp
import click

from crosswatchd.app import anime_lists, tautulli_client
from crosswatchd.cli._base import (
    load_household,
    main,
    pick_profile,
    profile_option,
    run,
    settings_of,
)
from crosswatchd.config import Settings
from crosswatchd.errors import ConfigError
from crosswatchd.logs import configure_logging
from crosswatchd.storage import Storage

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
@profile_option(
    "Import into this household member's accounts: the plays of its tautulli_users, or of"
    " --user (any Tautulli user: how old plays move to a member)."
)
@click.pass_context
def import_tautulli(
    ctx: click.Context, since: Any, dry_run: bool, users: tuple[str, ...], profile: str | None
) -> None:
    """Backfill Tautulli's play history into the outbox (every target account of each
    user's profile, deduplicated)."""
    from crosswatchd.importer import format_summary, run_import

    settings = settings_of(ctx)
    chosen, profile_of = _tautulli_users(settings, list(users), profile)
    # stdout is the report; problems reach the user as the one-line error on stderr.
    configure_logging("error", json=False, stream=sys.stderr)
    if not settings.tautulli.url:
        raise ConfigError("tautulli.url", "set tautulli.url (e.g. http://127.0.0.1:8181)")
    if not settings.tautulli.api_key:
        raise ConfigError(
            "tautulli.api_key", "set tautulli.api_key (Tautulli: Settings, Web Interface, API)"
        )
    since_day: date | None = since.date() if since else None
    tty = sys.stderr.isatty()

    def progress(done: int, total: int) -> None:
        if tty:
            pct = f" {100 * done // total:3d}%" if total else ""
            click.echo(f"\r  read {done:,} / {total:,} history rows{pct}", nl=False, err=True)

    async def go() -> str:
        timeout = aiohttp.ClientTimeout(total=settings.delivery.timeout_s)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            Storage.opened(settings) as storage,
        ):
            client = tautulli_client(settings, session)
            # The stored Anime-Lists copy (fetched or re-validated if due, as the daemon
            # would) tells which AniDB plays the mapping cannot place.
            anime = anime_lists(settings, session)
            await anime.ensure()
            outbox = await storage.outbox()
            try:
                summary = await run_import(
                    client,
                    outbox,
                    users=chosen,
                    since=since_day,
                    dry_run=dry_run,
                    progress=progress,
                    profile_of=profile_of,
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


def _tautulli_users(
    settings: Settings, users: list[str], profile: str | None
) -> tuple[list[str], Callable[[str], str]]:
    """The Tautulli usernames to import and the profile each one's plays go to.

    With ``--profile``: that profile's ``tautulli_users`` (or ``--user``), every play to it.
    Without: ``--user`` or every user some profile lists, each routed to its profile; a
    ``--user`` in no profile of an explicit household is a ConfigError naming ``--profile``.
    """
    household = load_household(settings)
    if profile is not None:
        chosen = pick_profile(settings, profile)
        if chosen.stored:  # a roster profile: its users as stored (case-folded)
            names = users or sorted(chosen.tautulli_users)
            return names, lambda _user: chosen.name
        raw = next((p.tautulli_users for p in settings.profiles if p.name == chosen.name), [])
        names = users or (raw if settings.profiles else list(settings.tautulli.users))
        return names, lambda _user: chosen.name
    if not users:
        if settings.profiles:
            users = [u for p in settings.profiles for u in p.tautulli_users]
        else:
            users = list(settings.tautulli.users)
        users += [u for p in household.profiles if p.stored for u in sorted(p.tautulli_users)]
    if household.explicit:
        lost = [u for u in users if household.for_tautulli(u) is None]
        if lost:
            raise ConfigError(
                "--profile",
                f"tautulli user {lost[0]!r} is in no profile: name the profile its plays"
                f" belong to ({', '.join(household.names())})",
            )

    def profile_of(user: str) -> str:
        found = household.for_tautulli(user)
        return found.name if found is not None else household.profiles[0].name

    return users, profile_of
