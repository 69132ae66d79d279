"""One reconcile pass: read the sources once, then per profile and per target account read
the target, compare, and enqueue what is missing through the outbox.

For each profile (household member) the pass

1. resolves the ids of the items its source plays and ratings name (the drainer's resolver
   and cache, as background work: :func:`~crosswatchd.ratelimit.background`);
2. for each of its target accounts: reads what the account holds
   (:class:`~crosswatchd.reconcile.targets.TargetReader`), compares
   (:func:`~crosswatchd.reconcile.diff.diff_plays`, ``diff_ratings``), and enqueues each
   missing play as a ``reconcile`` event *for that account only* (``enqueue_many(targets=)``:
   the profile's other accounts hold it), missing and different ratings likewise. The outbox
   dedupes them against every play it holds for the account, pending or delivered, within the
   dedupe window: a play already on its way is never enqueued twice, and a pass repeated after
   a crash or an outage enqueues nothing it enqueued before. Reconcile plays wait behind
   webhook plays (backfill priority) and are not looked up in the target's history before
   their first send: the pass just read that history (or a copy it verified) and found them
   missing, with the dedupe window as tolerance, so a look-up would ask the same question
   again and spend the GETs the drainer's crash checks need;
3. records the figures (what ``status`` shows) and counts the metrics; the pass logs one line
   (``reconcile.done``: the same object as ``reconcile --json``). Targets are never changed in
   any other way: a play or rating only on a target is reported (*extra*), never removed.

A source that cannot be read fails the pass for every target (nothing enqueued); a target that
cannot be read fails that target only; ratings that cannot be read (the Plex library, a
target's ratings) are reported and the plays are reconciled anyway.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Final

import structlog

from crosswatchd.config import Settings
from crosswatchd.drain import ResolveFn
from crosswatchd.errors import CrosswatchError
from crosswatchd.metrics import Metrics
from crosswatchd.models import Action, Item, MediaKind, PlayEvent, Source, iso, item_keys
from crosswatchd.outbox import Outbox, scratch_copy
from crosswatchd.profiles import Household, Profile, TargetAccount
from crosswatchd.providers.base import Provider
from crosswatchd.ratelimit import background, tally
from crosswatchd.reconcile.diff import Rated, Watch, diff_plays, diff_ratings
from crosswatchd.reconcile.sources import (
    SourcePlay,
    SourceRating,
    SourceSnapshot,
    Unresolved,
    day_start,
    read_sources,
    resolve_items,
)
from crosswatchd.reconcile.state import ReconcileState
from crosswatchd.reconcile.targets import TargetReader, TargetSnapshot
from crosswatchd.sources.plex_library import PlexLibrary
from crosswatchd.sources.tautulli_api import TautulliClient

__all__ = ["PassReport", "Reconciler", "TargetResult"]

log = structlog.get_logger(__name__)

#: Events per ``enqueue_many`` statement.
_CHUNK: Final = 500
#: SIMKL rates movies and shows only (simkl_apiary "Add Ratings").
_SIMKL_RATED: Final = (MediaKind.MOVIE, MediaKind.SHOW)


def _iso(unix_s: float) -> str | None:
    return iso(datetime.fromtimestamp(unix_s, UTC))


@dataclass(slots=True)
class TargetResult:
    """One target account's figures for a pass (the ``--json`` keys, ``status``'s):
    ``source_plays`` (after merging repeats within the window), ``target_plays``, ``missing``
    (lacking on the target and not on their way), ``enqueued`` (of them, those the outbox did
    not already hold), ``extra`` (only on the target), ``unresolved`` (source plays whose item
    could not be identified), ``api_calls`` (requests to the target), ``duration_s``,
    ``waiting`` (missing but already on their way in the outbox), ``read`` (how the target was
    read: ``unchanged``, ``updated``, ``full``), ``error``, ``ratings``."""

    source_plays: int = 0
    target_plays: int = 0
    missing: int = 0
    enqueued: int = 0
    extra: int = 0
    unresolved: int = 0
    api_calls: int = 0
    duration_s: float = 0.0
    finished_at: str | None = None
    waiting: int = 0
    read: str | None = None
    error: str | None = None
    ratings: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "finished_at": self.finished_at,
            "source_plays": self.source_plays,
            "target_plays": self.target_plays,
            "missing": self.missing,
            "enqueued": self.enqueued,
            "extra": self.extra,
            "unresolved": self.unresolved,
            "api_calls": self.api_calls,
            "duration_s": round(self.duration_s, 3),
            "waiting": self.waiting,
        }
        if self.read is not None:
            out["read"] = self.read
        if self.error is not None:
            out["error"] = self.error
        if self.ratings is not None:
            out["ratings"] = self.ratings
        return out


@dataclass(slots=True)
class PassReport:
    """A whole pass: ``profiles`` → provider → :class:`TargetResult`; ``errors``, one line
    per side that could not be read; ``unresolved`` items per profile."""

    dry_run: bool = False
    sources: list[str] = field(default_factory=list)
    profiles: dict[str, dict[str, TargetResult]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    unresolved: list[tuple[str, Unresolved]] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """True when a side (a source, a target's plays) could not be read."""
        return bool(self.errors)

    def as_json(self) -> dict[str, Any]:
        """``{"profiles": {NAME: {PROVIDER: {...}}}, "errors": [...], "unresolved": [...],
        "dry_run": bool}``."""
        return {
            "profiles": {
                name: {provider: r.as_dict() for provider, r in targets.items()}
                for name, targets in self.profiles.items()
            },
            "errors": list(self.errors),
            "unresolved": [
                {"profile": profile, "item": u.label, "reason": u.reason}
                for profile, u in self.unresolved
            ],
            "dry_run": self.dry_run,
        }


@dataclass(slots=True)
class _Sources:
    """One profile's source side, resolved: plays and ratings with the keys of their items."""

    plays: list[tuple[SourcePlay, Item, Watch]]
    ratings: list[tuple[SourceRating, Item, Rated]] | None
    unresolved_plays: int = 0
    unresolved_ratings: int = 0
    unresolved: list[Unresolved] = field(default_factory=list)


class Reconciler:
    """Runs passes (see the module docstring) with the daemon's own parts: *outbox*,
    *providers* (one per target account, with their limiters: a mapping, or a function that
    gives an account's provider, made on first use, or None when it has none), *resolve* (the
    resolver), the sources (*tautulli*, *plex*), the *state* file, *metrics* (optional).
    *household* is whose plays are compared: the config file's profiles by default; the
    daemon and the command pass the roster's too (``crosswatchd profile add``)."""

    def __init__(
        self,
        settings: Settings,
        *,
        outbox: Outbox,
        providers: Mapping[TargetAccount, Provider] | Callable[[TargetAccount], Provider | None],
        resolve: ResolveFn,
        state: ReconcileState,
        tautulli: TautulliClient | None = None,
        plex: PlexLibrary | None = None,
        metrics: Metrics | None = None,
        unix_s: Callable[[], float] = time.time,
        household: Household | None = None,
    ) -> None:
        self._settings = settings
        self._outbox = outbox
        self._provider = providers.get if isinstance(providers, Mapping) else providers
        self._resolve = resolve
        self._state = state
        self._tautulli = tautulli
        self._plex = plex
        self._metrics = metrics
        self._unix_s = unix_s
        self._household = household or Household.from_settings(settings)

    async def run(
        self, *, profile: str | None = None, since: date | None = None, dry_run: bool = False
    ) -> PassReport:
        """One pass over *profile* (all when None); *since* keeps source plays on or after
        that day (and counts extras from then on); *dry_run* enqueues into a scratch copy of
        the outbox and writes no state. Raises ``KeyError`` for an unknown profile."""
        profiles = self._household.pick(profile)
        report = PassReport(dry_run=dry_run)
        started = self._unix_s()
        cfg = self._settings.reconcile
        try:
            sources = await read_sources(
                self._household,
                profiles,
                tautulli=self._tautulli,
                plex=self._plex,
                since=since,
                marked_watched=cfg.include_marked_watched,
                ratings=cfg.ratings,
                page_size=cfg.page_size,
                now=started,
            )
        except CrosswatchError as exc:
            line = f"sources could not be read: {exc}"
            report.errors.append(line)
            for p in profiles:
                for account in p.accounts():
                    result = TargetResult(finished_at=_iso(self._unix_s()), error=line)
                    await self._record(p.name, account.provider, result, report)
            self._done(report, started)
            return report
        report.sources = list(sources.read)
        floor = day_start(since)
        async with self._target_outbox(dry_run) as outbox:
            for p in profiles:
                await self._profile(p, sources, outbox, report, floor)
        self._done(report, started)
        return report

    def _done(self, report: PassReport, started: float) -> None:
        """The one log line of a pass: the same object ``reconcile --json`` prints."""
        summary = report.as_json()
        summary["unresolved"] = len(summary["unresolved"])
        log.log(
            30 if report.failed else 20,
            "reconcile.done",
            duration_s=round(self._unix_s() - started, 3),
            sources=report.sources,
            **summary,
        )

    @contextlib.asynccontextmanager
    async def _target_outbox(self, dry_run: bool) -> AsyncIterator[Outbox]:
        if not dry_run:
            yield self._outbox
            return
        async with scratch_copy(self._outbox) as scratch:
            yield scratch

    async def _resolved(self, profile: Profile, snapshot: SourceSnapshot) -> _Sources:
        plays = snapshot.plays.get(profile.name, [])
        rated = None if snapshot.ratings is None else snapshot.ratings.get(profile.name)
        items = [p.item for p in plays] + [r.item for r in rated or ()]
        with background():
            resolved = await resolve_items(items, self._resolve)
        out = _Sources([], None if rated is None else [])
        out.unresolved = [u for u in resolved.values() if isinstance(u, Unresolved)]
        keys = {
            item: tuple(item_keys(found))
            for item, found in resolved.items()
            if not isinstance(found, Unresolved)
        }
        for play in plays:
            found = resolved[play.item]
            if isinstance(found, Unresolved):
                out.unresolved_plays += 1
            else:
                out.plays.append((play, found, Watch(keys[play.item], play.at)))
        for rating in rated or ():
            found = resolved[rating.item]
            if isinstance(found, Unresolved):
                out.unresolved_ratings += 1
            else:
                assert out.ratings is not None
                out.ratings.append((rating, found, Rated(keys[rating.item], rating.rating)))
        return out

    async def _profile(
        self,
        profile: Profile,
        snapshot: SourceSnapshot,
        outbox: Outbox,
        report: PassReport,
        since: int | None,
    ) -> None:
        sources = await self._resolved(profile, snapshot)
        for unresolved in sources.unresolved:
            report.unresolved.append((profile.name, unresolved))
            log.info(
                "reconcile.unresolved",
                profile=profile.name,
                item=unresolved.label,
                reason=unresolved.reason,
            )
        for account in profile.accounts():
            provider = self._provider(account)
            if provider is not None:
                await self._target(profile.name, provider, sources, snapshot, outbox, report, since)

    async def _target(
        self,
        profile: str,
        provider: Provider,
        sources: _Sources,
        snapshot: SourceSnapshot,
        outbox: Outbox,
        report: PassReport,
        since: int | None,
    ) -> None:
        began = time.perf_counter()
        result = TargetResult(unresolved=sources.unresolved_plays)
        want_ratings = sources.ratings is not None
        with tally() as counted, background():
            reader = TargetReader(
                state=self._state,
                outbox=self._outbox,
                profile=profile,
                provider=provider,
                save=not report.dry_run,
                unix_s=self._unix_s,
            )
            try:
                target = await reader.read(ratings=want_ratings)
            except CrosswatchError as exc:
                target = None
                result.error = f"{profile}/{provider.name} could not be read: {exc}"
                report.errors.append(result.error)
        result.api_calls = counted.requests
        if target is not None:
            waiting = await outbox.waiting_plays(profile, provider.name)
            found = diff_plays(
                [w for _, _, w in sources.plays],
                target.plays,
                window_s=self._settings.match_window_s(),
                every_play=provider.keeps_every_play,
                since=since,
                waiting=[Watch(keys, at) for keys, at in waiting],
            )
            events = [
                PlayEvent(
                    Source.RECONCILE,
                    Action.WATCHED,
                    play.account,
                    item,
                    datetime.fromtimestamp(play.at, UTC),
                    profile=profile,
                )
                for play, item, _ in (sources.plays[i] for i in found.missing)
            ]
            result.enqueued = await _enqueue(outbox, events, provider.name)
            result.source_plays, result.target_plays = found.source_plays, found.target_plays
            result.missing, result.extra, result.read = len(events), found.extra, target.plays_read
            result.waiting = found.waiting
            result.ratings = await self._ratings(
                profile, provider, sources, snapshot, target, outbox
            )
        result.duration_s = time.perf_counter() - began
        result.finished_at = _iso(self._unix_s())
        await self._record(profile, provider.name, result, report)

    async def _ratings(
        self,
        profile: str,
        provider: Provider,
        sources: _Sources,
        snapshot: SourceSnapshot,
        target: TargetSnapshot,
        outbox: Outbox,
    ) -> dict[str, Any] | None:
        if sources.ratings is None:
            if snapshot.ratings_error is not None and self._settings.reconcile.ratings:
                return {"error": snapshot.ratings_error}
            return None
        if target.ratings is None:
            return {"error": target.ratings_error}
        mine = [
            entry
            for entry in sources.ratings
            if provider.name != "simkl" or entry[1].kind in _SIMKL_RATED
        ]
        found = diff_ratings([r for _, _, r in mine], target.ratings)
        events = [
            PlayEvent(
                Source.RECONCILE,
                Action.RATE,
                rating.account,
                item,
                datetime.fromtimestamp(rating.at, UTC),
                profile=profile,
                rating=rating.rating,
            )
            for rating, item, _ in (mine[i] for i in found.send)
        ]
        return {
            "source": len(mine),
            "target": len(target.ratings),
            "missing": found.missing,
            "different": found.different,
            "enqueued": await _enqueue(outbox, events, provider.name),
            "extra": found.extra,
            "unresolved": sources.unresolved_ratings,
            "read": target.ratings_read,
        }

    async def _record(
        self, profile: str, provider: str, result: TargetResult, report: PassReport
    ) -> None:
        report.profiles.setdefault(profile, {})[provider] = result
        log.log(  # the pass's own line (reconcile.done) has it too
            30 if result.error else 10,
            "reconcile.target",
            profile=profile,
            provider=provider,
            dry_run=report.dry_run,
            **result.as_dict(),
        )
        if report.dry_run:
            return
        await self._state.save_pass(profile, provider, result.as_dict())
        if self._metrics is not None:
            self._metrics.reconcile_pass(
                profile,
                provider,
                duration_s=result.duration_s,
                api_calls=result.api_calls,
                failed=result.error is not None,
                missing=result.missing,
                extra=result.extra,
                enqueued=result.enqueued,
                ratings_enqueued=int((result.ratings or {}).get("enqueued") or 0),
            )


async def _enqueue(outbox: Outbox, events: Sequence[PlayEvent], provider: str) -> int:
    """Enqueue *events* for *provider* alone, in chunks; how many got a delivery (the others
    repeat one the outbox holds)."""
    created = 0
    for start in range(0, len(events), _CHUNK):
        results = await outbox.enqueue_many(
            events[start : start + _CHUNK], keep_duplicates=False, targets=[provider]
        )
        created += sum(1 for r in results if r.new_deliveries > 0)
    return created
