"""Drainers: claim → resolve → deliver → settle, one pair of loops per delivery target.

Each target (Trakt, SIMKL) gets its own :class:`Drainer` with two loops that never wait on
another target: one for completed plays (batched ``add_history``) and one for live state
(``scrobble``). This module holds the loops and the I/O; what becomes of a delivery after each
outcome is :func:`crosswatchd.settlement.decide` (its docstring has the table), and how long
a retry waits is :class:`crosswatchd.settlement.RetryPolicy`. Every settlement is applied with
the claim's lease token; a lost lease is logged (``delivery.lease_lost``) and changes nothing.

A send is marked (``sent_at``) before it starts; a delivery claimed with that mark (the daemon
died mid-send, or the send failed in a way that may have landed) is first looked up in the
target's history, so a crash never turns into a duplicate play. An imported play is looked up
before its first send too, within the dedupe window, so a play another app already recorded
is not added twice. A batch the target refuses as a whole (a request-scoped
``PermanentError``) is re-sent play by play, so only the refused play is parked.

With replicas (:mod:`crosswatchd.replicas`) the provider's limiter refuses a write when this
replica no longer holds the account's lease (:class:`~crosswatchd.errors.LeaseLostError`):
the drainer then ends at once, leaving what it claimed to the lease's expiry (the next holder
looks a play marked as sent up in the history before sending it again).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import replace
from datetime import UTC, datetime

import structlog

from crosswatchd.config import DeliverySettings
from crosswatchd.db import storage_errors
from crosswatchd.errors import (
    AuthError,
    CrosswatchError,
    ErrorScope,
    LeaseLostError,
    PermanentError,
    RetryableError,
    UnresolvedError,
)
from crosswatchd.metrics import Metrics
from crosswatchd.models import DEFAULT_PROFILE, Action, Item, Source
from crosswatchd.outbox import Claimed, DeliveryKind, DeliveryState, Outbox, Settlement
from crosswatchd.providers.base import Change, Play, Provider
from crosswatchd.settlement import (
    Observation,
    Outcome,
    RetryPolicy,
    Rules,
    Step,
    decide,
    is_stale,
)

__all__ = ["Drainer", "ResolveFn", "passthrough_resolve"]

log = structlog.get_logger(__name__)

#: A history entry this close to a play's watched_at is that very play (an earlier send).
_SAME_PLAY_S = 5.0
#: After being woken by new events, wait this long for more before claiming (a burst of
#: webhooks becomes one claim and one batched POST instead of many).
_COALESCE_S = 0.05
#: Live deliveries claimed at a time.
_LIVE_BATCH = 10
#: Longest wait between tries while the outbox cannot be written.
_STORAGE_BACKOFF_MAX_S = 30.0


class _Halt:
    """A drainer's stop: once set, it stays set and every loop's wake-up event is set, so
    a loop waiting for work ends at once."""

    def __init__(self, wakes: Iterable[asyncio.Event]) -> None:
        self._wakes = list(wakes)
        self._event = asyncio.Event()

    def is_set(self) -> bool:
        return self._event.is_set()

    def set(self) -> None:
        self._event.set()
        for wake in self._wakes:
            wake.set()

    async def acquire(self, slots: asyncio.Semaphore) -> bool:
        """Take one of *slots*; False (none taken) if set before one came free."""
        if not slots.locked():
            await slots.acquire()  # one is free: taken at once, no tasks to race
            return True
        taking = asyncio.ensure_future(slots.acquire())
        halted = asyncio.ensure_future(self._event.wait())
        try:
            await asyncio.wait({taking, halted}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            halted.cancel()
            if not taking.done():
                taking.cancel()
        await asyncio.gather(taking, halted, return_exceptions=True)
        if taking.cancelled():
            return False
        if self._event.is_set():
            slots.release()
            return False
        return True

    async def sleep(self, seconds: float) -> None:
        """Sleep *seconds*, or less if set meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), seconds)


