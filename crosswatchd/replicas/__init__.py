"""Replicas sharing the work: which ``crosswatchd serve`` processes run, and which one holds
each target account (profile x provider) — its drainer, its rate limiter and its token
refresh live in exactly one process at a time.

- :mod:`.store` (:class:`ReplicaStore`): the ``replicas`` and ``account_leases`` tables, on
  SQLite (``data_dir/replicas.sqlite3``) or in the shared PostgreSQL database;
- :mod:`.balance`: the pure sharing-out (exact shares over the live replicas);
- :mod:`.supervisor` (:class:`Supervisor`): the loop inside ``serve`` that beats, renews,
  takes and hands back leases, runs a drainer per account held, and gates every write.

Why lease rows and not advisory locks: a row carries the limiter state to the next holder and
tells ``status`` who holds what; it survives a dropped connection (a pool that reconnects
keeps its leases, where a session lock would vanish with the connection and might be taken
while the old holder still believes it holds it); and it works the same on SQLite, so one code
path serves both backends. Its cost is a clock: lease expiry compares wall clocks, which the
outbox's delivery leases already trust to within a second or two (NTP), and every write checks
that its lease has ``send_window_s`` left, more than any skew.
"""

from __future__ import annotations

from crosswatchd.replicas.balance import Plan, plan, quotas
from crosswatchd.replicas.store import Acquired, LeaseRow, ReplicaRow, ReplicaStore
from crosswatchd.replicas.supervisor import AccountWork, Identity, Supervisor, Timing, anchor_of

__all__ = [
    "AccountWork",
    "Acquired",
    "Identity",
    "LeaseRow",
    "Plan",
    "ReplicaRow",
    "ReplicaStore",
    "Supervisor",
    "Timing",
    "anchor_of",
    "plan",
    "quotas",
]
