"""The outbox's SQL, loaded once from the package's ``.sql`` files.

``queries.sql`` (SQLite) and ``queries.pg.sql`` (PostgreSQL) hold every statement by name
(``-- name: claim``), as procrastinate's ``queries.sql`` does; :class:`Queries` has one
attribute per name, so a misspelt name fails type checking, and a query missing from either
file fails at import: the two dialects cannot drift apart. ``schema.sql`` and
``schema.pg.sql`` hold the migrations (``-- migration: 1``…), :data:`MIGRATIONS` and
:data:`PG_MIGRATIONS` in order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from importlib import resources
from typing import Final

import orjson

from crosswatchd.sqlfiles import named_blocks

__all__ = [
    "MIGRATIONS",
    "PG_MIGRATIONS",
    "PG_QUERIES",
    "QUERIES",
    "Queries",
    "json_list",
    "named_blocks",
    "queries_for",
]


@dataclass(frozen=True, slots=True)
class Queries:
    """Every named statement of ``queries.sql`` (see there for what each does)."""

    # intake
    lock_keys: str
    insert_events: str
    count_deliveries_of_events: str
    delete_events: str
    note_account: str
    probe_returning_schema: str
    probe_returning: str
    # targets configured later
    orphan_plays: str
    accounts_to_adopt: str
    adopt_play: str
    add_target: str
    # claim and settle
    release_all_leases: str
    release_accounts: str
    queued_accounts: str
    discard_profile: str
    claim: str
    claimed_rows: str
    mark_sent: str
    save_resolution: str
    settle: str
    retry_parked: str
    dismiss_parked: str
    bump_retry_generation: str
    probe_write: str
    # operator views
    counts: str
    parked: str
    backlog: str
    played_just_before: str
    next_due: str
    due_accounts: str
    retry_generation: str
    recent: str
    waiting_plays: str
    seen_accounts: str
    untargeted_plays: str
    # the watchlist pass
    watchlist_changes: str
    plays_since: str
    watchlist_counts: str
    # imported files and exports
    imported_keys: str
    rating_keys: str
    movie_plays: str
    movie_ratings: str

    @classmethod
    def parse(cls, text: str, what: str = "queries.sql") -> Queries:
        """The queries of a ``queries.sql`` text; ``ValueError`` unless it names exactly the
        fields of this class."""
        blocks = named_blocks(text, "name")
        expected = {f.name for f in fields(cls)}
        if set(blocks) != expected:
            missing = sorted(expected - set(blocks))
            unknown = sorted(set(blocks) - expected)
            raise ValueError(f"{what}: missing {missing}, unknown {unknown}")
        return cls(**blocks)


def json_list(values: Iterable[int | str]) -> str:
    """*values* as one JSON array parameter, for a query's ``json_each(:param)``: a list of
    any length in a fixed statement (str enums as their values)."""
    return orjson.dumps([v if isinstance(v, int) else str(v) for v in values]).decode()


def _read(name: str) -> str:
    return resources.files("crosswatchd.outbox").joinpath(name).read_text("utf-8")


def _migrations(text: str, what: str = "schema.sql") -> tuple[str, ...]:
    blocks = named_blocks(text, "migration")
    numbers = [int(n) for n in blocks]
    if numbers != list(range(1, len(numbers) + 1)):
        raise ValueError(f"{what}: migrations must be numbered 1, 2, … in order: {numbers}")
    return tuple(blocks.values())


#: The named queries of SQLite and of PostgreSQL (read from the package once, at import).
QUERIES: Final = Queries.parse(_read("queries.sql"))
PG_QUERIES: Final = Queries.parse(_read("queries.pg.sql"), "queries.pg.sql")
#: The schema's migrations: ``MIGRATIONS[n - 1]`` brings a file from version n-1 to n.
MIGRATIONS: Final = _migrations(_read("schema.sql"))
PG_MIGRATIONS: Final = _migrations(_read("schema.pg.sql"), "schema.pg.sql")


def queries_for(dialect: str) -> Queries:
    """The named queries of *dialect* (``"sqlite"`` or ``"postgresql"``)."""
    return PG_QUERIES if dialect == "postgresql" else QUERIES
