"""Drainers: claim → resolve → deliver → settle, one pair of loops per delivery target.

Each target (Trakt, SIMKL) gets its own :class:`Drainer` with two loops that never wait on
another target: one for completed plays (batched ``add_history``) and one for live state
(``scrobble``). What a failure does is decided here; how long to wait is :func:`retry_delay_s`:

================================  =============================================================
outcome                           what happens to the delivery
================================  =============================================================
ADDED / found in history          delivered
NOT_FOUND                         parked (``not_found``), shown in status, not retried
UNCONFIRMED (2xx, no counts)      retried soon; the retry checks the target's history first;
                                  parked (``unconfirmed``) after 3 such sends
resolver found nothing usable     parked (``unresolved``) until ``crosswatchd unresolved retry``
RetryableError (5xx, 429, net)    pending again after Retry-After or exponential backoff +
                                  jitter, for as long as the outage lasts
AuthError (no token, bad app id)   pending again, attempt refunded; the loop waits for a fix
PermanentError, account (420…)    dead with the reason (Trakt 420, 423, 426)
PermanentError, request (4xx)     a batch is re-sent play by play; the refused play is parked
                                  (``rejected``); ``unresolved retry ID`` re-queues it
unexpected exception              pending again with backoff, the error shown in status
================================  =============================================================

A send is marked (``sent_at``) before it starts; a delivery claimed with that mark (the daemon
died mid-send, or the send failed in a way that may have landed) is first looked up in the
target's history, so a crash never turns into a duplicate play. An imported play is looked up
before its first send too, within the dedupe window, so a play another app already recorded
is not added twice.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import structlog

from crosswatchd.config import DeliverySettings
from crosswatchd.errors import (
    AuthError,
    CrosswatchError,
    ErrorScope,
    PermanentError,
    RetryableError,
    UnresolvedError,
)
from crosswatchd.models import Item, Source
from crosswatchd.outbox import Claimed, Outbox
from crosswatchd.providers.base import LiveOutcome, Play, PlayOutcome, Provider

__all__ = ["Drainer", "ResolveFn", "passthrough_resolve", "retry_delay_s"]

log = structlog.get_logger(__name__)

#: An UNCONFIRMED play is looked up again after this many seconds...
_UNCONFIRMED_RECHECK_S = 60.0
#: ...and parked ("unconfirmed") after this many sends the target neither confirmed nor shows.
_UNCONFIRMED_MAX = 3
#: A history entry this close to a play's watched_at is that very play (an earlier send).
_SAME_PLAY_S = 5.0
#: After being woken by new events, wait this long for more before claiming (a burst of
#: webhooks becomes one claim and one batched POST instead of many).
_COALESCE_S = 0.05
#: How often a drainer without a token looks for one (``crosswatchd auth`` writes it).
_AUTH_POLL_S = 10.0


#: ``async (item) -> (item with ids, step name)``; raises UnresolvedError or RetryableError.
ResolveFn = Callable[[Item], Awaitable[tuple[Item, str]]]


async def passthrough_resolve(item: Item) -> tuple[Item, str]:
    """A resolver that trusts the payload's ids (used when no resolver is configured)."""
    if not item.ids and not item.show_ids:
        raise UnresolvedError("no external ids in the payload", "payload")
    return item, "payload"


