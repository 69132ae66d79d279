"""What becomes of a delivery after each outcome: the decision, apart from the loops.

:func:`decide` is pure: given the claimed delivery, the :class:`Step` of the attempt where
the outcome arose, the outcome (a provider's answer, an :class:`Observation` or an exception)
and the :class:`Rules`, it returns the :class:`~crosswatchd.outbox.Settlement` the drainer
hands to :meth:`Outbox.settle <crosswatchd.outbox.Outbox.settle>`. How long to wait is the
policy, :class:`RetryPolicy` / :func:`retry_delay_s`, apart from the decision whether to wait
(as procrastinate's ``retry.py`` keeps its retry strategy apart from its decision).

Plays (``kind = play``):

=========  =====================================  =============================================
step       outcome                                settlement
=========  =====================================  =============================================
RESOLVE    UnresolvedError                        parked (``unresolved``: "STEP: REASON") until
                                                  ``crosswatchd unresolved retry``
IDS        UnresolvedError (target lacks ids)     parked (``unresolved``: the target's reason)
CHECK      FOUND (already in the history)         delivered, with a note
CHECK      PermanentError (cannot look)           parked (``unconfirmed``): never guess
SEND       ADDED                                  delivered
SEND       NOT_FOUND                              parked (``not_found``; an item the
                                                  Anime-Lists mapping placed says as what)
SEND       UNCONFIRMED (2xx that confirms         pending in 60 s, in-flight mark kept so the
           nothing)                               history is checked first; parked
                                                  (``unconfirmed``) at the 3rd such send
SEND       NO_OUTCOME (a provider bug)            pending in 60 s, in-flight mark kept
SEND       PermanentError, scope ACCOUNT          dead (``permanent``: Trakt 420, 423, 426)
SEND       PermanentError, scope REQUEST          parked (``rejected``); the drainer first
                                                  re-sends a refused batch play by play
RESOLVE,   RetryableError (5xx, 429, network)     pending after Retry-After or backoff, for as
CHECK,                                            long as the outage lasts; in-flight mark kept
SEND                                              if the send may have landed
CHECK,     AuthError (no token, app refused)      pending in 10 s, attempt refunded
SEND
any        any other exception (a bug)            pending after backoff, in-flight mark kept,
                                                  "internal error: …" shown in status
=========  =====================================  =============================================

Live state (``kind = live``; best effort, never a history entry):

=========  =====================================  =============================================
CLAIM      STALE (older than live_max_age_s)      dropped (``stale``)
CLAIM      NO_PROGRESS (a stop of unknown         dropped: nothing to send (Plex sends a stop
           progress right after a play of the     without viewOffset right after a scrobble; a
           same item)                             1 % pause would leave a resume point)
SEND       SENT / ALREADY                         delivered (the outcome as the note)
SEND       NOT_FOUND                              dropped
any        UnresolvedError                        dropped ("unresolved: …")
any        RetryableError                         pending after the plays' backoff, or dropped
                                                  if it would be stale by then
any        AuthError                              pending in 10 s, attempt refunded
any        PermanentError                         dropped
=========  =====================================  =============================================

Ratings and watchlist changes (``kind = rating | watchlist``; every send is idempotent, so
one whose fate is unknown is sent again, never looked up):

=========  =====================================  =============================================
RESOLVE    UnresolvedError                        parked (``unresolved``), as plays
IDS        UnresolvedError (target lacks ids)     parked (``unresolved``)
SEND       APPLIED / KEPT                         delivered (KEPT with its note and the
                                                  reason kind ``kept``)
SEND       NOT_FOUND                              parked (``not_found``)
SEND       LIMIT (the account's list is full)     parked (``rejected``, the note names the
                                                  limit); a later pass queues it again
SEND       PermanentError (either scope)          parked (``rejected``): one refused change
                                                  never stops the account's plays
any        RetryableError                         pending after the plays' backoff
any        AuthError                              pending in 10 s, attempt refunded
any        any other exception (a bug)            pending after backoff, "internal error: …"
=========  =====================================  =============================================

An outcome outside these tables (a live delivery's unexpected exception included) raises
``ValueError``: the drainer lets such an exception escape, the lease expires and the delivery
is claimed again.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, TypeAlias

from crosswatchd.animelists import mapping_note
from crosswatchd.errors import (
    AuthError,
    ErrorScope,
    PermanentError,
    RetryableError,
    UnresolvedError,
)
from crosswatchd.outbox import Claimed, DeliveryKind, ReasonKind, Settlement
from crosswatchd.providers.base import ChangeOutcome, ChangeResult, LiveOutcome, PlayOutcome

__all__ = [
    "AUTH_POLL_S",
    "UNCONFIRMED_MAX",
    "UNCONFIRMED_RECHECK_S",
    "Observation",
    "Outcome",
    "RetryPolicy",
    "Rules",
    "Step",
    "decide",
    "is_stale",
    "retry_delay_s",
]

#: A delivery waiting for authorization is tried again after this many seconds (the drainer
#: also looks for a token this often while none is stored).
AUTH_POLL_S: Final = 10.0
#: An UNCONFIRMED play is looked up again after this many seconds...
UNCONFIRMED_RECHECK_S: Final = 60.0
#: ...and parked ("unconfirmed") at this many sends the target neither confirmed nor shows.
UNCONFIRMED_MAX: Final = 3

_FOUND_IN_FLIGHT: Final = "found in history"
_FOUND_IMPORTED: Final = "already in history (recorded by another app?)"


class Step(enum.StrEnum):
    """Where in a delivery attempt an outcome arose."""

    CLAIM = "claim"  # just claimed, nothing tried yet (live state found stale)
    RESOLVE = "resolve"  # finding the item's ids (the resolver)
    IDS = "ids"  # the target's own test of the ids (Provider.missing_ids)
    CHECK = "check"  # looking the play up in the target's history
    SEND = "send"  # add_history / scrobble


class Observation(enum.StrEnum):
    """Outcomes that are neither a provider's answer nor an error."""

    FOUND = "found"  # CHECK: the play is in the target's history already
    STALE = "stale"  # CLAIM: live state too old to be worth sending
    NO_PROGRESS = "no_progress"  # CLAIM: a stop of unknown progress right after a play
    NO_OUTCOME = "no_outcome"  # SEND: the provider reported nothing for this play (a bug)


