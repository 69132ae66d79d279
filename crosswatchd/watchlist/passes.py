"""One watchlist pass for one profile: read every side, plan, queue the changes in the outbox,
remember what was read.

Order (a pass is safe to repeat, and safe to interrupt anywhere):

1. the profile's Plex token (none: no watchlist sync for the profile, and ``status`` says so);
   its authorized targets (a target without a token sits the pass out);
2. from the outbox, the latest watchlist change of each item per side that has not landed,
   was kept unapplied, or landed since that side's last read;
3. read Plex and every target at once (:mod:`.reading`); if any side cannot be read
   completely, stop: nothing is queued, the stored lists stay as they were (exit 1);
4. for a target that lost items since its last read, the plays delivered to it since: a
   watched item it dropped by itself is not a removal to copy (:mod:`.planner`);
5. plan (:func:`~.planner.plan`); for an addition to Plex, the Discover item by its ids
   (``matches``, cached; none found: *unresolved*, reported, not queued);
6. queue the changes, one statement per side (``Source.WATCHLIST``, the pass's time as
   ``occurred_at``, so the latest change of an item wins in the outbox); then store the lists
   read and the pass record. A crash between 6's two steps repeats nothing: the next pass
   sees the queued changes waiting and does not queue them again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Final

import aiohttp
import structlog

from crosswatchd.config import Settings
from crosswatchd.errors import ProviderError, SourceUnavailableError
from crosswatchd.models import Action, Item, PlayEvent, Source
from crosswatchd.outbox import DeliveryState, Outbox, WatchlistChange
from crosswatchd.profiles import Profile, TargetAccount
from crosswatchd.providers.base import Provider
from crosswatchd.ratelimit import Limiter
from crosswatchd.sources.discover import DiscoverClient, discover_key
from crosswatchd.sources.plextv import PlexAuth, client_identifier
from crosswatchd.tokens import TokenStore
from crosswatchd.watchlist.items import Groups, identity_keys
from crosswatchd.watchlist.planner import PLEX, Mode, Plan, Side, plan, vanished
from crosswatchd.watchlist.reading import ListTarget, SideRead, find_on_plex, read_plex, read_target
from crosswatchd.watchlist.state import PassRecord, StoredSide, WatchlistState

__all__ = ["PassResult", "WatchlistSync", "plex_auth"]

log = structlog.get_logger(__name__)

#: Events per enqueue statement (as the importer's chunks).
_CHUNK: Final = 500
#: The ``account`` of the events a pass queues.
_ACCOUNT: Final = "watchlist"


def plex_auth(settings: Settings, profile: Profile) -> PlexAuth:
    """The Plex token of *profile*'s watchlist: stored by ``auth plex``, else configured."""
    tokens = TokenStore(settings.data_dir, PLEX, profile.name)
    named = profile.name if settings.profiles else None
    return PlexAuth(tokens, profile.plex_token, named)


@dataclass
class PassResult:
    """One profile's pass, as ``watchlist sync --json`` prints it (:meth:`as_json`).

    ``sides`` maps ``plex`` to ``{"items", "unidentified": [{"title", "year", "guid"}],
    "added", "removed", "unresolved": [{"title", "year", "ids"}]}`` and each target to
    ``{"items", "added", "removed", "extra"}`` (``added``/``removed``: the changes this pass
    queued for that side). ``error`` says which side could not be read (nothing was queued);
    ``skipped`` why the profile or a target sat the pass out."""

    profile: str
    mode: str
    sides: dict[str, dict[str, Any]] = field(default_factory=dict)
    error: str | None = None
    skipped: str | None = None

    @property
    def ok(self) -> bool:
        """False when a side could not be read."""
        return self.error is None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mode": self.mode, **self.sides}
        if self.error is not None:
            out["error"] = self.error
        if self.skipped is not None:
            out["skipped"] = self.skipped
        return out


def _label(item: Item) -> dict[str, Any]:
    return {"title": item.title, "year": item.year}