def retry_delay_s(
    attempts: int,
    *,
    base_s: float,
    max_s: float,
    retry_after_s: float | None = None,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before attempt ``attempts + 1``.

    The server's ``Retry-After`` wins when given. Otherwise exponential backoff
    ``base_s * 2**(attempts-1)`` capped at ``max_s``, with "equal jitter" (between half and
    all of it) so many deliveries failing together do not come back together.
    """
    if retry_after_s is not None:
        return max(0.0, retry_after_s)
    exp = base_s * float(2 ** max(0, min(attempts - 1, 30)))
    capped = min(max_s, exp)
    return float(capped / 2 + rand() * capped / 2)


class Drainer:
    """Delivers one target's deliveries from the outbox until stopped.

    ``resolve`` fills in ids (see :mod:`crosswatchd.resolve`); ``on_retry_requested`` runs
    when a user re-queued parked plays (to forget cached negative lookups); ``clock``
    returns unix seconds.
    """

    def __init__(
        self,
        outbox: Outbox,
        provider: Provider,
        settings: DeliverySettings,
        *,
        resolve: ResolveFn = passthrough_resolve,
        on_retry_requested: Callable[[], Awaitable[object]] | None = None,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.outbox = outbox
        self.provider = provider
        self.settings = settings
        self._resolve = resolve
        self._clock = clock
        self._rand = rand
        self._log = log.bind(provider=provider.name)
        self._auth_logged = False
        self._on_retry_requested = on_retry_requested
        self._retry_generation: int | None = None

    # -- loops -------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Run the play and live loops until *stop* is set."""
        await asyncio.gather(
            self._loop(stop, "play", self.drain_plays_once),
            self._loop(stop, "live", self.drain_live_once),
        )

    async def _loop(
        self, stop: asyncio.Event, kind: str, once: Callable[[], Awaitable[int]]
    ) -> None:
        wake = self.outbox.watch()
        while not stop.is_set():
            wake.clear()
            try:
                done = await once()
            except CrosswatchError as exc:  # defensive: a bug must not stop delivery forever
                self._log.error("drain.error", kind=kind, error=str(exc))
                done = 0
            except Exception:
                self._log.exception("drain.crashed", kind=kind)
                done = 0
            if done:
                continue
            timeout = self.settings.poll_s
            waiters = [asyncio.ensure_future(stop.wait())]
            if not self.provider.is_authorized():
                # Nothing can be sent: new events need not wake us; look for a token now and then.
                timeout = max(timeout, _AUTH_POLL_S)
            else:
                due = await self.outbox.next_due_in(self.provider.name, kind)
                if due is not None:
                    timeout = min(timeout, max(due, 0.05))
                waiters.append(asyncio.ensure_future(wake.wait()))
            try:
                await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
            if wake.is_set() and not stop.is_set():
                # Coalesce a burst of webhooks into one claim (and one batched POST).
                await asyncio.sleep(_COALESCE_S)

    def _authorized(self) -> bool:
        if self.provider.is_authorized():
            self._auth_logged = False
            return True
        if not self._auth_logged:
            self._log.warning(
                "delivery.waiting_for_auth",
                hint=f"run `crosswatchd auth {self.provider.name}`; deliveries are kept",
            )
            self._auth_logged = True
        return False

    # -- plays -------------------------------------------------------------------------------

    async def drain_plays_once(self) -> int:
        """Claim and process one batch of plays. Returns how many deliveries were settled."""
        if not self._authorized():
            return 0
        await self._notice_retry_request()
        claimed = await self.outbox.claim(
            self.provider.name,
            "play",
            limit=self.provider.max_batch,
            lease_s=self.settings.lease_s,
        )
        if not claimed:
            return 0
        ready: list[tuple[Claimed, Play]] = []
        for delivery in claimed:
            try:
                play = await self._prepare(delivery)
            except Exception as exc:  # a bug or a surprise must not stall the whole batch
                await self._internal_error(delivery, exc)
                continue
            if play is not None:
                ready.append((delivery, play))
        if ready:
            try:
                await self._deliver_plays(ready)
            except Exception as exc:
                for delivery, _ in ready:
                    await self._internal_error(delivery, exc)
        return len(claimed)

    async def _internal_error(self, delivery: Claimed, exc: Exception) -> None:
        """Reschedule after an unexpected exception, with backoff and a visible reason."""
        self._log.exception("drain.internal_error", delivery_id=delivery.id, item=delivery.label)
        error = f"internal error: {type(exc).__name__}: {exc}"
        await self._retry(delivery, RetryableError(self.provider.name, error), maybe_sent=True)

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
            except UnresolvedError as exc:
                reason = f"{exc.step}: {exc.reason}"
                await self.outbox.settle_parked(delivery, reason=reason, reason_kind="unresolved")
                self._emit(delivery, "parked", reason=reason)
                return None
            except RetryableError as exc:
                await self._retry(delivery, exc, maybe_sent=delivery.sent_at is not None)
                return None
            await self.outbox.save_resolution(delivery, item, step)
        missing = self.provider.missing_ids(item)
        if missing:
            await self.outbox.settle_parked(delivery, reason=missing, reason_kind="unresolved")
            self._emit(delivery, "parked", reason=missing)
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
            ([(d, p) for d, p in ready if d.sent_at is not None], _SAME_PLAY_S, "found in history"),
            (
                [
                    (d, p)
                    for d, p in ready
                    if d.sent_at is None
                    and d.source is Source.IMPORT
                    and self.provider.keeps_every_play
                ],
                float(self.settings.dedupe_window_s),
                "already in history (recorded by another app?)",
            ),
        )
        for group, tolerance_s, note in checks:
            if not group:
                continue
            try:
                found = await self.provider.find_in_history(
                    [p for _, p in group], tolerance_s=tolerance_s
                )
            except (RetryableError, AuthError) as exc:
                for delivery, _ in ready:
                    await self._fail(delivery, exc, maybe_sent=delivery.sent_at is not None)
                return
            except PermanentError as exc:  # cannot look: never guess that a play is absent
                for delivery, _ in group:
                    await self._park_unconfirmed(delivery, f"history check refused: {exc.message}")
                found = {p.key for _, p in group}  # settled above; keep them out of the send
            else:
                for delivery, play in group:
                    if play.key in found:
                        await self.outbox.settle_delivered(delivery, note=note)
                        self._emit(delivery, "already_in_history", started=started, note=note)
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
                await self._fail(delivery, exc, maybe_sent=False)
            return
        except (RetryableError, AuthError) as exc:
            for delivery, _ in ready:
                await self._fail(delivery, exc, maybe_sent=True)
            return
        for key, outcome in outcomes.items():
            delivery = by_id[key]
            if outcome is PlayOutcome.ADDED:
                await self.outbox.settle_delivered(delivery)
                self._emit(delivery, "delivered", started=started)
            elif outcome is PlayOutcome.NOT_FOUND:
                reason = f"{self.provider.name} does not know this item (not_found)"
                await self.outbox.settle_parked(delivery, reason=reason, reason_kind="not_found")
                self._emit(delivery, "parked", reason=reason, started=started)
            elif delivery.unconfirmed + 1 >= _UNCONFIRMED_MAX:
                await self._park_unconfirmed(
                    delivery,
                    f"sent {delivery.unconfirmed + 1} times; {self.provider.name} neither"
                    " confirmed it nor shows it in history",
                )
            else:
                await self.outbox.settle_retry(
                    delivery,
                    delay_s=_UNCONFIRMED_RECHECK_S,
                    error="sent, but the reply confirmed nothing; checking history next",
                    maybe_sent=True,
                    unconfirmed=True,
                )
                self._emit(delivery, "unconfirmed", started=started)
        for delivery, _ in ready:
            if delivery.id not in outcomes:  # a provider bug; never lose the play
                await self.outbox.settle_retry(
                    delivery, delay_s=_UNCONFIRMED_RECHECK_S, error="no outcome", maybe_sent=True
                )

    async def _park_unconfirmed(self, delivery: Claimed, reason: str) -> None:
        """Stop re-sending a play whose fate the target will not tell (visible in status;
        ``crosswatchd unresolved retry ID`` sends it again)."""
        await self.outbox.settle_parked(delivery, reason=reason, reason_kind="unconfirmed")
        self._emit(delivery, "parked", reason=reason)

    async def _fail(self, delivery: Claimed, exc: CrosswatchError, *, maybe_sent: bool) -> None:
        if isinstance(exc, PermanentError) and exc.scope is ErrorScope.ACCOUNT:
            await self.outbox.settle_dead(delivery, reason=exc.message)
            self._emit(delivery, "dead", reason=exc.message)
        elif isinstance(exc, PermanentError):
            reason = f"refused by {self.provider.name}: {exc.message}"
            await self.outbox.settle_parked(delivery, reason=reason, reason_kind="rejected")
            self._emit(delivery, "parked", reason=reason)
        elif isinstance(exc, AuthError):
            await self.outbox.settle_retry(
                delivery,
                delay_s=_AUTH_POLL_S,
                error=exc.message,
                maybe_sent=maybe_sent,
                count_attempt=False,
            )
            self._emit(delivery, "waiting_for_auth", reason=exc.message)
        elif isinstance(exc, RetryableError):
            await self._retry(delivery, exc, maybe_sent=maybe_sent)

    async def _retry(self, delivery: Claimed, exc: RetryableError, *, maybe_sent: bool) -> None:
        delay = retry_delay_s(
            delivery.attempts,
            base_s=self.settings.backoff_base_s,
            max_s=self.settings.backoff_max_s,
            retry_after_s=exc.retry_after_s,
            rand=self._rand,
        )
        await self.outbox.settle_retry(
            delivery, delay_s=delay, error=str(exc), maybe_sent=maybe_sent
        )
        self._emit(delivery, "retry", reason=str(exc), retry_in_s=round(delay, 1))

    # -- live state --------------------------------------------------------------------------

    async def drain_live_once(self) -> int:
        """Claim and send a few live-state deliveries, dropping stale ones."""
        if not self._authorized():
            return 0
        claimed = await self.outbox.claim(
            self.provider.name, "live", limit=10, lease_s=self.settings.lease_s
        )
        for delivery in claimed:
            await self._deliver_live(delivery)
        return len(claimed)

    def _stale(self, delivery: Claimed) -> bool:
        age_s = self._clock() - delivery.occurred_at.timestamp()
        return age_s > self.settings.live_max_age_s

    async def _deliver_live(self, delivery: Claimed) -> None:
        if self._stale(delivery):
            await self.outbox.settle_dropped(delivery, reason="stale live state")
            self._emit(delivery, "dropped", reason="stale")
            return
        started = time.perf_counter()
        try:
            item = delivery.item
            if not delivery.resolved:
                item, step = await self._resolve(item)
                await self.outbox.save_resolution(delivery, item, step)
            if self.provider.missing_ids(item):
                raise UnresolvedError(self.provider.missing_ids(item) or "", "ids")
            outcome = await self.provider.scrobble(
                delivery.action, item, delivery.progress_pct or 0.0
            )
        except UnresolvedError as exc:
            await self.outbox.settle_dropped(delivery, reason=f"unresolved: {exc.reason}")
            self._emit(delivery, "dropped", reason=exc.reason)
            return
        except RetryableError as exc:
            delay = retry_delay_s(
                delivery.attempts,
                base_s=1.0,
                max_s=30.0,
                retry_after_s=exc.retry_after_s,
                rand=self._rand,
            )
            if (
                self._clock() + delay - delivery.occurred_at.timestamp()
                > self.settings.live_max_age_s
            ):
                await self.outbox.settle_dropped(delivery, reason=f"stale before retry: {exc}")
                self._emit(delivery, "dropped", reason=str(exc))
            else:
                await self.outbox.settle_retry(
                    delivery, delay_s=delay, error=str(exc), maybe_sent=False
                )
                self._emit(delivery, "retry", reason=str(exc))
            return
        except AuthError as exc:
            await self.outbox.settle_retry(
                delivery,
                delay_s=_AUTH_POLL_S,
                error=exc.message,
                maybe_sent=False,
                count_attempt=False,
            )
            return
        except PermanentError as exc:
            await self.outbox.settle_dropped(delivery, reason=exc.message)
            self._emit(delivery, "dropped", reason=exc.message)
            return
        if outcome is LiveOutcome.NOT_FOUND:
            await self.outbox.settle_dropped(delivery, reason="not_found")
            self._emit(delivery, "dropped", reason="not_found", started=started)
        else:
            await self.outbox.settle_delivered(delivery, note=outcome.value)
            self._emit(delivery, "delivered", started=started, note=outcome.value)

    # -- logging -----------------------------------------------------------------------------

    def _emit(
        self,
        delivery: Claimed,
        outcome: str,
        *,
        started: float | None = None,
        **extra: object,
    ) -> None:
        """One canonical log line per delivery attempt."""
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
        fields.update(extra)
        level = "warning" if outcome in ("parked", "dead", "retry") else "info"
        getattr(self._log, level)(f"delivery.{outcome}", **fields)
