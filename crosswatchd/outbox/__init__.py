"""The durable outbox: every SQL statement about events and deliveries lives in this package.

An accepted event is committed (WAL) before the webhook is answered, and fans out into one
*delivery* per configured target, unless the target already has that play (the views
``play_duplicates``, THE dedupe rule, and ``event_fan_out`` in ``schema.sql``). A delivery
moves through::

    pending ──claim──▶ leased ──settle──▶ delivered | parked(reason) | dead(reason) | dropped
       ▲                  │
       └──── retry ───────┘   (settle back to pending with a later next_attempt_at)

Claim and settle are single statements. A claim stamps a fresh ``lease_token``; a settle only
applies ``WHERE lease_token = ?``, so a worker whose lease expired and was reclaimed cannot
overwrite the newer claim (:meth:`Outbox.settle` returns False). ``sent_at`` marks a send
that may have reached the target; a delivery claimed with ``sent_at`` set is checked against
the target's history before being sent again. What becomes of a delivery after each outcome is
decided in :mod:`crosswatchd.settlement`, as a :class:`Settlement`.

Modules: ``store`` (:class:`Outbox`: intake, claim, settle), ``views`` (what ``status`` and
``unresolved`` read), ``scratch`` (a throw-away copy for dry runs), ``states`` (the enums and
:class:`Settlement`), ``queries`` (loads ``queries.sql``, the named statements, and
``schema.sql``, the migrations).
"""

from __future__ import annotations

from crosswatchd.outbox.scratch import scratch_copy
from crosswatchd.outbox.states import DeliveryKind, DeliveryState, ReasonKind, Settlement
from crosswatchd.outbox.store import SCHEMA_VERSION, Claimed, EnqueueResult, Outbox
from crosswatchd.outbox.views import (
    HeldPlay,
    HeldRating,
    ParkedRow,
    ProviderCounts,
    RatingMark,
    WatchlistChange,
    WatchlistCounts,
)

__all__ = [
    "SCHEMA_VERSION",
    "Claimed",
    "DeliveryKind",
    "DeliveryState",
    "EnqueueResult",
    "HeldPlay",
    "HeldRating",
    "Outbox",
    "ParkedRow",
    "ProviderCounts",
    "RatingMark",
    "ReasonKind",
    "Settlement",
    "WatchlistChange",
    "WatchlistCounts",
    "scratch_copy",
]
