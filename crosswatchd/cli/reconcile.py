"""``reconcile [--dry-run] [--json] [--profile NAME] [--since YYYY-MM-DD]``: one reconcile pass
by hand (:mod:`crosswatchd.reconcile`).

Output: a table per profile and target (or, with ``--json``, one object ``{"profiles": {NAME:
{PROVIDER: {"source_plays", "target_plays", "missing", "enqueued", "extra", "unresolved",
"api_calls", "duration_s", …}}}, "errors": [...], "unresolved": [...], "dry_run"}``). Exit
codes: 0 done, 1 a side (a source, a target) could not be read (one line each on stderr,
naming it) or another pass holds the lock, 2 a configuration error. A running daemon shares
the outbox safely, as with ``import``; the lock keeps its own passes and this one apart.
"""

from __future__ import annotations

import sys
from datetime import date
from typing import Any

import click
import orjson

from crosswatchd.app import make_data_dir, services
from crosswatchd.cli._base import main, pick_profile, profile_option, run, settings_of
from crosswatchd.config import Settings
from crosswatchd.errors import ConfigError
from crosswatchd.logs import configure_logging
from crosswatchd.profiles import Household
from crosswatchd.reconcile import PassReport, has_source, make_reconciler, pass_lock
from crosswatchd.storage import Storage

__all__ = ["reconcile"]

#: Unresolved items listed in the text output.
_SHOW_MAX = 25


async def _pass(
    settings: Settings, profile: str | None, since: date | None, dry_run: bool
) -> PassReport:
    async with Storage.opened(settings) as storage:
        if not storage.shared:
            make_data_dir(settings.data_dir)
        async with pass_lock(storage):
            household = await Household.load(settings, storage)
            outbox = await storage.outbox(household)
            try:
                async with services(storage, household=household) as svc:
                    state = await storage.reconcile_state()
                    try:
                        reconciler = make_reconciler(
                            settings, outbox, svc, state, household=household
                        )
                        return await reconciler.run(profile=profile, since=since, dry_run=dry_run)
                    finally:
                        await state.close()
            finally:
                await outbox.close()


def _ratings_line(provider: str, ratings: dict[str, Any]) -> str:
    if "error" in ratings and len(ratings) == 1:
        return f"    ratings: not compared ({ratings['error']})"
    return (
        f"    ratings: {ratings['source']} on plex, {ratings['target']} on {provider},"
        f" {ratings['missing']} missing, {ratings['different']} different,"
        f" {ratings['enqueued']} enqueued, {ratings['extra']} only on {provider}"
        + (f", {ratings['unresolved']} unresolved" if ratings.get("unresolved") else "")
    )


def render(report: PassReport) -> list[str]:
    """The text of a pass's report (the same figures as ``--json``)."""
    lines = [
        "reconcile" + (" (dry run: nothing enqueued, nothing recorded)" if report.dry_run else "")
    ]
    head = (
        f"  {'target':<8} {'source':>7} {'target':>7} {'missing':>8} {'enqueued':>9}"
        f" {'extra':>6} {'unresolved':>11} {'requests':>9} {'time':>7}"
    )
    for profile, targets in report.profiles.items():
        lines += ["", f"profile {profile}", head]
        for provider, r in targets.items():
            if r.error is not None:
                lines.append(f"  {provider:<8} could not be read ({r.api_calls} requests)")
                continue
            lines.append(
                f"  {provider:<8} {r.source_plays:>7} {r.target_plays:>7} {r.missing:>8}"
                f" {r.enqueued:>9} {r.extra:>6} {r.unresolved:>11} {r.api_calls:>9}"
                f" {r.duration_s:>6.1f}s"
            )
            if r.ratings is not None:
                lines.append(_ratings_line(provider, r.ratings))
    if report.unresolved:
        lines += ["", f"unresolved ({len(report.unresolved)} items; not compared, not enqueued):"]
        lines += [f"  {p}: {u.label}: {u.reason}" for p, u in report.unresolved[:_SHOW_MAX]]
        if len(report.unresolved) > _SHOW_MAX:
            lines.append(f"  … and {len(report.unresolved) - _SHOW_MAX} more")
    return lines


@main.command("reconcile")
@click.option("--dry-run", is_flag=True, help="Show what would be enqueued; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@profile_option("Only this household member.")
@click.option(
    "--since",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="Only source plays from this day (YYYY-MM-DD).",
)
@click.pass_context
def reconcile(
    ctx: click.Context, dry_run: bool, as_json: bool, profile: str | None, since: Any
) -> None:
    """Compare what the sources say was watched with each target, enqueue what is missing."""
    settings = settings_of(ctx)
    # stdout is the report; problems reach the user as one line each on stderr.
    configure_logging("error", json=False, stream=sys.stderr)
    if profile is not None:
        pick_profile(settings, profile)
    if not has_source(settings):
        raise ConfigError(
            "tautulli.url",
            "reconcile needs a source: set tautulli.url and tautulli.api_key,"
            " or plex.url and plex.token",
        )
    if not settings.providers():
        raise ConfigError("trakt.client_id", "no delivery target configured to reconcile")
    report = run(_pass(settings, profile, since.date() if since else None, dry_run))
    if as_json:
        click.echo(orjson.dumps(report.as_json(), option=orjson.OPT_INDENT_2).decode())
    else:
        click.echo("\n".join(render(report)))
    for line in report.errors:
        click.echo(f"crosswatchd: reconcile: {line}", err=True)
    if report.failed:
        sys.exit(1)