#: What :func:`decide` takes as the outcome of a step.
Outcome: TypeAlias = PlayOutcome | LiveOutcome | ChangeResult | Observation | Exception


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
    all of it) so many deliveries failing together do not come back together. ``rand``
    returns a float in [0, 1).
    """
    if retry_after_s is not None:
        return max(0.0, retry_after_s)
    exp = base_s * float(2 ** max(0, min(attempts - 1, 30)))
    capped = min(max_s, exp)
    return float(capped / 2 + rand() * capped / 2)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long to wait before trying again: :func:`retry_delay_s` with these parameters."""

    base_s: float
    max_s: float
    rand: Callable[[], float] = random.random

    def delay_s(self, attempts: int, retry_after_s: float | None = None) -> float:
        """Seconds before attempt ``attempts + 1`` (``retry_after_s``, the server's, wins)."""
        return retry_delay_s(
            attempts,
            base_s=self.base_s,
            max_s=self.max_s,
            retry_after_s=retry_after_s,
            rand=self.rand,
        )


@dataclass(frozen=True, slots=True)
class Rules:
    """What :func:`decide` needs besides the delivery and the outcome.

    ``provider`` names the target in reasons ("refused by trakt: …"); ``plays`` is the
    backoff of plays and live state alike (live state is dropped once a retry would make it
    stale); ``live_max_age_s`` how old live state may get before it is dropped.
    """

    provider: str
    plays: RetryPolicy
    live_max_age_s: float


def is_stale(delivery: Claimed, rules: Rules, *, now_s: float) -> bool:
    """True when live state is older than ``rules.live_max_age_s`` at ``now_s`` (unix s)."""
    return now_s - delivery.occurred_at.timestamp() > rules.live_max_age_s


