"""The outbox's vocabulary: delivery states, kinds, reason kinds, and a :class:`Settlement`.

The enum values are what the database stores (``deliveries.state``, ``.kind``,
``.reason_kind``); ``schema.sql`` checks states and kinds against the same lists.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["DeliveryKind", "DeliveryState", "ReasonKind", "Settlement"]


class DeliveryState(enum.StrEnum):
    """Where a delivery is::

    pending ──claim──▶ leased ──settle──▶ delivered | parked | dead | dropped
       ▲                  │
       └──── retry ───────┘
    """

    PENDING = "pending"  # waiting until next_attempt_at
    LEASED = "leased"  # owned by a worker until the lease (next_attempt_at) expires
    DELIVERED = "delivered"  # the target has it
    PARKED = "parked"  # waits for the user (`crosswatchd unresolved retry`)
    DEAD = "dead"  # given up for good (the account refuses every play)
    DROPPED = "dropped"  # live state no longer worth sending

    @property
    def is_final(self) -> bool:
        """True for the states a delivery stays in until a user acts (``settled_at`` is set)."""
        return self not in (DeliveryState.PENDING, DeliveryState.LEASED)


class DeliveryKind(enum.StrEnum):
    """What a delivery carries."""

    PLAY = "play"  # a completed play: /sync/history with watched_at
    LIVE = "live"  # now-watching state: /scrobble, best effort
    RATING = "rating"  # a rating (or its removal); the latest of an item wins per account
    WATCHLIST = "watchlist"  # a watchlist addition or removal; the latest of an item wins


class ReasonKind(enum.StrEnum):
    """Why a delivery was parked, given up or dropped (``deliveries.reason_kind``)."""

    UNRESOLVED = "unresolved"  # parked: no usable ids (`unresolved retry` re-queues all)
    NOT_FOUND = "not_found"  # parked: the target does not know the item
    UNCONFIRMED = "unconfirmed"  # parked: sent, but the target neither confirms nor shows it
    REJECTED = "rejected"  # parked: the target refused this play
    PERMANENT = "permanent"  # dead: the target refuses the account (Trakt 420, 423, 426)
    STALE = "stale"  # dropped: live state too old, or not sendable
    DISMISSED = "dismissed"  # dropped: a user gave up on a play no source can identify
    SUPERSEDED = "superseded"  # dropped: a later rating or watchlist change of the item won
    KEPT = "kept"  # delivered: the target deliberately left its list as it was (SIMKL holds
    #                the item in another list); a watchlist pass does not ask again


@dataclass(frozen=True, slots=True)
class Settlement:
    """What becomes of a claimed delivery: the value :meth:`Outbox.settle` applies.

    ``state`` is never ``LEASED``. ``delay_s`` (``PENDING`` only, required there): due again
    this many seconds after settling. ``reason``: why it was parked, given up or dropped (a
    note for ``DELIVERED``), shown by ``status``; ``reason_kind`` its :class:`ReasonKind`.
    ``error``: stored as ``last_error`` (kept when ``None``). ``keep_sent``: keep the in-flight
    mark (``sent_at``), since the send may have landed; otherwise it is cleared.
    ``refund_attempt``: the claim's attempt does not count (waiting for authorization).
    ``count_unconfirmed``: one more send the target neither confirmed nor showed.

    Build one with the constructors (:meth:`delivered`, :meth:`pending`, :meth:`parked`,
    :meth:`dead`, :meth:`dropped`); raises ``ValueError`` for a combination that makes no sense.
    """

    state: DeliveryState
    delay_s: float | None = None
    reason: str | None = None
    reason_kind: ReasonKind | None = None
    error: str | None = None
    keep_sent: bool = False
    refund_attempt: bool = False
    count_unconfirmed: bool = False

    def __post_init__(self) -> None:
        if self.state is DeliveryState.LEASED:
            raise ValueError("a settlement ends the lease: its state cannot be 'leased'")
        if (self.delay_s is not None) != (self.state is DeliveryState.PENDING):
            raise ValueError("delay_s is required for 'pending' and only there")
        if self.state in (DeliveryState.PARKED, DeliveryState.DEAD, DeliveryState.DROPPED) and (
            self.reason is None or self.reason_kind is None
        ):
            raise ValueError(f"a {self.state} delivery needs a reason and a reason_kind")

    @classmethod
    def delivered(cls, note: str | None = None, *, kept: bool = False) -> Settlement:
        """The target has the play (``note``: how we know, e.g. found in its history).
        ``kept``: a change the target deliberately did not apply (``reason_kind`` KEPT)."""
        return cls(
            DeliveryState.DELIVERED, reason=note, reason_kind=ReasonKind.KEPT if kept else None
        )

    @classmethod
    def pending(
        cls,
        delay_s: float,
        error: str,
        *,
        keep_sent: bool,
        refund_attempt: bool = False,
        count_unconfirmed: bool = False,
    ) -> Settlement:
        """Try again in ``delay_s`` seconds (negative counts as 0), showing ``error``."""
        return cls(
            DeliveryState.PENDING,
            delay_s=max(0.0, delay_s),
            error=error,
            keep_sent=keep_sent,
            refund_attempt=refund_attempt,
            count_unconfirmed=count_unconfirmed,
        )

    @classmethod
    def parked(cls, reason: str, kind: ReasonKind) -> Settlement:
        """Wait for the user (``crosswatchd unresolved retry``); never retried on its own."""
        return cls(DeliveryState.PARKED, reason=reason, reason_kind=kind)

    @classmethod
    def dead(cls, reason: str) -> Settlement:
        """Give up for good (the target refuses the account); the reason is also the error."""
        return cls(
            DeliveryState.DEAD, reason=reason, reason_kind=ReasonKind.PERMANENT, error=reason
        )

    @classmethod
    def dropped(cls, reason: str) -> Settlement:
        """Drop live state that is no longer worth sending."""
        return cls(DeliveryState.DROPPED, reason=reason, reason_kind=ReasonKind.STALE)
