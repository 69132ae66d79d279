"""``import tautulli|letterboxd|tvtime``: backfill history into the outbox."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Awaitable, Callable, Iterator
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp
import click

from crosswatchd.app import anime_lists, limiter_for, tautulli_client
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
from crosswatchd.http import USER_AGENT
from crosswatchd.logs import configure_logging
from crosswatchd.profiles import Profile
from crosswatchd.storage import Storage

if TYPE_CHECKING:
    from crosswatchd.outbox import Outbox
    from crosswatchd.resolve import Resolver

__all__ = ["import_"]

T = TypeVar("T")


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


# -- files: Letterboxd and TV Time ---------------------------------------------------------------


@contextlib.contextmanager
def _progress_bar(total: int, what: str) -> Iterator[Callable[[int], None] | None]:
    """A progress bar on stderr while it is a terminal (``None`` on a pipe or a file)."""
    if not sys.stderr.isatty():
        yield None
        return
    from tqdm import tqdm

    try:
        size = os.get_terminal_size(sys.stderr.fileno())
        known = size.columns > 0 and size.lines > 0
    except OSError:
        known = False
    with tqdm(
        total=total,
        desc=what,
        unit=" rows",
        file=sys.stderr,
        leave=False,
        # Follow the terminal's size; one that reports none (a bare pty: tqdm would then
        # draw nothing) gets 80 columns.
        dynamic_ncols=known,
        ncols=None if known else 80,
        nrows=None if known else 24,
    ) as bar:

        def update(done: int) -> None:
            bar.update(max(0, min(done, total) - bar.n))

        yield update


def _file_import_target(settings: Settings, name: str | None, dry_run: bool) -> Profile:
    """The profile a file is imported for; a real run needs a target account for it."""
    profile = pick_profile(settings, name)
    if not profile.targets and not dry_run:
        raise ConfigError(
            "trakt.client_id",
            f"profile {profile.name!r} has no delivery target to import into "
            "(configure Trakt or SIMKL for it)",
        )
    return profile


async def _with_outbox_and_resolver(
    settings: Settings, work: Callable[[Outbox, Resolver], Awaitable[T]]
) -> T:
    """Run *work* with the outbox and the daemon's resolver (its id cache, the targets'
    searches with their rate limits), the title step on: a file has titles, not ids."""
    from crosswatchd.resolve import build_resolver

    timeout = aiohttp.ClientTimeout(total=settings.delivery.timeout_s)
    async with (
        aiohttp.ClientSession(timeout=timeout, headers={"User-Agent": USER_AGENT}) as http,
        Storage.opened(settings) as storage,
    ):
        cache = await storage.cache()
        try:
            resolver = build_resolver(
                settings,
                session=http,
                cache=cache,
                trakt_limiter=limiter_for(settings, "trakt"),
                simkl_limiter=limiter_for(settings, "simkl"),
                tautulli=None,  # files carry no Plex ratingKeys
                title_fallback=True,
            )
            outbox = await storage.outbox()
            try:
                return await work(outbox, resolver)
            finally:
                await resolver.close()
                await outbox.close()
        finally:
            await cache.close()


_TZ_HELP = "IANA time zone of the diary's dates, e.g. Europe/Paris (default: this system's)."
_DRY_RUN_HELP = "Show what would be queued and what did not match; write nothing."


@import_.command("letterboxd")
@click.argument("file", type=click.Path(path_type=Path))
@profile_option("Household member whose diary it is (needed with several profiles).")
@click.option("--tz", "zone", metavar="ZONE", help=_TZ_HELP)
@click.option("--dry-run", is_flag=True, help=_DRY_RUN_HELP)
@click.pass_context
def import_letterboxd(
    ctx: click.Context, file: Path, profile: str | None, zone: str | None, dry_run: bool
) -> None:
    """Import a Letterboxd export (the ZIP, or its diary.csv): each diary entry a movie play
    at noon on its date, rewatches included, and the films' ratings."""
    from crosswatchd.imports import parse_zone
    from crosswatchd.imports.letterboxd import open_letterboxd
    from crosswatchd.imports.runner import format_file_summary, import_letterboxd

    settings = settings_of(ctx)
    configure_logging("error", json=False, stream=sys.stderr)
    chosen = _file_import_target(settings, profile, dry_run)
    tz = parse_zone(zone, path=file)
    with (
        open_letterboxd(file, tz=tz) as reader,
        _progress_bar(reader.rows_estimate, "diary.csv") as progress,
    ):

        async def work(outbox: Outbox, resolver: Resolver) -> str:
            summary = await import_letterboxd(
                reader, outbox, resolver, profile=chosen.name, dry_run=dry_run, progress=progress
            )
            return format_file_summary(summary)

        report = run(_with_outbox_and_resolver(settings, work))
    click.echo(report)


@import_.command("tvtime")
@click.argument("file", type=click.Path(path_type=Path))
@profile_option("Household member whose TV Time account it was (needed with several profiles).")
@click.option("--dry-run", is_flag=True, help=_DRY_RUN_HELP)
@click.pass_context
def import_tvtime(ctx: click.Context, file: Path, profile: str | None, dry_run: bool) -> None:
    """Import a TV Time GDPR export (the ZIP, or its tracking-prod-records-v2.csv): each seen
    episode a play at its recorded time (UTC), rewatches included, matched by TVDB ids; the
    ZIP's watched films too."""
    from crosswatchd.imports.runner import format_file_summary, import_tvtime
    from crosswatchd.imports.tvtime import open_tvtime

    settings = settings_of(ctx)
    configure_logging("error", json=False, stream=sys.stderr)
    chosen = _file_import_target(settings, profile, dry_run)
    with (
        open_tvtime(file) as reader,
        _progress_bar(reader.rows_estimate, "TV Time") as progress,
    ):

        async def work(outbox: Outbox, resolver: Resolver) -> str:
            summary = await import_tvtime(
                reader, outbox, resolver, profile=chosen.name, dry_run=dry_run, progress=progress
            )
            return format_file_summary(summary)

        report = run(_with_outbox_and_resolver(settings, work))
    click.echo(report)