class WatchlistSync:
    """Runs passes for the profiles of one configuration.

    *providers* are the daemon's (or the command's) providers per target account; *session*
    the shared HTTP session; *state* the open state file; *unix_s* the clock. The Discover
    client of each profile (its token, limiter) is made once and shared with the Plex
    watchlist target (:meth:`discover`)."""

    def __init__(
        self,
        *,
        settings: Settings,
        outbox: Outbox,
        state: WatchlistState,
        session: aiohttp.ClientSession,
        providers: Mapping[TargetAccount, Provider],
        unix_s: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._outbox = outbox
        self._state = state
        self._session = session
        self._providers = providers
        self._unix_s = unix_s
        self._discover: dict[str, DiscoverClient] = {}

    @property
    def mode(self) -> Mode:
        return self._settings.watchlist.mode

    def discover(self, profile: Profile) -> DiscoverClient:
        """*profile*'s Discover client (one limiter per plex.tv account)."""
        client = self._discover.get(profile.name)
        if client is None:
            plex = self._settings.plex
            client = self._discover[profile.name] = DiscoverClient(
                session=self._session,
                url=plex.discover_url,
                auth=plex_auth(self._settings, profile),
                client_id=client_identifier(self._settings.data_dir),
                limiter=Limiter.per_second(
                    post_per_s=plex.discover_put_per_s,
                    get_per_s=plex.discover_get_per_s,
                    get_capacity=max(1.0, plex.discover_get_per_s),
                ),
                timeout_s=self._settings.delivery.timeout_s,
            )
        return client

    async def run(self, profile: Profile, *, dry_run: bool = False) -> PassResult:
        """One pass for *profile* (the module docstring's steps); with *dry_run* nothing is
        queued or stored (the Discover caches still learn)."""
        result = PassResult(profile.name, self.mode)
        discover = self.discover(profile)
        if not discover.auth.is_authorized():
            result.skipped = f"no Plex token; {discover.auth.hint} or set it in the config"
            return result
        targets: dict[str, ListTarget] = {}
        for account in profile.accounts():
            provider: object = self._providers.get(account)
            if not isinstance(provider, ListTarget):
                continue
            if provider.is_authorized():
                targets[account.provider] = provider
            else:
                result.sides[account.provider] = {"skipped": "not authorized"}
        started = self._unix_s()
        stored = await self._state.sides(profile.name)
        names = [PLEX, *targets]
        since = min((stored[n].read_at for n in names if n in stored), default=0.0)
        latest = await self._outbox.watchlist_changes(profile.name, names, since_s=since)
        applied = {n: _applied_since(latest, n, stored.get(n)) for n in names}
        reads = await self._read(discover, targets, stored, applied)
        errors = {name: str(r) for name, r in reads.items() if isinstance(r, BaseException)}
        if errors:
            result.error = "; ".join(f"{name}: {why}" for name, why in errors.items())
            log.warning("watchlist.pass_failed", profile=profile.name, error=result.error)
            if not dry_run:
                await self._state.record(profile.name, PassRecord(self.mode, started, None, errors))
            return result
        read = {name: r for name, r in reads.items() if isinstance(r, SideRead)}
        sides = [
            await self._side(profile, read[name], stored.get(name), latest, applied[name])
            for name in names
        ]
        planned = plan(self.mode, sides)
        unresolved = await self._place_on_plex(profile, planned)
        self._summarise(result, read, planned, unresolved)
        if not dry_run:
            await self._enqueue(profile, planned)
            summary = result.as_json()
            record = PassRecord(self.mode, started, self._unix_s(), {}, summary)
            await self._state.save(
                profile.name, {n: r.stored() for n, r in read.items() if r.fresh}, record
            )
        log.info(
            "watchlist.pass",
            profile=profile.name,
            mode=self.mode,
            dry_run=dry_run,
            read=[n for n, r in read.items() if r.fresh],
            queued=len(planned.changes),
            added_by=planned.added_by,
            removed_by=planned.removed_by,
            unidentified=len(read[PLEX].unidentified),
            unresolved=len(unresolved),
        )
        return result

    async def _read(
        self,
        discover: DiscoverClient,
        targets: Mapping[str, ListTarget],
        stored: Mapping[str, StoredSide],
        applied: Mapping[str, list[WatchlistChange]],
    ) -> dict[str, SideRead | BaseException]:
        names = [PLEX, *targets]
        jobs = [read_plex(discover, self._state, unix_s=self._unix_s)]
        jobs += [
            read_target(t, stored.get(n), force=bool(applied[n]), unix_s=self._unix_s)
            for n, t in targets.items()
        ]
        outcomes = await asyncio.gather(*jobs, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException) and not isinstance(
                outcome, ProviderError | SourceUnavailableError
            ):
                raise outcome  # a bug, or cancellation: not an unreadable list
        return dict(zip(names, outcomes, strict=True))

    async def _side(
        self,
        profile: Profile,
        read: SideRead,
        stored: StoredSide | None,
        latest: Sequence[WatchlistChange],
        applied: Sequence[WatchlistChange],
    ) -> Side:
        """The planner's view of one side: its last synced state (the stored read less the
        removals of ours that landed since), now, the changes not landed or kept, and (for a
        target that lost items) what was played since."""
        if (
            read.name == PLEX
            and stored is not None
            and stored.stamps is not None
            and read.stamps is not None
            and stored.stamps.moved(read.stamps, ("plex", "account"))
        ):
            # Another token than the last read's: perhaps another account, whose list must
            # not be compared with the old one. This pass sees its additions only.
            log.warning("watchlist.plex_token_changed", profile=profile.name)
            stored = None
        before = list(stored.items) if stored is not None else []
        removed = [c.item for c in applied if c.action is Action.WATCHLIST_REMOVE]
        if removed:
            gone = Groups()
            for item in removed:
                gone.add(identity_keys(item))
            before = [i for i in before if gone.group_of(identity_keys(i)) is None]
        changes = [
            c for c in latest if c.provider == read.name and (c.waiting or c.held_back or c.kept)
        ]
        watched: frozenset[str] = frozenset()
        if read.name != PLEX and stored is not None and vanished(before, read.items):
            plays = await self._outbox.plays_since(profile.name, read.name, since_s=stored.read_at)
            watched = frozenset(k for p in plays for k in identity_keys(p))
        return Side(read.name, before, read.items, changes, watched)

    async def _place_on_plex(self, profile: Profile, planned: Plan) -> list[Item]:
        """Give every addition to Plex its Discover key (found by ids); the ones Discover has
        no item for are taken out of the plan and returned (*unresolved*)."""
        unresolved: list[Item] = []
        kept = []
        discover = self.discover(profile)
        for change in planned.changes:
            if change.side != PLEX or change.action is not Action.WATCHLIST_ADD:
                kept.append(change)
                continue
            item = change.item
            if discover_key(item.guid) is None:
                key = await find_on_plex(discover, self._state, item)
                if key is None:
                    unresolved.append(item)
                    continue
                item = replace(item, guid=f"plex://{item.kind.value}/{key}")
            kept.append(replace(change, item=item))
        planned.changes = kept
        return unresolved

    def _summarise(
        self,
        result: PassResult,
        read: Mapping[str, SideRead],
        planned: Plan,
        unresolved: list[Item],
    ) -> None:
        for name, side in read.items():
            counts: dict[str, Any] = {
                "items": side.size,
                "added": planned.count(name, Action.WATCHLIST_ADD),
                "removed": planned.count(name, Action.WATCHLIST_REMOVE),
            }
            if name == PLEX:
                counts["unidentified"] = [{**_label(i), "guid": i.guid} for i in side.unidentified]
                counts["unresolved"] = [{**_label(i), "ids": i.ids.as_dict()} for i in unresolved]
            else:
                counts["extra"] = planned.extra.get(name, 0)
            result.sides[name] = counts

    async def _enqueue(self, profile: Profile, planned: Plan) -> None:
        now = datetime.fromtimestamp(self._unix_s(), UTC)
        by_side: dict[str, list[PlayEvent]] = {}
        for change in planned.changes:
            by_side.setdefault(change.side, []).append(
                PlayEvent(
                    Source.WATCHLIST,
                    change.action,
                    _ACCOUNT,
                    change.item,
                    now,
                    profile=profile.name,
                )
            )
        for side, events in by_side.items():
            for start in range(0, len(events), _CHUNK):
                await self._outbox.enqueue_many(events[start : start + _CHUNK], targets=[side])


def _applied_since(
    latest: Sequence[WatchlistChange], side: str, stored: StoredSide | None
) -> list[WatchlistChange]:
    """Our changes of *side* that landed since its last read (a target then is read afresh)."""
    if stored is None:
        return []
    return [
        c
        for c in latest
        if c.provider == side
        and c.state is DeliveryState.DELIVERED
        and not c.kept
        and (c.settled_at or 0.0) >= stored.read_at
    ]
