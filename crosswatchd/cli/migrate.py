"""``migrate --to postgresql://… [--json]``: copy this config's SQLite data dir into a
PostgreSQL database (:mod:`crosswatchd.migrate`), idempotently: a second run copies nothing new.

Refused (one line, exit 2) while a daemon runs on the data dir (the copy must be consistent:
stop it first), for a bad URL, an unreachable server, or a database already holding other
outbox rows under the data dir's ids. The password of the URL is never printed.
"""

from __future__ import annotations

from typing import Any

import click
import orjson

from crosswatchd import postgres
from crosswatchd.app import data_lock
from crosswatchd.cli._base import main, run, settings_of
from crosswatchd.errors import ConfigError
from crosswatchd.migrate import Report, migrate_to
from crosswatchd.storage import OUTBOX_FILE

__all__ = ["migrate"]


def render(report: Report) -> list[str]:
    """The summary of a run, for a person: a line per store, ``  outbox: events 5 copied,
    0 skipped; deliveries …`` (skipped: the database had the row already)."""
    lines = [f"crosswatchd migrate: {report.source} -> {report.target}"]
    for store, counts in report.copied.items():
        kept = report.kept.get(store, {})
        parts = [
            f"{what} {counts[what]} copied, {kept.get(what, 0)} skipped"
            for what in counts
            if counts[what] or kept.get(what)
        ]
        if store == "outbox" and report.delivery_states:
            states = ", ".join(f"{n} {state}" for state, n in report.delivery_states.items())
            parts.append(f"copied deliveries: {states}")
        if parts:
            lines.append(f"  {store}: " + "; ".join(parts))
    if report.missing:
        lines.append(f"  not in the data dir: {', '.join(report.missing)}")
    lines.extend(f"  note: {note}" for note in report.notes)
    if report.total_copied:
        lines.append(f"Copied {report.total_copied} row(s).")
    else:
        lines.append("Nothing new to copy: the database already holds everything.")
    lines.append(
        f'Run the replicas with database_url = "{report.target}" (the real password in place'
        " of ***); the data dir is left as it was."
    )
    return lines


@main.command()
@click.option(
    "--to",
    "url",
    metavar="URL",
    default=None,
    help="postgresql://user:password@host/db (default: this config's database_url).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def migrate(ctx: click.Context, url: str | None, as_json: bool) -> None:
    """Copy the data dir (outbox, tokens, id cache, webhook secret, watchlist and reconcile
    state) into PostgreSQL; run it again to copy only what is new."""
    settings = settings_of(ctx)
    target = url or settings.database_url
    if not target:
        raise ConfigError("--to", "name the PostgreSQL database: --to postgresql://…")
    try:
        postgres.validate_url(target)
    except ConfigError as exc:
        raise ConfigError("--to", exc.message) from None
    if not (settings.data_dir / OUTBOX_FILE).exists():
        raise ConfigError("data_dir", f"{settings.data_dir} holds no outbox: nothing to migrate")
    with data_lock(settings):  # no daemon may write while the copy reads
        report = run(migrate_to(settings.data_dir, target))
    if as_json:
        out: dict[str, Any] = report.as_json()
        click.echo(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())
        return
    click.echo("\n".join(render(report)))
