"""Existing data dirs keep working: an outbox written by the version 1 code (the fixture
``tests/fixtures/outbox/v1.sql``) opens with today's code, migrated to the current version,
with every row kept and the same queue, counts and dedupe as before."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from crosswatchd.models import Action, Ids, Item, MediaKind, PlayEvent, Source
from crosswatchd.outbox import SCHEMA_VERSION, DeliveryState, Outbox, ProviderCounts
from tests.clocks import Clock

V1_DUMP = Path(__file__).parent / "fixtures" / "outbox" / "v1.sql"
#: The fixture's plays were watched from T0 on, with a one-hour dedupe window.
T0 = datetime(2024, 1, 15, 10, 30, tzinfo=UTC)
WINDOW_S = 3600.0
TABLES = ("events", "deliveries", "play_keys", "seen_accounts", "meta")


def write_v1(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.executescript(V1_DUMP.read_text("utf-8"))
    db.close()


def snapshot(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in a stable order."""
    with sqlite3.connect(path) as db:
        rows = {t: sorted(db.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in TABLES}
    db.close()
    return rows


def schema(path: Path) -> list[tuple[str, str, str]]:
    """The file's schema objects as (type, name, sql), sorted."""
    with sqlite3.connect(path) as db:
        objects = db.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
            " ORDER BY type, name"
        ).fetchall()
    db.close()
    return objects


def user_version(path: Path) -> int:
    with sqlite3.connect(path) as db:
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
    db.close()
    return version


@pytest.fixture
def v1_path(tmp_path: Path) -> Path:
    path = tmp_path / "outbox.sqlite3"
    write_v1(path)
    assert user_version(path) == 1
    return path


@pytest.fixture
async def migrated(v1_path: Path) -> AsyncIterator[Outbox]:
    clock = Clock((T0 + timedelta(hours=2)).timestamp())
    box = await Outbox.open(
        v1_path, providers=["trakt", "simkl"], dedupe_window_s=WINDOW_S, unix_s=clock
    )
    yield box
    await box.close()


#: Version 1's columns, in version 1's order.
V1_EVENTS = (
    "id, source, action, account, item, label, occurred_at, received_at, progress_pct,"
    " view_offset_ms, duration_ms, session, keys, providers, dedupe_window_s"
)
V1_DELIVERIES = (
    "id, event_id, provider, kind, state, attempts, next_attempt_at, lease_token, sent_at,"
    " last_error, reason, reason_kind, resolved_item, resolved_by, watched_at, unconfirmed,"
    " created_at, updated_at, settled_at"
)


