"""What the daemon holds, in one plain dict: ``crosswatchd status`` (text and ``--json``), the
status page and the metrics all read the same report, so they agree at the same moment.

Shape (``status --json``)::

    {"version", "config_file", "data_dir",
     "daemon": {"running": bool, "pid": int | None},
     "providers": {PROVIDER: {"authorized", COUNTS...}},       # totals over profiles
     "profiles": {NAME: {PROVIDER: {"authorized", COUNTS...,
                                    "backlog": {...} | absent}}},
     "problems": [{"id", "profile", "provider", "state", "kind", "change", "item",
                   "reason", "watched_at"}],                       # newest 50
     "recent": [{"id", "profile", "provider", "kind", "state", "item", "reason",
                 "watched_at", "settled_at"}],                   # newest 20 settled
     "plays_without_target": int,
     "accounts_ignored": {"plex": [...], "tautulli": [...]},       # still ignored today
     "tautulli_users": [...],
     "watchlist": {PROFILE: {"mode", "last_sync",
                             SIDE: {"pending", "parked", "reason"}}},  # plex and each target
     "anime": {"enabled", "url", "stored", "fetched_at", "checked_at", "size",
               "last_attempt": {"at", "result", "error"} | None},   # the Anime-Lists file
     "reconcile": {NAME: {PROVIDER: {"finished_at", "source_plays", "target_plays",
                                     "missing", "enqueued", "extra", "unresolved",
                                     "api_calls", "duration_s", "waiting", "read"?,
                                     "error"?, "ratings"?}}}}      # the last pass

COUNTS are plays (``pending``, ``delivered``, ``dead``, ``unresolved``, ``parked``), live state
(``live_pending``) and changes (``ratings_pending``, ``ratings_delivered``, ``ratings_parked``,
``watchlist_pending``, ``watchlist_delivered``, ``watchlist_parked``). A problem's ``kind`` is
its reason kind and ``change`` what it carries (``play``, ``rating 8``, ``watchlist add``…).
``backlog`` (a target account with plays waiting) is ``{"oldest_watched_at", "attempts",
"last_error", "next_attempt_at"}``; ``next_attempt_at`` is only given while a daemon runs
(without one nothing is scheduled). Times are ISO-8601 UTC with ``Z``.

``watchlist`` (issue 17): per profile the mode, the end of its last pass that planned
(``last_sync``, None before the first), and per side (``plex`` and each target) the watchlist
changes waiting (``pending``) and held back (``parked``: parked or dead, e.g. additions a full
Trakt watchlist refused at the latest pass) with a ``reason``: the newest held-back change's,
else why the last pass could not read that side, else why the side sits passes out (no Plex
token, not authorized), else None.
"""

from __future__ import annotations

import contextlib
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from crosswatchd import __version__
from crosswatchd.animelists_store import list_state
from crosswatchd.config import Settings
from crosswatchd.models import iso
from crosswatchd.outbox import DeliveryState, Outbox, ProviderCounts
from crosswatchd.profiles import Household
from crosswatchd.reconcile.state import last_passes
from crosswatchd.tokens import TokenStore
from crosswatchd.watchlist.passes import plex_auth
from crosswatchd.watchlist.planner import PLEX
from crosswatchd.watchlist.state import STATE_FILE, PassRecord, WatchlistState

__all__ = ["LOCK_FILE", "build_report", "daemon_pid", "iso"]

#: The daemon's lock file in the data dir (it holds the daemon's PID).
LOCK_FILE = "crosswatchd.lock"
#: Problems listed in the report.
_PROBLEMS = 50
#: Recent deliveries listed in the report.
_RECENT = 20


def daemon_pid(data_dir: Path) -> int | None:
    """The PID of the daemon running on *data_dir*, or None.

    Read from the lock file the daemon writes its PID into; the process must still exist and
    be a crosswatchd (a PID left by a killed daemon may have been reused). Nothing is locked,
    so asking never disturbs a daemon that is starting.
    """
    try:
        text = (data_dir / LOCK_FILE).read_text("utf-8").strip()
    except (FileNotFoundError, PermissionError, UnicodeDecodeError):
        return None
    if not text.isdigit():
        return None
    pid = int(text)
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, PermissionError):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, 0)
            return pid  # no /proc here: alive is the best we can tell
        return None
    return pid if b"crosswatchd" in cmdline else None


def _counts(counts: ProviderCounts) -> dict[str, int]:
    return {
        "pending": counts.pending,
        "delivered": counts.delivered,
        "dead": counts.dead,
        "unresolved": counts.unresolved,
        "parked": counts.parked,
        "live_pending": counts.live_pending,
        "ratings_pending": counts.ratings_pending,
        "ratings_delivered": counts.ratings_delivered,
        "ratings_parked": counts.ratings_parked,
        "watchlist_pending": counts.watchlist_pending,
        "watchlist_delivered": counts.watchlist_delivered,
        "watchlist_parked": counts.watchlist_parked,
    }


def _backlog(waits: list[dict[str, Any]], *, running: bool) -> dict[str, Any]:
    """The backlog of one or several target accounts (the oldest play, the most attempts,
    an error, the next try: only while a daemon runs to make it)."""
    errors = [w["last_error"] for w in waits if w["last_error"]]
    nexts = [w["next_attempt_at"] for w in waits if w["next_attempt_at"] is not None]
    oldest = [w["oldest_watched_at"] for w in waits if w["oldest_watched_at"] is not None]
    return {
        "oldest_watched_at": iso(min(oldest)) if oldest else None,
        "attempts": max(int(w["max_attempts"]) for w in waits),
        "last_error": errors[0] if errors else None,
        "next_attempt_at": iso(min(nexts)) if nexts and running else None,
    }


