"""``export letterboxd``: the profile's film plays as a diary CSV that Letterboxd imports."""

from __future__ import annotations

import sys
from datetime import date, datetime
from pathlib import Path

import click

from crosswatchd.cli._base import main, pick_profile, profile_option, run, settings_of
from crosswatchd.outbox import HeldPlay, HeldRating
from crosswatchd.storage import Storage

__all__ = ["export_"]


@main.group("export")
def export_() -> None:
    """Write your history as files for other services."""


@export_.command("letterboxd")
@profile_option("Household member whose plays to export (needed with several profiles).")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write FILE (over 1 MB: FILE, then FILE-2, FILE-3 … before the suffix); "
    "default: standard output.",
)
@click.option(
    "--tz",
    "zone",
    metavar="ZONE",
    help="IANA time zone of the dates written, e.g. Europe/Paris (default: this system's).",
)
@click.option(
    "--since",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="Only plays on or after this local date (YYYY-MM-DD); rewatches still count "
    "every earlier play.",
)
@click.pass_context
def export_letterboxd(
    ctx: click.Context,
    profile: str | None,
    output: Path | None,
    zone: str | None,
    since: datetime | None,
) -> None:
    """Write every movie play crosswatchd holds for the profile (delivered or not) as the CSV
    letterboxd.com/import takes: both ids where known, the local date, rewatches, ratings."""
    from crosswatchd.exports.letterboxd import (
        MAX_FILE_BYTES,
        diary_rows,
        film_plays,
        leftover_parts,
        write_files,
        write_stream,
    )
    from crosswatchd.imports import parse_zone

    settings = settings_of(ctx)
    chosen = pick_profile(settings, profile)
    tz = parse_zone(zone, path=output)
    since_day: date | None = since.date() if since else None

    async def held() -> tuple[list[HeldPlay], list[HeldRating]]:
        async with Storage.opened(settings) as storage:
            outbox = await storage.outbox()
            try:
                plays = await outbox.movie_plays(chosen.name)
                return plays, await outbox.movie_ratings(chosen.name)
            finally:
                await outbox.close()

    plays, ratings = run(held())
    films, rated = film_plays(
        ((p.item, p.watched_at) for p in plays), ((r.item, r.rating) for r in ratings)
    )
    rows = diary_rows(films, rated, tz, since_day)
    what = f"{len(rows):,} play{'' if len(rows) == 1 else 's'} of {chosen.name}"
    if output is None:
        stdout = sys.stdout.buffer
        size = write_stream(rows, stdout)
        stdout.flush()
        if size > MAX_FILE_BYTES:
            click.echo(
                f"crosswatchd: note: the export is {size:,} bytes and Letterboxd takes files of"
                f" up to 1 MB; use --output FILE to have it split into files that fit",
                err=True,
            )
        return
    written = write_files(rows, output)
    click.echo(
        f"crosswatchd: wrote {what} to {', '.join(str(p) for p in written)}"
        + (" (upload each at letterboxd.com/import)" if len(written) > 1 else ""),
        err=True,
    )
    for stale in leftover_parts(output, len(written)):
        click.echo(
            f"crosswatchd: note: {stale} is left from an earlier, longer export; do not upload it",
            err=True,
        )
    sys.stderr.flush()