def decide(
    delivery: Claimed, step: Step, outcome: Outcome, rules: Rules, *, now_s: float
) -> Settlement:
    """The settlement of *delivery* after *outcome* at *step* (the tables above).

    ``now_s`` (unix seconds) is only read for live state (will it be stale by the retry?).
    Raises ``ValueError`` for an outcome the tables do not list.
    """
    if delivery.kind is DeliveryKind.LIVE:
        return _live(delivery, step, outcome, rules, now_s)
    if delivery.kind in (DeliveryKind.RATING, DeliveryKind.WATCHLIST):
        return _change(delivery, step, outcome, rules)
    if isinstance(outcome, Exception):
        return _play_error(delivery, step, outcome, rules)
    return _play(delivery, step, outcome, rules)


def _play(delivery: Claimed, step: Step, outcome: Outcome, rules: Rules) -> Settlement:
    if step is Step.CHECK and outcome is Observation.FOUND:
        in_flight = delivery.sent_at is not None
        return Settlement.delivered(note=_FOUND_IN_FLIGHT if in_flight else _FOUND_IMPORTED)
    if step is Step.SEND:
        if outcome is PlayOutcome.ADDED:
            return Settlement.delivered()
        if outcome is PlayOutcome.NOT_FOUND:
            return Settlement.parked(_not_found(delivery, rules), ReasonKind.NOT_FOUND)
        if outcome is PlayOutcome.UNCONFIRMED:
            sends = delivery.unconfirmed + 1
            if sends >= UNCONFIRMED_MAX:
                reason = (
                    f"sent {sends} times; {rules.provider} neither confirmed it nor shows it"
                    " in history"
                )
                return Settlement.parked(reason, ReasonKind.UNCONFIRMED)
            return Settlement.pending(
                UNCONFIRMED_RECHECK_S,
                "sent, but the reply confirmed nothing; checking history next",
                keep_sent=True,
                count_unconfirmed=True,
            )
        if outcome is Observation.NO_OUTCOME:
            return Settlement.pending(UNCONFIRMED_RECHECK_S, "no outcome", keep_sent=True)
    raise ValueError(f"no settlement for a play after {outcome!r} at step {step}")


def _play_error(delivery: Claimed, step: Step, exc: Exception, rules: Rules) -> Settlement:
    # The in-flight mark is kept when the send may have landed: the SEND step itself, or an
    # earlier send whose fate is still unknown.
    maybe_sent = step is Step.SEND or delivery.sent_at is not None
    if isinstance(exc, UnresolvedError) and step is Step.RESOLVE:
        return Settlement.parked(_with_step(exc), ReasonKind.UNRESOLVED)
    if isinstance(exc, UnresolvedError) and step is Step.IDS:
        return Settlement.parked(exc.reason, ReasonKind.UNRESOLVED)
    if isinstance(exc, RetryableError) and step in (Step.RESOLVE, Step.CHECK, Step.SEND):
        delay_s = rules.plays.delay_s(delivery.attempts, exc.retry_after_s)
        return Settlement.pending(delay_s, str(exc), keep_sent=maybe_sent)
    if isinstance(exc, AuthError) and step in (Step.CHECK, Step.SEND):
        return Settlement.pending(
            AUTH_POLL_S, exc.message, keep_sent=maybe_sent, refund_attempt=True
        )
    if isinstance(exc, PermanentError) and step is Step.CHECK:
        return Settlement.parked(f"history check refused: {exc.message}", ReasonKind.UNCONFIRMED)
    if isinstance(exc, PermanentError) and step is Step.SEND:
        if exc.scope is ErrorScope.ACCOUNT:
            return Settlement.dead(exc.message)
        return Settlement.parked(f"refused by {rules.provider}: {exc.message}", ReasonKind.REJECTED)
    # A bug or a surprise: never lose the play; show the error in status.
    error = f"{rules.provider}: internal error: {type(exc).__name__}: {exc}"
    return Settlement.pending(rules.plays.delay_s(delivery.attempts), error, keep_sent=True)