def as_version_1(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """A version 2 file's rows read as version 1 had them (its columns, play_keys from
    delivery_keys), to compare with :func:`snapshot` of the version 1 file."""
    queries = {
        "events": f"SELECT {V1_EVENTS} FROM events",
        "deliveries": f"SELECT {V1_DELIVERIES} FROM deliveries",
        "play_keys": "SELECT provider, key, at, delivery_id FROM delivery_keys WHERE kind = 'play'",
        "seen_accounts": "SELECT * FROM seen_accounts",
        "meta": "SELECT * FROM meta",
    }
    with sqlite3.connect(path) as db:
        rows = {t: sorted(db.execute(q).fetchall(), key=repr) for t, q in queries.items()}
    db.close()
    return rows


def profiles_of(path: Path) -> set[str]:
    with sqlite3.connect(path) as db:
        found = {
            str(p)
            for table in ("events", "deliveries", "delivery_keys")
            for (p,) in db.execute(f"SELECT DISTINCT profile FROM {table}")
        }
    db.close()
    return found


class TestVersion1File:
    async def test_it_opens_at_the_current_version_with_every_row_kept(self, v1_path: Path) -> None:
        """Opening migrates the file to the current version and changes no row: every
        event, delivery and dedupe key is kept, belonging to the implicit profile."""
        before = snapshot(v1_path)
        box = await Outbox.open(v1_path, providers=["trakt", "simkl"])
        await box.close()

        assert SCHEMA_VERSION == 5
        assert user_version(v1_path) == 5
        assert as_version_1(v1_path) == before
        assert profiles_of(v1_path) == {"default"}
        assert {t: len(rows) for t, rows in before.items()} == {
            "events": 9,
            "deliveries": 14,
            "play_keys": 14,
            "seen_accounts": 2,
            "meta": 1,
        }

    async def test_its_schema_becomes_the_schema_of_a_new_file(
        self, v1_path: Path, tmp_path: Path
    ) -> None:
        """A migrated file and a new one have the same tables, indexes, views and triggers,
        text for text (version 1's inline fan-out trigger is gone)."""
        fresh = tmp_path / "fresh.sqlite3"
        for path in (v1_path, fresh):
            await (await Outbox.open(path, providers=["trakt"])).close()

        assert schema(v1_path) == schema(fresh)
        assert {(kind, name) for kind, name, _ in schema(fresh)} >= {
            ("view", "play_duplicates"),
            ("view", "event_fan_out"),
            ("trigger", "events_fan_out"),
            ("trigger", "play_keys_of_delivery"),
        }

    async def test_the_queue_and_the_status_read_as_before(self, migrated: Outbox) -> None:
        """Counts, problems, backlog, ignored accounts and the retry generation are what the
        version 1 code reported for this file."""
        assert await migrated.counts() == {
            "trakt": ProviderCounts(
                pending=2, delivered=1, dead=1, unresolved=1, parked=1, dropped=1
            ),
            "simkl": ProviderCounts(pending=6, live_pending=1),
        }
        problems = await migrated.parked(states=[DeliveryState.PARKED, DeliveryState.DEAD])
        assert [(p.id, p.state, p.reason_kind) for p in problems] == [
            (13, "dead", "permanent"),
            (11, "parked", "not_found"),
            (9, "parked", "unresolved"),
        ]
        backlog = await migrated.backlog()
        assert backlog[("default", "trakt")]["last_error"] == "trakt: unconfirmed"
        assert backlog[("default", "simkl")]["oldest_watched_at"] == T0
        assert await migrated.seen_accounts("tautulli") == ["bob"]
        assert await migrated.retry_generation() == 1
        assert await migrated.untargeted_plays() == 1

    async def test_leases_release_and_claims_carry_the_stored_state(self, migrated: Outbox) -> None:
        """The five deliveries a killed daemon held are released; a claim returns the stored
        in-flight mark and unconfirmed count."""
        assert await migrated.release_all_leases() == 5
        claimed = {c.label: c for c in await migrated.claim("trakt", "play", limit=10, lease_s=30)}

        assert set(claimed) == {"Barry Lyndon (1975)", "Futurama S02E15"}
        assert claimed["Barry Lyndon (1975)"].unconfirmed == 1
        simkl = {c.label: c for c in await migrated.claim("simkl", "play", limit=10, lease_s=30)}
        assert simkl["Big Trouble in Little China (1986)"].sent_at is not None

    async def test_old_plays_still_dedupe_new_events(self, migrated: Outbox) -> None:
        """Play keys written by version 1 feed the version 2 dedupe view: Tautulli reporting
        a play the file already holds adds nothing; another item is a new play."""
        barry = Item(MediaKind.MOVIE, "Barry Lyndon", 1975, ids=Ids(imdb="tt0072684"))
        again = PlayEvent(
            Source.TAUTULLI, Action.WATCHED, "alice", barry, T0 + timedelta(minutes=12)
        )
        other = Item(MediaKind.MOVIE, "Other", 1990, ids=Ids(imdb="tt0099999"))
        new = PlayEvent(Source.PLEX, Action.WATCHED, "alice", other, T0)

        dup, fresh = await migrated.enqueue_many([again, new])

        assert (dup.new_deliveries, dup.duplicate) == (0, True)
        assert (fresh.new_deliveries, fresh.duplicate) == (2, False)

    async def test_a_play_stored_without_targets_is_adopted(self, migrated: Outbox) -> None:
        """The play stored while no target was configured gets a delivery per target."""
        assert await migrated.adopt_targets() == 2
        assert await migrated.untargeted_plays() == 0
        assert await migrated.adopt_targets() == 0
