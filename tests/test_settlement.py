"""The decision table: what becomes of a delivery after each outcome (crosswatchd.settlement).

Pure: each row gives a claimed delivery (kind, attempts, unconfirmed sends, in-flight mark,
age), the step and the outcome, and the settlement expected. Backoff jitter is fixed (the
full delay), so delays are exact: plays and live state back off 2 s doubling to 60 s.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from crosswatchd.errors import (
    AuthError,
    ErrorScope,
    PermanentError,
    RetryableError,
    UnresolvedError,
)
from crosswatchd.models import Action, Ids, Item, MediaKind, Source
from crosswatchd.outbox import Claimed, DeliveryKind, DeliveryState, ReasonKind, Settlement
from crosswatchd.providers.base import LiveOutcome, PlayOutcome
from crosswatchd.settlement import (
    Observation,
    Outcome,
    RetryPolicy,
    Rules,
    Step,
    decide,
    is_stale,
    retry_delay_s,
)

NOW = datetime(2025, 3, 1, 20, 0, tzinfo=UTC)
RULES = Rules(
    provider="trakt",
    plays=RetryPolicy(base_s=2.0, max_s=60.0, rand=lambda: 1.0),
    live_max_age_s=300.0,
)
MOVIE = Item(MediaKind.MOVIE, "Barry Lyndon", 1975, ids=Ids(imdb="tt0072684"))


def delivery(
    kind: DeliveryKind = DeliveryKind.PLAY,
    *,
    attempts: int = 1,
    unconfirmed: int = 0,
    in_flight: bool = False,
    age_s: float = 60.0,
) -> Claimed:
    """A claimed delivery; ``in_flight``: an earlier send may have landed (sent_at set)."""
    occurred_at = NOW - timedelta(seconds=age_s)
    play = kind is DeliveryKind.PLAY
    return Claimed(
        id=7,
        event_id=3,
        provider="trakt",
        kind=kind,
        lease_token="token",
        attempts=attempts,
        action=Action.WATCHED if play else Action.START,
        source=Source.PLEX,
        account="alice",
        item=MOVIE,
        resolved=True,
        label=MOVIE.label(),
        occurred_at=occurred_at,
        watched_at=occurred_at if play else None,
        progress_pct=100.0 if play else 12.5,
        sent_at=(NOW - timedelta(minutes=1)).timestamp() if in_flight else None,
        unconfirmed=unconfirmed,
    )


PLAY = delivery()
PLAY_3RD_ATTEMPT = delivery(attempts=3)
PLAY_IN_FLIGHT = delivery(in_flight=True)
LIVE = delivery(DeliveryKind.LIVE)
LIVE_OLD = delivery(DeliveryKind.LIVE, age_s=299.0)
LIVE_STALE = delivery(DeliveryKind.LIVE, age_s=301.0)

parked = Settlement.parked
pending = Settlement.pending

TABLE = [
    # -- plays: resolving ids -------------------------------------------------------------
    pytest.param(
        PLAY,
        Step.RESOLVE,
        UnresolvedError("no ids found", "plex"),
        parked("plex: no ids found", ReasonKind.UNRESOLVED),
        id="play-resolve-unresolved-parked",
    ),
    pytest.param(
        PLAY,
        Step.RESOLVE,
        UnresolvedError("payload: local://5 is personal media", "payload"),
        parked("payload: local://5 is personal media", ReasonKind.UNRESOLVED),
        id="play-resolve-reason-naming-its-step-is-not-prefixed-twice",
    ),
    pytest.param(
        PLAY_3RD_ATTEMPT,
        Step.RESOLVE,
        RetryableError("trakt", "HTTP 503"),
        pending(8.0, "trakt: HTTP 503", keep_sent=False),
        id="play-resolve-retryable-backs-off",
    ),
    pytest.param(
        delivery(attempts=3, in_flight=True),
        Step.RESOLVE,
        RetryableError("trakt", "HTTP 503"),
        pending(8.0, "trakt: HTTP 503", keep_sent=True),
        id="play-resolve-retryable-keeps-in-flight-mark",
    ),
    pytest.param(
        PLAY_3RD_ATTEMPT,
        Step.RESOLVE,
        AuthError("trakt", "search refused"),
        pending(8.0, "trakt: internal error: AuthError: trakt: search refused", keep_sent=True),
        id="play-resolve-unexpected-error-is-internal",
    ),
    pytest.param(
        PLAY,
        Step.IDS,
        UnresolvedError("an episode needs its show's ids", "ids"),
        parked("an episode needs its show's ids", ReasonKind.UNRESOLVED),
        id="play-target-lacks-ids-parked",
    ),
    # -- plays: looking in the target's history -------------------------------------------
    pytest.param(
        PLAY_IN_FLIGHT,
        Step.CHECK,
        Observation.FOUND,
        Settlement.delivered("found in history"),
        id="play-check-found-after-a-send",
    ),
    pytest.param(
        PLAY,
        Step.CHECK,
        Observation.FOUND,
        Settlement.delivered("already in history (recorded by another app?)"),
        id="play-check-import-found",
    ),
    pytest.param(
        PLAY_IN_FLIGHT,
        Step.CHECK,
        RetryableError("trakt", "HTTP 429", retry_after_s=7.0),
        pending(7.0, "trakt: HTTP 429", keep_sent=True),
        id="play-check-retry-after-wins",
    ),
    pytest.param(
        PLAY,
        Step.CHECK,
        AuthError("trakt", "token revoked"),
        pending(10.0, "token revoked", keep_sent=False, refund_attempt=True),
        id="play-check-auth-refunds-attempt",
    ),
    pytest.param(
        PLAY_IN_FLIGHT,
        Step.CHECK,
        PermanentError("trakt", "HTTP 403"),
        parked("history check refused: HTTP 403", ReasonKind.UNCONFIRMED),
        id="play-check-refused-never-guesses",
    ),
    # -- plays: sending -------------------------------------------------------------------
    pytest.param(
        PLAY,
        Step.SEND,
        PlayOutcome.ADDED,
        Settlement.delivered(),
        id="play-added-delivered",
    ),
    pytest.param(
        PLAY,
        Step.SEND,
        PlayOutcome.NOT_FOUND,
        parked("trakt does not know this item (not_found)", ReasonKind.NOT_FOUND),
        id="play-not-found-parked",
    ),
    pytest.param(
        delivery(unconfirmed=1),
        Step.SEND,
        PlayOutcome.UNCONFIRMED,
        pending(
            60.0,
            "sent, but the reply confirmed nothing; checking history next",
            keep_sent=True,
            count_unconfirmed=True,
        ),
        id="play-unconfirmed-checked-again",
    ),
    pytest.param(
        delivery(unconfirmed=2),
        Step.SEND,
        PlayOutcome.UNCONFIRMED,
        parked(
            "sent 3 times; trakt neither confirmed it nor shows it in history",
            ReasonKind.UNCONFIRMED,
        ),
        id="play-unconfirmed-third-send-parked",
    ),
    pytest.param(
        PLAY,
        Step.SEND,
        Observation.NO_OUTCOME,
        pending(60.0, "no outcome", keep_sent=True),
        id="play-no-outcome-kept",
    ),
    pytest.param(
        PLAY_3RD_ATTEMPT,
        Step.SEND,
        RetryableError("trakt", "HTTP 502"),
        pending(8.0, "trakt: HTTP 502", keep_sent=True),
        id="play-send-retryable-may-have-landed",
    ),
    pytest.param(
        delivery(attempts=30),
        Step.SEND,
        RetryableError("trakt", "timeout"),
        pending(60.0, "trakt: timeout", keep_sent=True),
        id="play-send-backoff-capped",
    ),
    pytest.param(
        PLAY,
        Step.SEND,
        AuthError("trakt", "refresh refused"),
        pending(10.0, "refresh refused", keep_sent=True, refund_attempt=True),
        id="play-send-auth-refunds-attempt",
    ),
    pytest.param(
        PLAY,
        Step.SEND,
        PermanentError("trakt", "account locked (423)", scope=ErrorScope.ACCOUNT),
        Settlement.dead("account locked (423)"),
        id="play-send-account-refused-dead",
    ),
    pytest.param(
        PLAY,
        Step.SEND,
        PermanentError("trakt", "HTTP 422"),
        parked("refused by trakt: HTTP 422", ReasonKind.REJECTED),
        id="play-send-request-refused-parked",
    ),
    pytest.param(
        PLAY_3RD_ATTEMPT,
        Step.SEND,
        KeyError("weird API shape"),
        pending(8.0, "trakt: internal error: KeyError: 'weird API shape'", keep_sent=True),
        id="play-internal-error-backs-off-visibly",
    ),
    # -- live state -----------------------------------------------------------------------
    pytest.param(
        LIVE_STALE,
        Step.CLAIM,
        Observation.STALE,
        Settlement.dropped("stale live state"),
        id="live-stale-dropped",
    ),
    pytest.param(
        LIVE, Step.SEND, LiveOutcome.SENT, Settlement.delivered("sent"), id="live-sent-delivered"
    ),
    pytest.param(
        LIVE,
        Step.SEND,
        LiveOutcome.ALREADY,
        Settlement.delivered("already"),
        id="live-already-delivered",
    ),
    pytest.param(
        LIVE,
        Step.SEND,
        LiveOutcome.NOT_FOUND,
        Settlement.dropped("not_found"),
        id="live-not-found-dropped",
    ),
    pytest.param(
        LIVE,
        Step.RESOLVE,
        UnresolvedError("no ids", "plex"),
        Settlement.dropped("unresolved: no ids"),
        id="live-unresolved-dropped",
    ),
    pytest.param(
        LIVE,
        Step.IDS,
        UnresolvedError("an episode needs its show's ids", "ids"),
        Settlement.dropped("unresolved: an episode needs its show's ids"),
        id="live-target-lacks-ids-dropped",
    ),
    pytest.param(
        LIVE,
        Step.SEND,
        RetryableError("trakt", "HTTP 503"),
        pending(2.0, "trakt: HTTP 503", keep_sent=False),
        id="live-retryable-backs-off-like-plays",
    ),
    pytest.param(
        replace(LIVE, action=Action.STOP, progress_pct=None),
        Step.CLAIM,
        Observation.NO_PROGRESS,
        Settlement.dropped("stop of unknown progress right after the play: nothing to send"),
        id="live-stop-without-progress-dropped",
    ),
    pytest.param(
        LIVE_OLD,
        Step.SEND,
        RetryableError("trakt", "HTTP 429", retry_after_s=5.0),
        Settlement.dropped("stale before retry: trakt: HTTP 429"),
        id="live-retry-would-be-stale-dropped",
    ),
    pytest.param(
        LIVE,
        Step.SEND,
        AuthError("trakt", "no token"),
        pending(10.0, "no token", keep_sent=False, refund_attempt=True),
        id="live-auth-refunds-attempt",
    ),
    pytest.param(
        LIVE,
        Step.SEND,
        PermanentError("trakt", "HTTP 422"),
        Settlement.dropped("HTTP 422"),
        id="live-refused-dropped",
    ),
]


class TestDecide:
    @pytest.mark.parametrize(("claimed", "step", "outcome", "expected"), TABLE)
    def test_outcome_settles_as_the_table_says(
        self, claimed: Claimed, step: Step, outcome: Outcome, expected: Settlement
    ) -> None:
        assert decide(claimed, step, outcome, RULES, now_s=NOW.timestamp()) == expected

    @pytest.mark.parametrize(
        ("claimed", "step", "outcome"),
        [
            pytest.param(PLAY, Step.SEND, LiveOutcome.SENT, id="play-with-a-live-answer"),
            pytest.param(PLAY, Step.SEND, Observation.FOUND, id="found-outside-the-check"),
            pytest.param(PLAY, Step.CLAIM, Observation.STALE, id="a-play-is-never-stale"),
            pytest.param(LIVE, Step.SEND, PlayOutcome.ADDED, id="live-with-a-play-answer"),
            pytest.param(LIVE, Step.SEND, KeyError("bug"), id="live-unexpected-error"),
        ],
    )
    def test_an_outcome_outside_the_table_is_refused(
        self, claimed: Claimed, step: Step, outcome: Outcome
    ) -> None:
        """No guessing: the caller gets a ValueError (for live state an unexpected exception
        escapes the drainer and the lease expires)."""
        with pytest.raises(ValueError, match="no settlement"):
            decide(claimed, step, outcome, RULES, now_s=NOW.timestamp())

    def test_live_state_is_stale_after_live_max_age_s(self) -> None:
        assert is_stale(LIVE_STALE, RULES, now_s=NOW.timestamp())
        assert not is_stale(LIVE_OLD, RULES, now_s=NOW.timestamp())


class TestRetryPolicy:
    def test_the_policy_is_retry_delay_s_with_its_parameters(self) -> None:
        """The decision asks the policy how long; the policy is retry_delay_s."""
        policy = RetryPolicy(base_s=2.0, max_s=60.0, rand=lambda: 0.5)
        for attempts in range(1, 10):
            assert policy.delay_s(attempts) == retry_delay_s(
                attempts, base_s=2.0, max_s=60.0, rand=lambda: 0.5
            )
        assert policy.delay_s(4, retry_after_s=3.0) == 3.0


class TestSettlement:
    @pytest.mark.parametrize(
        "fields",
        [
            pytest.param({"state": DeliveryState.LEASED}, id="leased-is-not-a-settlement"),
            pytest.param({"state": DeliveryState.PENDING}, id="pending-needs-a-delay"),
            pytest.param(
                {"state": DeliveryState.DELIVERED, "delay_s": 5.0}, id="delay-only-for-pending"
            ),
            pytest.param(
                {"state": DeliveryState.PARKED, "reason": "why"}, id="parked-needs-a-reason-kind"
            ),
        ],
    )
    def test_a_settlement_that_makes_no_sense_is_refused(self, fields: dict[str, object]) -> None:
        with pytest.raises(ValueError):
            Settlement(**fields)  # type: ignore[arg-type]

    def test_a_negative_delay_is_due_at_once(self) -> None:
        assert Settlement.pending(-3.0, "x", keep_sent=False).delay_s == 0.0

    def test_dead_records_the_reason_as_the_error_too(self) -> None:
        dead = Settlement.dead("account locked (423)")
        assert (dead.reason_kind, dead.error) == (ReasonKind.PERMANENT, "account locked (423)")