#: ``async (item) -> (item with ids, step name)``; raises UnresolvedError or RetryableError.
ResolveFn = Callable[[Item], Awaitable[tuple[Item, str]]]


async def passthrough_resolve(item: Item) -> tuple[Item, str]:
    """A resolver that trusts the payload's ids (used when no resolver is configured)."""
    if not item.ids and not item.show_ids:
        raise UnresolvedError("no external ids in the payload", "payload")
    return item, "payload"


def _log_outcome(step: Step, settlement: Settlement) -> str:
    """The ``delivery.<outcome>`` log event of a settlement."""
    if settlement.state is DeliveryState.DELIVERED:
        return "already_in_history" if step is Step.CHECK else "delivered"
    if settlement.state is not DeliveryState.PENDING:
        return str(settlement.state)  # parked, dead, dropped
    if settlement.refund_attempt:
        return "waiting_for_auth"
    return "unconfirmed" if settlement.count_unconfirmed else "retry"


class Drainer:
    """Delivers one target account's deliveries (*profile* on *provider*) until stopped.

    ``resolve`` fills in ids (see :mod:`crosswatchd.resolve`); ``on_retry_requested`` runs
    when a user re-queued parked plays (to forget cached negative lookups); ``unix_s``
    returns unix seconds; ``rand`` (a float in [0, 1)) jitters the backoff; ``slots``, shared
    by the drainers of one process, bounds how many claim-and-send steps run at once
    (``delivery.concurrency``).
    """

    def __init__(
        self,
        outbox: Outbox,
        provider: Provider,
        settings: DeliverySettings,
        *,
        resolve: ResolveFn = passthrough_resolve,
        on_retry_requested: Callable[[], Awaitable[object]] | None = None,
        unix_s: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
        profile: str = DEFAULT_PROFILE,
        metrics: Metrics | None = None,
        slots: asyncio.Semaphore | None = None,
    ) -> None:
        self.outbox = outbox
        self._slots = slots
        self.provider = provider
        self.profile = profile
        self._metrics = metrics
        self.settings = settings
        self._resolve = resolve
        self._unix_s = unix_s
        self._rules = Rules(
            provider=provider.name,
            plays=RetryPolicy(settings.backoff_base_s, settings.backoff_max_s, rand),
            live_max_age_s=settings.live_max_age_s,
        )
        self._log = log.bind(profile=profile, provider=provider.name)
        self._auth_logged = False
        self._on_retry_requested = on_retry_requested
        self._retry_generation: int | None = None

    # -- loops -------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, kinds: Collection[DeliveryKind] | None = None) -> None:
        """Run the play, live, rating and watchlist loops (only those of *kinds*, when given:
        the Plex watchlist takes watchlist changes only) until *stop* is set, or until a write
        is refused because this replica lost the account's lease (then every loop ends).

        An idle loop costs nothing: it waits on its wake-up event
        (:meth:`~crosswatchd.outbox.Outbox.watch`), set when its deliveries may be due, and
        claims only then; after a claim that found work it claims again at once."""
        loops = {
            DeliveryKind.PLAY: self.drain_plays_once,
            DeliveryKind.LIVE: self.drain_live_once,
            DeliveryKind.RATING: self.drain_ratings_once,
            DeliveryKind.WATCHLIST: self.drain_watchlist_once,
        }
        chosen = {k: once for k, once in loops.items() if kinds is None or k in kinds}
        wakes = {
            kind: self.outbox.watch(
                self.profile, self.provider.name, kind, poll_s=self.settings.poll_s
            )
            for kind in chosen
        }
        halt = _Halt(wakes.values())  # stop, or the lease lost: every loop wakes and ends

        async def follow() -> None:
            await stop.wait()
            halt.set()

        follower = asyncio.create_task(follow())
        try:
            await asyncio.gather(
                *(self._run_loop(halt, kind, once, wakes[kind]) for kind, once in chosen.items())
            )
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
            for wake in wakes.values():
                self.outbox.unwatch(wake)

    async def _run_loop(
        self,
        halt: _Halt,
        kind: DeliveryKind,
        once: Callable[[], Awaitable[int]],
        wake: asyncio.Event,
    ) -> None:
        storage_backoff_s = 0.0
        busy = False  # the last claim found work (or failed): claim again without waiting
        while not halt.is_set():
            if not busy:
                await wake.wait()
                if halt.is_set():
                    return
                # Coalesce a burst of webhooks into one claim (and one batched POST).
                await asyncio.sleep(_COALESCE_S)
            wake.clear()
            if self._slots is not None and not await halt.acquire(self._slots):
                return  # stopped while waiting for its turn
            failure: BaseException | None = None
            try:
                done = await self._once(once, kind)
            except LeaseLostError as exc:
                self._log.warning("drain.lease_lost", kind=kind, reason=exc.message)
                halt.set()
                return
            except storage_errors() as exc:
                failure, done = exc, 0
            finally:
                if self._slots is not None:
                    self._slots.release()
            if failure is not None:
                # The outbox cannot be written (disk full, read-only): say so once, then back
                # off (1 s doubling to 30 s) until it can, instead of spinning on a due row.
                if not storage_backoff_s:
                    self._log.error(
                        "drain.storage_unavailable",
                        kind=kind,
                        error=f"{type(failure).__name__}: {failure}",
                    )
                storage_backoff_s = min(_STORAGE_BACKOFF_MAX_S, max(1.0, storage_backoff_s * 2))
                await halt.sleep(storage_backoff_s)
                busy = True
                continue
            if storage_backoff_s:
                self._log.info("drain.storage_recovered", kind=kind)
                storage_backoff_s = 0.0
            busy = bool(done)

    async def _once(self, once: Callable[[], Awaitable[int]], kind: DeliveryKind) -> int:
        """One claim-and-send step; a bug or a provider surprise is logged and counts as
        nothing done (a lost lease and storage errors go up to the loop)."""
        try:
            return await once()
        except LeaseLostError:
            raise
        except storage_errors():
            raise
        except CrosswatchError as exc:  # defensive: a bug must not stop delivery forever
            self._log.error("drain.error", kind=kind, error=str(exc))
        except Exception:
            self._log.exception("drain.crashed", kind=kind)
        return 0

    def _authorized(self) -> bool:
        if self.provider.is_authorized():
            self._auth_logged = False
            return True
        if not self._auth_logged:
            who = "" if self.profile == DEFAULT_PROFILE else f" --profile {self.profile}"
            self._log.warning(
                "delivery.waiting_for_auth",
                hint=f"run `crosswatchd auth {self.provider.name}{who}`; deliveries are kept",
            )
            self._auth_logged = True
        return False

    async def _settle(
        self, delivery: Claimed, step: Step, outcome: Outcome, *, started: float | None = None
    ) -> None:
        """Decide what *outcome* means for *delivery*, apply it, and log it (once)."""
        now_s = self._unix_s()
        settlement = decide(delivery, step, outcome, self._rules, now_s=now_s)
        if await self.outbox.settle(delivery, settlement):
            self._emit(delivery, step, settlement, started)
            if self._metrics is not None:
                self._metrics.delivery_attempt(self.provider.name, _log_outcome(step, settlement))
                if settlement.state is DeliveryState.DELIVERED and delivery.watched_at:
                    self._metrics.delivered(
                        self.provider.name, now_s - delivery.watched_at.timestamp()
                    )
        else:
            self._log.warning(
                "delivery.lease_lost",
                delivery_id=delivery.id,
                kind=delivery.kind,
                attempt=delivery.attempts,
                outcome=_log_outcome(step, settlement),
            )

    # -- plays -------------------------------------------------------------------------------

    async def drain_plays_once(self) -> int:
        """Claim and process one batch of plays. Returns how many deliveries were settled."""
        if not self._authorized():
            return 0
        await self._notice_retry_request()
        claimed = await self.outbox.claim(
            self.provider.name,
            DeliveryKind.PLAY,
            limit=self.provider.max_batch,
            lease_s=self.settings.lease_s,
            profile=self.profile,
        )
        if not claimed:
            return 0
        ready: list[tuple[Claimed, Play]] = []
        for delivery in claimed:
            try:
                play = await self._prepare(delivery)
            except LeaseLostError:
                raise
            except Exception as exc:  # a bug or a surprise must not stall the whole batch
                await self._internal_error(delivery, Step.RESOLVE, exc)
                continue
            if play is not None:  # settled from here on as the resolved item it is
                ready.append((replace(delivery, item=play.item, resolved=True), play))
        if ready:
            try:
                await self._deliver_plays(ready)
            except LeaseLostError:
                raise
            except Exception as exc:
                for delivery, _ in ready:
                    await self._internal_error(delivery, Step.SEND, exc)
        return len(claimed)

    async def _internal_error(self, delivery: Claimed, step: Step, exc: Exception) -> None:
        """Reschedule after an unexpected exception, with backoff and a visible reason."""
        self._log.exception("drain.internal_error", delivery_id=delivery.id, item=delivery.label)
        await self._settle(delivery, step, exc)

    async def _notice_retry_request(self) -> None:
        if self._on_retry_requested is None:
            return
        generation = await self.outbox.retry_generation()
        if self._retry_generation is not None and generation != self._retry_generation:
            await self._on_retry_requested()
            self._log.info("resolve.negative_cache_cleared", reason="unresolved retry")
        self._retry_generation = generation

    async def _prepare(self, delivery: Claimed) -> Play | None:
        """Resolve ids (once; stored) and check the target can take the item."""
        item = delivery.item
        if not delivery.resolved:
            try:
                item, step = await self._resolve(item)
            except (UnresolvedError, RetryableError) as exc:
                await self._settle(delivery, Step.RESOLVE, exc)
                return None
            await self.outbox.save_resolution(delivery, item, step)
        missing = self.provider.missing_ids(item)
        if missing:
            await self._settle(delivery, Step.IDS, UnresolvedError(missing, "ids"))
            return None
        assert delivery.watched_at is not None
        sent_at = (
            None if delivery.sent_at is None else datetime.fromtimestamp(delivery.sent_at, UTC)
        )
        return Play(key=delivery.id, item=item, watched_at=delivery.watched_at, sent_at=sent_at)

    async def _deliver_plays(self, ready: list[tuple[Claimed, Play]]) -> None:
        started = time.perf_counter()
        # 1. Look before sending: a play that may already have landed (an interrupted or
        #    unconfirmed send: the same play, seconds of tolerance), and an imported play
        #    another scrobbler may have recorded long ago (the dedupe window of tolerance).
        checks = (
            ([(d, p) for d, p in ready if d.sent_at is not None], _SAME_PLAY_S),
            (
                [
                    (d, p)
                    for d, p in ready
                    if d.sent_at is None
                    and d.source is Source.IMPORT
                    and self.provider.keeps_every_play
                ],
                float(self.settings.dedupe_window_s),
            ),
        )
        for group, tolerance_s in checks:
            if not group:
                continue
            try:
                found = await self.provider.find_in_history(
                    [p for _, p in group], tolerance_s=tolerance_s
                )
            except (RetryableError, AuthError) as exc:
                for delivery, _ in ready:
                    await self._settle(delivery, Step.CHECK, exc)
                return
            except PermanentError as exc:  # cannot look: never guess that a play is absent
                for delivery, _ in group:
                    await self._settle(delivery, Step.CHECK, exc, started=started)
                found = {p.key for _, p in group}  # settled above; keep them out of the send
            else:
                for delivery, play in group:
                    if play.key in found:
                        await self._settle(delivery, Step.CHECK, Observation.FOUND, started=started)
            ready = [(d, p) for d, p in ready if p.key not in found]
        if ready:
            await self._send(ready, started)

    async def _send(self, ready: list[tuple[Claimed, Play]], started: float) -> None:
        """2. Send, marked durably as in flight first; settle each play by its outcome."""
        by_id = {d.id: d for d, _ in ready}
        await self.outbox.mark_sent([d for d, _ in ready])
        try:
            outcomes = await self.provider.add_history([p for _, p in ready])
        except PermanentError as exc:
            if exc.scope is ErrorScope.REQUEST and len(ready) > 1:
                # The whole request was refused, so nothing landed: find the culprit by
                # sending the plays one by one instead of condemning the batch.
                self._log.warning("delivery.batch_refused", plays=len(ready), reason=exc.message)
                for pair in ready:
                    await self._send([pair], started)
                return
            for delivery, _ in ready:
                await self._settle(delivery, Step.SEND, exc)
            return
        except (RetryableError, AuthError) as exc:
            for delivery, _ in ready:
                await self._settle(delivery, Step.SEND, exc)
            return
        for key, outcome in outcomes.items():
            await self._settle(by_id[key], Step.SEND, outcome, started=started)
        for delivery, _ in ready:
            if delivery.id not in outcomes:  # a provider bug; never lose the play
                await self._settle(delivery, Step.SEND, Observation.NO_OUTCOME)

    # -- ratings and watchlist changes --------------------------------------------------------

    async def drain_ratings_once(self) -> int:
        """Claim and apply one batch of rating changes. Returns how many were settled."""
        return await self._drain_changes_once(DeliveryKind.RATING)

    async def drain_watchlist_once(self) -> int:
        """Claim and apply one batch of watchlist changes. Returns how many were settled."""
        return await self._drain_changes_once(DeliveryKind.WATCHLIST)

    async def _drain_changes_once(self, kind: DeliveryKind) -> int:
        if not self._authorized():
            return 0
        claimed = await self.outbox.claim(
            self.provider.name,
            kind,
            limit=self.provider.max_changes,
            lease_s=self.settings.lease_s,
            profile=self.profile,
        )
        ready: list[tuple[Claimed, Change]] = []
        for delivery in claimed:
            try:
                change = await self._prepare_change(delivery)
            except LeaseLostError:
                raise
            except Exception as exc:
                await self._internal_error(delivery, Step.RESOLVE, exc)
                continue
            if change is not None:
                ready.append((replace(delivery, item=change.item, resolved=True), change))
        if ready:
            try:
                await self._apply(ready, time.perf_counter())
            except LeaseLostError:
                raise
            except Exception as exc:
                for delivery, _ in ready:
                    await self._internal_error(delivery, Step.SEND, exc)
        return len(claimed)

    async def _prepare_change(self, delivery: Claimed) -> Change | None:
        """Resolve ids (once; stored) and check the target can take the item. A watchlist
        pass's change is not resolved: its item carries the ids the lists gave, and the pass
        queues identified items only."""
        item = delivery.item
        if not delivery.resolved and delivery.source is not Source.WATCHLIST:
            try:
                item, step = await self._resolve(item)
            except (UnresolvedError, RetryableError) as exc:
                await self._settle(delivery, Step.RESOLVE, exc)
                return None
            await self.outbox.save_resolution(delivery, item, step)
        missing = self.provider.missing_ids(item)
        if missing:
            await self._settle(delivery, Step.IDS, UnresolvedError(missing, "ids"))
            return None
        return Change(
            key=delivery.id,
            action=delivery.action,
            item=item,
            at=delivery.occurred_at,
            rating=delivery.rating,
        )

    async def _apply(self, ready: list[tuple[Claimed, Change]], started: float) -> None:
        """Send changes; a batch refused as a whole is re-sent change by change."""
        try:
            results = await self.provider.apply_changes([c for _, c in ready])
        except PermanentError as exc:
            if exc.scope is ErrorScope.REQUEST and len(ready) > 1:
                self._log.warning("delivery.batch_refused", changes=len(ready), reason=exc.message)
                for pair in ready:
                    await self._apply([pair], started)
                return
            for delivery, _ in ready:
                await self._settle(delivery, Step.SEND, exc)
            return
        except (RetryableError, AuthError) as exc:
            for delivery, _ in ready:
                await self._settle(delivery, Step.SEND, exc)
            return
        for delivery, _ in ready:
            result = results.get(delivery.id)
            if result is None:  # a provider bug; never lose the change
                await self._settle(delivery, Step.SEND, RuntimeError("no outcome"))
            else:
                await self._settle(delivery, Step.SEND, result, started=started)

    # -- live state --------------------------------------------------------------------------

    async def drain_live_once(self) -> int:
        """Claim and send a few live-state deliveries, dropping stale ones."""
        if not self._authorized():
            return 0
        claimed = await self.outbox.claim(
            self.provider.name,
            DeliveryKind.LIVE,
            limit=_LIVE_BATCH,
            lease_s=self.settings.lease_s,
            profile=self.profile,
        )
        for delivery in claimed:
            await self._deliver_live(delivery)
        return len(claimed)

    async def _deliver_live(self, delivery: Claimed) -> None:
        """Send one live state. An unexpected exception escapes: the lease expires and the
        delivery is claimed again."""
        if is_stale(delivery, self._rules, now_s=self._unix_s()):
            await self._settle(delivery, Step.CLAIM, Observation.STALE)
            return
        if (
            delivery.action is Action.STOP
            and delivery.progress_pct is None
            and await self.outbox.played_just_before(delivery.event_id, delivery.provider)
        ):
            # Plex sends media.stop without viewOffset right after media.scrobble: a 1 %
            # pause would leave the target showing a resume point on an item just watched.
            await self._settle(delivery, Step.CLAIM, Observation.NO_PROGRESS)
            return
        started = time.perf_counter()
        step = Step.RESOLVE
        try:
            item = delivery.item
            if not delivery.resolved:
                item, resolved_by = await self._resolve(item)
                await self.outbox.save_resolution(delivery, item, resolved_by)
            step = Step.IDS
            missing = self.provider.missing_ids(item)
            if missing:
                raise UnresolvedError(missing, "ids")
            step = Step.SEND
            outcome = await self.provider.scrobble(
                delivery.action, item, delivery.progress_pct or 0.0
            )
        except (UnresolvedError, RetryableError, AuthError, PermanentError) as exc:
            await self._settle(delivery, step, exc)
            return
        await self._settle(delivery, Step.SEND, outcome, started=started)

    # -- logging -----------------------------------------------------------------------------

    def _emit(
        self, delivery: Claimed, step: Step, settlement: Settlement, started: float | None
    ) -> None:
        """One canonical log line per settled delivery attempt."""
        outcome = _log_outcome(step, settlement)
        fields: dict[str, object] = {
            "delivery_id": delivery.id,
            "kind": delivery.kind,
            "action": delivery.action.value,
            "item": delivery.label,
            "outcome": outcome,
            "attempt": delivery.attempts,
        }
        if started is not None:
            fields["duration_ms"] = round((time.perf_counter() - started) * 1000, 1)
        if settlement.state is DeliveryState.PENDING:
            fields["reason"] = settlement.error
            fields["retry_in_s"] = round(settlement.delay_s or 0.0, 1)
        elif settlement.state is DeliveryState.DELIVERED:
            if settlement.reason:
                fields["note"] = settlement.reason
        else:
            fields["reason"] = settlement.reason
        level = "warning" if outcome in ("parked", "dead", "retry") else "info"
        getattr(self._log, level)(f"delivery.{outcome}", **fields)
