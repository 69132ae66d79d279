"""``watchlist sync [--dry-run] [--json] [--profile NAME]``: one watchlist pass now.

Exit codes: 0 when every pass planned (unidentified Plex items do not fail it); 1 when a side
of some profile could not be read completely (nothing was queued for that profile, its stored
lists are kept); 2 for a configuration problem (``watchlist.mode``, or no Plex token where one
is needed).

``--json`` prints ``{"profiles": {NAME: {"mode", "plex": {"items", "unidentified": [{"title",
"year", "guid"}], "added", "removed", "unresolved": [{"title", "year", "ids"}]}, PROVIDER:
{"items", "added", "removed", "extra"}}}}`` (:class:`~crosswatchd.watchlist.passes.PassResult`;
``error`` and ``skipped`` are added when they apply).
"""

from __future__ import annotations

import sys
from typing import Any

import click
import orjson

from crosswatchd.app import known_secrets, open_outbox, services
from crosswatchd.cli._base import main, pick_profile, profile_option, run, settings_of
from crosswatchd.config import Settings
from crosswatchd.errors import ConfigError
from crosswatchd.logs import configure_logging
from crosswatchd.profiles import Household, Profile
from crosswatchd.watchlist.passes import PassResult, WatchlistSync, plex_auth
from crosswatchd.watchlist.state import WatchlistState

__all__ = ["watchlist"]


@main.group()
def watchlist() -> None:
    """The Plex watchlist, Trakt's watchlist and SIMKL's Plan to Watch."""


def _token_key(settings: Settings, profile: Profile) -> str:
    """The config key of *profile*'s Plex token."""
    for index, configured in enumerate(settings.profiles):
        if configured.name == profile.name:
            return f"profiles[{index}].plex_token"
    return "plex.token"


def _chosen(settings: Settings, name: str | None) -> list[Profile]:
    """The profiles to pass: *name*'s (it needs a Plex token), or every one that has one."""
    if name is not None:
        profile = pick_profile(settings, name)
        auth = plex_auth(settings, profile)
        if not auth.is_authorized():
            raise ConfigError(_token_key(settings, profile), f"no Plex token; {auth.hint}")
        return [profile]
    household = Household.from_settings(settings)
    chosen = [p for p in household.profiles if plex_auth(settings, p).is_authorized()]
    if not chosen:
        first = household.profiles[0]
        raise ConfigError(
            _token_key(settings, first),
            f"no profile has a Plex token; {plex_auth(settings, first).hint}",
        )
    return chosen


async def _sync(settings: Settings, profiles: list[Profile], dry_run: bool) -> list[PassResult]:
    outbox = await open_outbox(settings)
    try:
        state = await WatchlistState.open(settings.data_dir)
        try:
            async with services(settings) as svc:
                sync = WatchlistSync(
                    settings=settings,
                    outbox=outbox,
                    state=state,
                    session=svc.session,
                    providers=svc.providers,
                )
                return [await sync.run(p, dry_run=dry_run) for p in profiles]
        finally:
            await state.close()
    finally:
        await outbox.close()


def _text(result: PassResult, dry_run: bool) -> list[str]:
    verb = "would queue" if dry_run else "queued"
    head = f"profile {result.profile} (mode {result.mode})"
    if result.skipped:
        return [f"{head}: skipped, {result.skipped}"]
    if result.error:
        return [f"{head}: could not read every list, nothing {verb}: {result.error}"]
    lines = [f"{head}:"]
    for side, counts in result.sides.items():
        if "skipped" in counts:
            lines.append(f"  {side:<6} skipped: {counts['skipped']}")
            continue
        line = (
            f"  {side:<6} {counts['items']} item(s); {verb} +{counts['added']} -{counts['removed']}"
        )
        if counts.get("extra"):
            line += f"; {counts['extra']} only here (left alone in mode plex)"
        lines.append(line)
        for label, rows in (
            ("unidentified on Plex (no imdb/tmdb/tvdb id; not sent)", counts.get("unidentified")),
            ("not found on Plex by id (not added there)", counts.get("unresolved")),
        ):
            if rows:
                lines.append(f"    {label}:")
                lines.extend(
                    f"      {r['title'] or '?'}" + (f" ({r['year']})" if r["year"] else "")
                    for r in rows
                )
    return lines


@watchlist.command("sync")
@click.option("--dry-run", is_flag=True, help="Plan and print; queue nothing, store nothing.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@profile_option("Only this household member (default: every one with a Plex token).")
@click.pass_context
def sync(ctx: click.Context, dry_run: bool, as_json: bool, profile: str | None) -> None:
    """One watchlist pass now: Plex's watchlist to Trakt and SIMKL (both ways in two-way mode)."""
    settings = settings_of(ctx)
    # stdout is the report; problems reach the user as the one-line summary on stderr.
    configure_logging("error", json=False, stream=sys.stderr, secrets=known_secrets(settings, ""))
    profiles = _chosen(settings, profile)
    results = run(_sync(settings, profiles, dry_run))
    if as_json:
        out: dict[str, Any] = {"profiles": {r.profile: r.as_json() for r in results}}
        click.echo(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())
    else:
        for result in results:
            click.echo("\n".join(_text(result, dry_run)))
    if not all(r.ok for r in results):
        sys.exit(1)
