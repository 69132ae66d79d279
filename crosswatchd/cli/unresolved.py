"""``unresolved list|retry|dismiss``: plays parked because their ids could not be found (or
that a target refused), per profile."""

from __future__ import annotations

from typing import Any

import click
import orjson

from crosswatchd.cli._base import main, pick_profile, profile_option, run, settings_of
from crosswatchd.errors import CrosswatchError
from crosswatchd.outbox import ReasonKind
from crosswatchd.report import iso
from crosswatchd.storage import Storage

__all__ = ["unresolved"]

_PROFILE_HELP = "Only this household member's plays."


@main.group()
def unresolved() -> None:
    """Plays parked because their ids could not be found."""


@unresolved.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.option("--all-parked", is_flag=True, help="Also show not_found and refused plays.")
@profile_option(_PROFILE_HELP)
@click.pass_context
def unresolved_list(
    ctx: click.Context, as_json: bool, all_parked: bool, profile: str | None
) -> None:
    """List parked plays, ratings and watchlist changes with their reasons (times in UTC)."""
    settings = settings_of(ctx)
    only = pick_profile(settings, profile).name if profile else None

    async def go() -> list[Any]:
        async with Storage.opened(settings) as storage:
            outbox = await storage.outbox()
            try:
                kinds = None if all_parked else [ReasonKind.UNRESOLVED]
                return list(await outbox.parked(kinds=kinds, profile=only))
            finally:
                await outbox.close()

    rows = run(go())
    if as_json:
        payload = [
            {
                "id": r.id,
                "profile": r.profile,
                "provider": r.provider,
                "item": r.label,
                "kind": r.reason_kind,
                "change": r.change,
                "reason": r.reason,
                "watched_at": iso(r.watched_at),
            }
            for r in rows
        ]
        click.echo(orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode())
        return
    if not rows:
        click.echo("Nothing unresolved.")
        return
    for r in rows:
        moment = r.watched_at or r.occurred_at
        when = moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "?"
        what = "" if r.change == "play" else f"[{r.change}] "
        click.echo(f"#{r.id:<6} {r.profile}/{r.provider:<6} {when}  {what}{r.label}  - {r.reason}")


def _target(
    ctx: click.Context, delivery_id: int | None, every: bool, profile: str | None
) -> str | None:
    if (delivery_id is None) == (not every):
        raise click.UsageError("give a delivery ID or --all (not both)")
    return pick_profile(settings_of(ctx), profile).name if profile else None


@unresolved.command("retry")
@click.argument("delivery_id", required=False, type=int)
@click.option("--all", "retry_all", is_flag=True, help="Retry every unresolved play.")
@profile_option(_PROFILE_HELP)
@click.pass_context
def unresolved_retry(
    ctx: click.Context, delivery_id: int | None, retry_all: bool, profile: str | None
) -> None:
    """Queue parked plays again (after fixing a match in Plex, say)."""
    only = _target(ctx, delivery_id, retry_all, profile)
    settings = settings_of(ctx)

    async def go() -> int:
        async with Storage.opened(settings) as storage:
            # Cached "not found" answers would fail the retry again: forget them first (the
            # daemon drops its in-memory copies when it sees the retry).
            cache = await storage.cache()
            try:
                await cache.forget_negative()
            finally:
                await cache.close()
            outbox = await storage.outbox()
            try:
                return await outbox.retry_parked(
                    delivery_id, kinds=(ReasonKind.UNRESOLVED,), profile=only
                )
            finally:
                await outbox.close()

    n = run(go())
    if delivery_id is not None and n == 0:
        raise CrosswatchError(
            f"#{delivery_id} is not a parked or dead play"
            f"{f' of {only}' if only else ''} (see `crosswatchd unresolved list --all-parked`)"
        )
    click.echo(f"Re-queued {n} play(s); the daemon resolves them again on its next pass.")


@unresolved.command("dismiss")
@click.argument("delivery_id", required=False, type=int)
@click.option("--all", "dismiss_all", is_flag=True, help="Dismiss every unresolved play.")
@profile_option(_PROFILE_HELP)
@click.pass_context
def unresolved_dismiss(
    ctx: click.Context, delivery_id: int | None, dismiss_all: bool, profile: str | None
) -> None:
    """Give up on plays no source can identify (home videos, personal media): they are
    dropped, never sent and no longer listed."""
    only = _target(ctx, delivery_id, dismiss_all, profile)
    settings = settings_of(ctx)

    async def go() -> int:
        async with Storage.opened(settings) as storage:
            outbox = await storage.outbox()
            try:
                return await outbox.dismiss_parked(
                    delivery_id, kinds=(ReasonKind.UNRESOLVED,), profile=only
                )
            finally:
                await outbox.close()

    n = run(go())
    if delivery_id is not None and n == 0:
        raise CrosswatchError(
            f"#{delivery_id} is not a parked or dead play"
            f"{f' of {only}' if only else ''} (see `crosswatchd unresolved list --all-parked`)"
        )
    click.echo(f"Dismissed {n} play(s).")
