"""``status [--json]``: the report of :mod:`crosswatchd.report`, as text or JSON."""

from __future__ import annotations

from typing import Any

import click
import orjson

from crosswatchd.app import open_outbox
from crosswatchd.cli._base import main, run, settings_of
from crosswatchd.config import Settings
from crosswatchd.models import DEFAULT_PROFILE
from crosswatchd.report import build_report

__all__ = ["status"]


async def _report(settings: Settings) -> dict[str, Any]:
    outbox = await open_outbox(settings)
    try:
        return await build_report(settings, outbox)
    finally:
        await outbox.close()


def _auth_hint(provider: str, profile: str) -> str:
    who = "" if profile == DEFAULT_PROFILE else f" --profile {profile}"
    return f"crosswatchd auth {provider}{who}"


def render(report: dict[str, Any]) -> list[str]:
    """The text of ``status``: the same facts as ``--json``, for a person."""
    lines = [
        f"config file: {report['config_file'] or '(none: defaults and environment)'}",
        f"data dir:    {report['data_dir']}",
    ]
    daemon = report["daemon"]
    lines.append(
        f"daemon:      running (pid {daemon['pid']})"
        if daemon["running"]
        else "daemon:      not running"
    )
    if not report["providers"]:
        lines.append("No delivery targets configured (set trakt.client_id and/or simkl.client_id).")
    if report["plays_without_target"]:
        lines.append(
            f"{report['plays_without_target']} play(s) stored with no target yet: they are"
            " delivered once a target is configured and the daemon restarted."
        )
    header = (
        f"  {'target':<8} {'auth':<5} {'pending':>8} {'delivered':>10} {'unresolved':>11}"
        f" {'parked':>7} {'dead':>6} {'live':>5}"
    )
    notes: list[str] = []
    for profile, accounts in report["profiles"].items():
        lines.append("")
        lines.append(f"profile {profile}")
        if not accounts:
            lines.append("  (no target accounts)")
            continue
        lines.append(header)
        for provider, a in accounts.items():
            lines.append(
                f"  {provider:<8} {'yes' if a['authorized'] else 'NO':<5} {a['pending']:>8}"
                f" {a['delivered']:>10} {a['unresolved']:>11} {a['parked']:>7} {a['dead']:>6}"
                f" {a['live_pending']:>5}"
            )
            changes = [
                f"{label} {a[f'{prefix}_pending']} pending, {a[f'{prefix}_delivered']} delivered,"
                f" {a[f'{prefix}_parked']} parked"
                for prefix, label in (("ratings", "ratings"), ("watchlist", "watchlist changes"))
                if a[f"{prefix}_pending"] or a[f"{prefix}_delivered"] or a[f"{prefix}_parked"]
            ]
            if changes:
                lines.append(f"  {'':<8} " + "; ".join(changes))
            if not a["authorized"]:
                hint = _auth_hint(provider, profile)
                notes.append(f"! {profile}/{provider} is not authorized: run `{hint}`")
            waiting = a.get("backlog")
            if waiting and waiting["last_error"]:
                when = (
                    f", next at {waiting['next_attempt_at']}" if waiting["next_attempt_at"] else ""
                )
                notes.append(
                    f"! {profile}/{provider}: {a['pending']} play(s) waiting since"
                    f" {waiting['oldest_watched_at']}, {waiting['attempts']} attempt(s){when};"
                    f" last error: {waiting['last_error']}"
                )
    lines.extend(_watchlist_lines(report["watchlist"]))
    if notes:
        lines.append("")
        lines.extend(notes)
    if report["problems"]:
        lines.append("")
        lines.append("Needs attention (newest first; `crosswatchd unresolved list` for all):")
        for row in report["problems"][:10]:
            lines.append(
                f"  #{row['id']} {row['profile']}/{row['provider']} {row['state']}/{row['kind']}:"
                f" {'' if row['change'] == 'play' else '[' + row['change'] + '] '}"
                f"{row['item']} - {row['reason']}"
            )
    anime = _anime_line(report.get("anime"))
    if anime:
        lines.append("")
        lines.append(anime)
    ignored = report["accounts_ignored"]
    if ignored["tautulli"]:
        reason = (
            "tautulli.users is empty"
            if not report["tautulli_users"]
            else "they are in no profile / not in tautulli.users"
        )
        lines.append("")
        lines.append(
            f"Tautulli reported plays of these users, ignored because {reason}:"
            f" {', '.join(ignored['tautulli'])}"
        )
    if ignored["plex"]:
        lines.append("Plex accounts ignored by the account filter: " + ", ".join(ignored["plex"]))
    lines += _reconcile(report.get("reconcile") or {})
    return lines


def _reconcile(passes: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """The last reconcile pass per profile and target: when, what it found, what it cost."""
    if not passes:
        return []
    lines = ["", "Last reconcile:"]
    for profile, targets in passes.items():
        for provider, last in targets.items():
            head = f"  {profile}/{provider} at {last.get('finished_at')}:"
            if last.get("error"):
                lines.append(f"{head} failed: {last['error']}")
                continue
            lines.append(
                f"{head} {last['source_plays']} source plays, {last['target_plays']} on"
                f" {provider}, {last['missing']} missing, {last['enqueued']} enqueued,"
                f" {last['extra']} only on {provider}, {last['unresolved']} unresolved;"
                f" {last['api_calls']} requests, {last['duration_s']:.1f} s"
            )
            ratings = last.get("ratings")
            if ratings and "error" in ratings:
                lines.append(f"    ratings not compared: {ratings['error']}")
            elif ratings:
                lines.append(
                    f"    ratings: {ratings['missing']} missing, {ratings['different']}"
                    f" different, {ratings['enqueued']} enqueued, {ratings['extra']} only on"
                    f" {provider}"
                )
    return lines


def _watchlist_lines(watchlist: dict[str, Any]) -> list[str]:
    """The watchlist part of ``status``: per profile its mode and last sync, and per side
    what waits, what the latest pass held back, and why."""
    lines: list[str] = []
    for profile, entry in watchlist.items():
        lines.append("")
        when = entry["last_sync"] or "never"
        lines.append(f"watchlist of {profile} (mode {entry['mode']}, last sync {when})")
        for side, counts in entry.items():
            if not isinstance(counts, dict):
                continue
            line = f"  {side:<8} {counts['pending']} pending, {counts['parked']} parked"
            if counts["reason"]:
                line += f" - {counts['reason']}"
            lines.append(line)
    return lines


def _anime_line(anime: dict[str, Any] | None) -> str:
    """One line on the Anime-Lists file (HAMA libraries): stored when, last refresh."""
    if not anime:
        return ""
    if not anime["enabled"]:
        return "anime list:  off (anime.mapping_url is empty; AniDB plays are parked)"
    last = anime["last_attempt"]
    if anime["stored"]:
        text = f"anime list:  stored {anime['fetched_at']}, checked {anime['checked_at']}"
    elif last is not None:
        text = "anime list:  not stored yet (AniDB plays wait for it)"
    else:
        return ""  # never needed yet: no AniDB play, or no daemon since it was configured
    if last is not None and last["result"] in ("failed", "rejected"):
        text += f"; last refresh {last['at']} {last['result']}: {last['error']}"
    return text


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Show, per profile and target, what is pending, delivered, parked and dead."""
    report = run(_report(settings_of(ctx)))
    if as_json:
        click.echo(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
        return
    click.echo("\n".join(render(report)))