def _change(delivery: Claimed, step: Step, outcome: Outcome, rules: Rules) -> Settlement:
    if isinstance(outcome, ChangeResult) and step is Step.SEND:
        if outcome.outcome in (ChangeOutcome.APPLIED, ChangeOutcome.KEPT):
            return Settlement.delivered(
                note=outcome.note, kept=outcome.outcome is ChangeOutcome.KEPT
            )
        if outcome.outcome is ChangeOutcome.NOT_FOUND:
            return Settlement.parked(_not_found(delivery, rules), ReasonKind.NOT_FOUND)
        reason = outcome.note or f"{rules.provider}: the account's list is full"
        return Settlement.parked(reason, ReasonKind.REJECTED)
    if isinstance(outcome, UnresolvedError) and step in (Step.RESOLVE, Step.IDS):
        reason = _with_step(outcome) if step is Step.RESOLVE else outcome.reason
        return Settlement.parked(reason, ReasonKind.UNRESOLVED)
    if isinstance(outcome, RetryableError) and step in (Step.RESOLVE, Step.SEND):
        delay_s = rules.plays.delay_s(delivery.attempts, outcome.retry_after_s)
        return Settlement.pending(delay_s, str(outcome), keep_sent=False)
    if isinstance(outcome, AuthError) and step is Step.SEND:
        return Settlement.pending(
            AUTH_POLL_S, outcome.message, keep_sent=False, refund_attempt=True
        )
    if isinstance(outcome, PermanentError) and step is Step.SEND:
        reason = f"refused by {rules.provider}: {outcome.message}"
        return Settlement.parked(reason, ReasonKind.REJECTED)
    if isinstance(outcome, Exception):
        error = f"{rules.provider}: internal error: {type(outcome).__name__}: {outcome}"
        return Settlement.pending(rules.plays.delay_s(delivery.attempts), error, keep_sent=False)
    raise ValueError(f"no settlement for a {delivery.kind} change after {outcome!r} at {step}")


def _not_found(delivery: Claimed, rules: Rules) -> str:
    """Why a target's ``not_found`` parks *delivery*; for an item the Anime-Lists mapping
    placed, what it placed it as (the target may number that show differently)."""
    reason = f"{rules.provider} does not know this item (not_found)"
    note = mapping_note(delivery.item)
    if note is None:
        return reason
    return f"{reason}: {note}; {rules.provider} may number this show or film differently"


def _with_step(exc: UnresolvedError) -> str:
    """``STEP: REASON`` for a user, without repeating a step the reason already names."""
    if exc.reason.startswith(f"{exc.step}:"):
        return exc.reason
    return f"{exc.step}: {exc.reason}"


def _live(
    delivery: Claimed, step: Step, outcome: Outcome, rules: Rules, now_s: float
) -> Settlement:
    if step is Step.CLAIM and outcome is Observation.STALE:
        return Settlement.dropped("stale live state")
    if step is Step.CLAIM and outcome is Observation.NO_PROGRESS:
        return Settlement.dropped("stop of unknown progress right after the play: nothing to send")
    if step is Step.SEND and isinstance(outcome, LiveOutcome):
        if outcome is LiveOutcome.NOT_FOUND:
            return Settlement.dropped("not_found")
        return Settlement.delivered(note=outcome.value)
    if isinstance(outcome, UnresolvedError):
        return Settlement.dropped(f"unresolved: {outcome.reason}")
    if isinstance(outcome, RetryableError):
        delay_s = rules.plays.delay_s(delivery.attempts, outcome.retry_after_s)
        if now_s + delay_s - delivery.occurred_at.timestamp() > rules.live_max_age_s:
            return Settlement.dropped(f"stale before retry: {outcome}")
        return Settlement.pending(delay_s, str(outcome), keep_sent=False)
    if isinstance(outcome, AuthError):
        return Settlement.pending(
            AUTH_POLL_S, outcome.message, keep_sent=False, refund_attempt=True
        )
    if isinstance(outcome, PermanentError):
        return Settlement.dropped(outcome.message)
    raise ValueError(f"no settlement for live state after {outcome!r} at step {step}")
