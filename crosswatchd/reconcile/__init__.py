"""Reconcile: a periodic full-snapshot comparison that closes drift without adding duplicates.

Webhooks get lost (a lapsed Plex Pass, a daemon down for a week, a device offline, an item
marked watched by hand). Every ``reconcile.interval_s`` (and on demand: ``crosswatchd
reconcile``) a pass compares what the sources say each profile watched and rated with what each
of its target accounts holds, and enqueues exactly what is missing through the outbox (its
dedupe, priority, batching, rate limits and crash safety apply). Nothing is removed from a
target. A pass that finds nothing new costs one request per target account.

One concept per module: :mod:`.sources` (the source snapshot: Tautulli, the Plex server's
history, marked-watched items and ratings, with resolved ids), :mod:`.targets` (the target
snapshot and its local copy: activities first, then only what changed), :mod:`.diff` (the
comparison, pure), :mod:`.run` (one pass: :class:`Reconciler`), :mod:`.state` (the state file:
copies and the last pass's figures), :mod:`.schedule` (the lock, and the passes in ``serve``).
"""

from __future__ import annotations

from crosswatchd.reconcile.run import PassReport, Reconciler, TargetResult
from crosswatchd.reconcile.schedule import (
    PassRunning,
    has_source,
    make_reconciler,
    pass_lock,
    run_forever,
)
from crosswatchd.reconcile.state import ReconcileState, last_passes

__all__ = [
    "PassReport",
    "PassRunning",
    "ReconcileState",
    "Reconciler",
    "TargetResult",
    "has_source",
    "last_passes",
    "make_reconciler",
    "pass_lock",
    "run_forever",
]