async def _passes(settings: Settings) -> dict[str, PassRecord]:
    """The last watchlist pass of each profile (none when no pass ever ran)."""
    if not (settings.data_dir / STATE_FILE).exists():
        return {}
    state = await WatchlistState.open(settings.data_dir)
    try:
        return await state.passes()
    finally:
        await state.close()


async def _watchlist(
    settings: Settings,
    outbox: Outbox,
    household: Household,
    authorized: dict[tuple[str, str], bool],
) -> dict[str, Any]:
    """The ``watchlist`` part of the report (see the module docstring)."""
    passes = await _passes(settings)
    counts = await outbox.watchlist_counts()
    out: dict[str, Any] = {}
    for profile in household.profiles:
        record = passes.get(profile.name)
        entry: dict[str, Any] = {
            "mode": settings.watchlist.mode,
            "last_sync": None if record is None else iso(_utc(record.finished_at)),
        }
        for side in (PLEX, *profile.targets):
            waiting = counts.get((profile.name, side))
            reason = waiting.reason if waiting is not None and waiting.parked else None
            if reason is None and record is not None:
                reason = record.errors.get(side)
            if reason is None and side == PLEX:
                auth = plex_auth(settings, profile)
                if not auth.is_authorized():
                    reason = f"no Plex token: no watchlist sync; {auth.hint}"
            if reason is None and side != PLEX and not authorized.get((profile.name, side)):
                reason = "not authorized"
            entry[side] = {
                "pending": 0 if waiting is None else waiting.pending,
                "parked": 0 if waiting is None else waiting.parked,
                "reason": reason,
            }
        out[profile.name] = entry
    return out


def _utc(unix_s: float | None) -> datetime | None:
    return None if unix_s is None else datetime.fromtimestamp(unix_s, UTC)


async def build_report(settings: Settings, outbox: Outbox) -> dict[str, Any]:
    """The report of *settings*' data dir, read from *outbox* (see the module docstring)."""
    household = Household.from_settings(settings)
    pid = daemon_pid(settings.data_dir)
    totals = await outbox.counts()
    per_account = await outbox.account_counts()
    backlog = await outbox.backlog()
    parked = await outbox.parked(states=(DeliveryState.PARKED, DeliveryState.DEAD))
    authorized = {
        (account.profile, account.provider): TokenStore(
            settings.data_dir, account.provider, account.profile
        ).load()
        is not None
        for account in household.accounts()
    }
    providers: dict[str, Any] = {}
    for name, counts in totals.items():
        if name == PLEX:
            continue
        accounts = [a for a in authorized if a[1] == name]
        providers[name] = {
            "authorized": bool(accounts) and all(authorized[a] for a in accounts),
            **_counts(counts),
        }
        waits = [w for (_, provider), w in backlog.items() if provider == name]
        if waits:
            providers[name]["backlog"] = _backlog(waits, running=pid is not None)
    profiles: dict[str, dict[str, Any]] = {p.name: {} for p in household.profiles}
    for (profile, provider), counts in sorted(per_account.items()):
        if provider == PLEX:  # the Plex watchlist: in "watchlist", not a play target
            continue
        entry: dict[str, Any] = {
            "authorized": authorized.get((profile, provider), False),
            **_counts(counts),
        }
        waiting = backlog.get((profile, provider))
        if waiting is not None:
            entry["backlog"] = _backlog([waiting], running=pid is not None)
        profiles.setdefault(profile, {})[provider] = entry
    ignored = {
        "plex": [
            account
            for account in await outbox.seen_accounts("plex")
            if household.for_plex(account, None, user=False) is None
        ],
        "tautulli": [
            account
            for account in await outbox.seen_accounts("tautulli")
            if household.for_tautulli(account) is None
        ],
    }
    return {
        "version": __version__,
        "config_file": str(settings.config_file) if settings.config_file else None,
        "data_dir": str(settings.data_dir),
        "daemon": {"running": pid is not None, "pid": pid},
        "providers": providers,
        "profiles": profiles,
        "problems": [
            {
                "id": row.id,
                "profile": row.profile,
                "provider": row.provider,
                "state": str(row.state),
                "kind": None if row.reason_kind is None else str(row.reason_kind),
                "change": row.change,
                "item": row.label,
                "reason": row.reason,
                "watched_at": iso(row.watched_at),
            }
            for row in parked[:_PROBLEMS]
        ],
        "recent": [
            {
                "id": r["id"],
                "profile": r["profile"],
                "provider": r["provider"],
                "kind": r["kind"],
                "state": r["state"],
                "item": r["label"],
                "reason": r["reason"],
                "watched_at": iso(r["watched_at"]),
                "settled_at": iso(r["settled_at"]),
            }
            for r in await outbox.recent(_RECENT)
        ],
        "plays_without_target": await outbox.untargeted_plays(),
        "accounts_ignored": ignored,
        "tautulli_users": household.tautulli_users(),
        "watchlist": await _watchlist(settings, outbox, household, authorized),
        "anime": _anime(settings),
        "reconcile": await last_passes(settings.data_dir),
    }


def _anime(settings: Settings) -> dict[str, Any]:
    """The Anime-Lists file as stored in the data dir (times ISO-8601 UTC)."""
    state = list_state(settings.data_dir, settings.anime.mapping_url)
    for key in ("fetched_at", "checked_at"):
        state[key] = _iso_unix(state[key])
    if state["last_attempt"] is not None:
        state["last_attempt"]["at"] = _iso_unix(state["last_attempt"]["at"])
    return state


def _iso_unix(value: float | None) -> str | None:
    return None if value is None else iso(datetime.fromtimestamp(value, UTC))
