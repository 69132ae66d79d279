"""A reconcile pass, in process, against the strict fakes (Plex server, Tautulli, Trakt,
SIMKL): what it finds missing and enqueues, what it costs, and what it leaves alone."""

from __future__ import annotations

import stat
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from crosswatchd.app import services
from crosswatchd.cli.status import render
from crosswatchd.config import Settings
from crosswatchd.drain import Drainer
from crosswatchd.models import Action, Ids, Item, MediaKind, PlayEvent, Source
from crosswatchd.reconcile import (
    PassReport,
    PassRunning,
    last_passes,
    make_reconciler,
    pass_lock,
)
from crosswatchd.report import build_report
from crosswatchd.storage import Storage
from crosswatchd.tokens.files import TokenFile
from tests.fakes.catalog import Catalog
from tests.fakes.plex_server import FakePlexServer
from tests.fakes.simkl import FakeSimkl
from tests.fakes.tautulli import FakeTautulli, history_row
from tests.fakes.trakt import FakeTrakt
from tests.reconcile_support import T0, Media, add_media, play_times


@dataclass
class World:
    """Fakes, a data dir with both targets authorized, and the library on every side."""

    tmp: Path
    trakt: FakeTrakt
    simkl: FakeSimkl
    plex: FakePlexServer
    media: list[Media]
    overrides: dict[str, Any] = field(default_factory=dict)

    def settings(self, **reconcile: Any) -> Settings:
        values: dict[str, Any] = {
            "data_dir": self.tmp / "data",
            "trakt": {
                "client_id": self.trakt.client_id,
                "client_secret": self.trakt.client_secret,
                "api_url": self.trakt.url,
            },
            "simkl": {"client_id": self.simkl.client_id, "api_url": self.simkl.url},
            "plex": {"url": self.plex.url, "token": self.plex.token},
            "resolver": {"use_search": False},
            "delivery": {"timeout_s": 5.0},
            "reconcile": {"ratings": False, **reconcile},
            **self.overrides,
        }
        return Settings(**values)

    async def run_pass(self, **options: Any) -> PassReport:
        settings = self.settings(**options.pop("reconcile", {}))
        storage = Storage.files(settings)
        outbox = await storage.outbox()
        try:
            async with services(storage) as svc:
                state = await storage.reconcile_state()
                try:
                    return await make_reconciler(settings, outbox, svc, state).run(**options)
                finally:
                    await state.close()
        finally:
            await outbox.close()

    async def deliver(self) -> None:
        """Run every target account's drainers until nothing is due."""
        settings = self.settings()
        outbox = await Storage.files(settings).outbox()
        try:
            async with services(Storage.files(settings)) as svc:
                drainers = [
                    Drainer(outbox, p, settings.delivery, resolve=svc.resolve, profile=a.profile)
                    for a, p in svc.providers.items()
                ]
                while True:
                    done = 0
                    for drainer in drainers:
                        done += await drainer.drain_plays_once()
                        done += await drainer.drain_ratings_once()
                    if not done:
                        break
        finally:
            await outbox.close()

    async def outbox_rows(self, sql: str) -> list[tuple[Any, ...]]:
        outbox = await Storage.files(self.settings()).outbox()
        try:
            return await outbox.fetch_all(sql)
        finally:
            await outbox.close()


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    catalog = Catalog()
    async with (
        FakeTrakt(catalog=catalog) as trakt,
        FakeSimkl(catalog=catalog) as simkl,
        FakePlexServer(token="owner-token", owner="alex") as plex,
    ):
        media = add_media(catalog, plex, movies=12, shows=2, episodes=6)
        data_dir = tmp_path / "data"
        TokenFile(data_dir, "trakt").write(trakt.issue_token())
        TokenFile(data_dir, "simkl").write({"access_token": simkl.issue_token()})
        yield World(tmp_path, trakt, simkl, plex, media)


def seed(world: World, *, trakt_skip: set[int], simkl_skip: set[int]) -> list[Media]:
    """Every item played once on Plex (9 h apart); Trakt and SIMKL hold all but the skipped."""
    times = play_times(len(world.media))
    for n, (media, at) in enumerate(zip(world.media, times, strict=True)):
        world.plex.add_play(media.rating_key, viewed_at=at)
        if n not in trakt_skip:
            world.trakt.add_play(media.entry, at + timedelta(seconds=40))
        if n not in simkl_skip:
            world.simkl.add_play(media.entry, at)
    return world.media


def gets(fake_requests: list[Any], start: int, *, trakt: bool) -> list[str]:
    if trakt:
        return [path for method, path, _ in fake_requests[start:] if method == "GET"]
    return [r["path"] for r in fake_requests[start:] if r["method"] == "GET"]


class TestDrift:
    async def test_missing_plays_are_enqueued_for_the_account_that_lacks_them(
        self, world: World
    ) -> None:
        seed(world, trakt_skip={0, 5, 13, 20}, simkl_skip={3, 14, 23})
        report = await world.run_pass()
        assert not report.errors
        trakt, simkl = report.profiles["default"]["trakt"], report.profiles["default"]["simkl"]
        assert (trakt.source_plays, trakt.target_plays, trakt.missing, trakt.enqueued) == (
            24,
            20,
            4,
            4,
        )
        assert (simkl.source_plays, simkl.target_plays, simkl.missing, simkl.enqueued) == (
            24,
            21,
            3,
            3,
        )
        assert trakt.extra == simkl.extra == 0 and trakt.unresolved == 0
        rows = await world.outbox_rows(
            "SELECT d.provider, e.source, d.priority FROM deliveries d"
            " JOIN events e ON e.id = d.event_id ORDER BY d.provider"
        )
        assert rows == [("simkl", "reconcile", 1)] * 3 + [("trakt", "reconcile", 1)] * 4

        await world.deliver()
        assert len(world.trakt.history) == 24 and len(world.simkl.history) == 24
        trakt_items = {
            str(h["movie" if h["type"] == "movie" else "episode"]["ids"]["trakt"])
            for h in world.trakt.history
        }
        assert len(trakt_items) == 24  # each item once

    async def test_a_repeated_pass_enqueues_nothing_and_costs_at_most_two_requests(
        self, world: World
    ) -> None:
        seed(world, trakt_skip={1}, simkl_skip={2})
        await world.run_pass()
        trakt_start, simkl_start = len(world.trakt.requests), len(world.simkl.requests)
        again = await world.run_pass()  # before anything was delivered: the outbox has them
        for provider in ("trakt", "simkl"):
            result = again.profiles["default"][provider]
            assert (result.missing, result.waiting, result.enqueued) == (0, 1, 0), provider
        # The plays were seeded in the second of the first read: the copy is checked once.
        assert len(gets(world.trakt.requests, trakt_start, trakt=True)) <= 2
        assert len(gets(world.simkl.requests, simkl_start, trakt=False)) <= 2

    async def test_a_pass_long_after_the_last_change_reads_only_the_activities(
        self, world: World
    ) -> None:
        world.trakt.clock = lambda: time.time() - 3600  # changed an hour before the pass
        world.simkl.now = lambda: datetime.now(UTC) - timedelta(hours=1)
        seed(world, trakt_skip={1}, simkl_skip={2})
        await world.run_pass()
        trakt_start, simkl_start = len(world.trakt.requests), len(world.simkl.requests)
        again = await world.run_pass()
        assert [r.read for r in again.profiles["default"].values()] == ["unchanged"] * 2
        assert [r.api_calls for r in again.profiles["default"].values()] == [1, 1]
        assert gets(world.trakt.requests, trakt_start, trakt=True) == ["/sync/last_activities"]
        assert gets(world.simkl.requests, simkl_start, trakt=False) == ["/sync/activities"]

    async def test_after_delivery_a_pass_makes_two_requests_per_target_and_finds_nothing(
        self, world: World
    ) -> None:
        seed(world, trakt_skip={0, 13}, simkl_skip={4, 20})
        await world.run_pass()
        await world.deliver()
        trakt_start, simkl_start = len(world.trakt.requests), len(world.simkl.requests)
        report = await world.run_pass()
        for provider in ("trakt", "simkl"):
            result = report.profiles["default"][provider]
            assert (result.missing, result.enqueued, result.extra) == (0, 0, 0), provider
            assert result.read == "updated" and result.api_calls == 2
        assert len(gets(world.trakt.requests, trakt_start, trakt=True)) == 2
        assert len(gets(world.simkl.requests, simkl_start, trakt=False)) == 2


class TestAlreadyKnown:
    async def test_a_webhook_play_minutes_from_the_history_row_is_not_enqueued_again(
        self, world: World
    ) -> None:
        """Plex's webhook stamped the play when it arrived; the server's history row says
        three minutes earlier. Delivered or still waiting, it is one play."""
        media = world.media[0]
        at = T0 + timedelta(days=3)
        world.plex.add_play(media.rating_key, viewed_at=at - timedelta(minutes=3))
        settings = world.settings()
        outbox = await Storage.files(settings).outbox()
        try:
            item = Item(
                MediaKind.MOVIE,
                media.entry["title"],
                media.entry["year"],
                ids=Ids(imdb=media.entry["ids"]["imdb"]),
                rating_key=media.rating_key,
                server=world.plex.machine_identifier,
            )
            await outbox.enqueue(PlayEvent(Source.PLEX, Action.WATCHED, "alex", item, at))
        finally:
            await outbox.close()
        waiting = await world.run_pass()
        assert [r.enqueued for r in waiting.profiles["default"].values()] == [0, 0]
        await world.deliver()
        delivered = await world.run_pass()
        for result in delivered.profiles["default"].values():
            assert (result.missing, result.enqueued, result.extra) == (0, 0, 0)
        assert len(world.trakt.history) == len(world.simkl.history) == 1

    async def test_another_apps_play_among_the_newest_is_read_with_them(self, world: World) -> None:
        seed(world, trakt_skip={2}, simkl_skip=set())
        first = await world.run_pass()
        assert first.profiles["default"]["trakt"].read == "full"
        world.trakt.add_play(world.media[2].entry, T0 + timedelta(hours=18, minutes=1))
        second = await world.run_pass()
        trakt = second.profiles["default"]["trakt"]
        assert (trakt.read, trakt.target_plays, trakt.missing, trakt.enqueued) == (
            "updated",
            24,
            0,
            0,
        )

    async def test_another_apps_play_deep_in_the_history_makes_a_full_read(
        self, world: World
    ) -> None:
        """Trakt lists plays by watched_at: a play recorded today with an old date is not
        among the newest, so only the play count tells; a full read finds it."""
        seed(world, trakt_skip=set(), simkl_skip=set())
        for n in range(300):  # older plays on Trakt only
            world.trakt.add_play(world.media[5].entry, T0 - timedelta(hours=9 * (n + 1)))
        first = await world.run_pass()
        assert first.profiles["default"]["trakt"].extra == 300
        world.trakt.add_play(world.media[7].entry, T0 - timedelta(days=400))
        second = await world.run_pass()
        trakt = second.profiles["default"]["trakt"]
        assert (trakt.read, trakt.target_plays, trakt.extra) == ("full", 325, 301)
        history_gets = [
            q for m, p, q in world.trakt.requests if m == "GET" and p.startswith("/sync/history")
        ]
        assert {q.get("limit") for q in history_gets} == {"250"}


class TestOptions:
    async def test_a_dry_run_enqueues_nothing_and_records_nothing(self, world: World) -> None:
        seed(world, trakt_skip={0, 1}, simkl_skip={2})
        report = await world.run_pass(dry_run=True)
        assert report.dry_run
        assert report.profiles["default"]["trakt"].enqueued == 2
        assert report.profiles["default"]["simkl"].enqueued == 1
        assert await world.outbox_rows("SELECT count(*) FROM deliveries") == [(0,)]
        assert await last_passes(world.settings().data_dir) == {}
        after = await world.run_pass()  # a real pass still reads everything afresh
        assert after.profiles["default"]["trakt"].read == "full"
        assert after.profiles["default"]["trakt"].enqueued == 2

    async def test_since_keeps_later_source_plays_and_later_extras(self, world: World) -> None:
        seed(world, trakt_skip={0, 23}, simkl_skip=set())
        world.trakt.add_play(world.media[1].entry, T0 - timedelta(days=30))  # only on Trakt
        cut = (T0 + timedelta(hours=9 * 12)).date() + timedelta(days=1)
        report = await world.run_pass(since=cut)
        trakt = report.profiles["default"]["trakt"]
        assert trakt.missing == 1 and trakt.enqueued == 1  # item 23; item 0 is older
        assert trakt.extra == 0  # the old extra play is before --since
        assert trakt.source_plays < 24

    async def test_the_figures_are_kept_for_status(self, world: World) -> None:
        seed(world, trakt_skip={4}, simkl_skip=set())
        await world.run_pass()
        settings = world.settings()
        outbox = await Storage.files(settings).outbox()
        try:
            report = await build_report(Storage.files(settings), outbox)
        finally:
            await outbox.close()
        text = "\n".join(render(report))
        assert "Last reconcile:" in text
        assert "default/trakt at " in text and "1 missing, 1 enqueued" in text
        passes = await last_passes(world.settings().data_dir)
        assert report["reconcile"] == passes
        state = settings.data_dir / "reconcile.sqlite3"
        assert stat.S_IMODE(state.stat().st_mode) == 0o600
        trakt = passes["default"]["trakt"]
        assert trakt["missing"] == 1 and trakt["enqueued"] == 1 and trakt["finished_at"]
        assert set(trakt) >= {
            "source_plays",
            "target_plays",
            "missing",
            "enqueued",
            "extra",
            "unresolved",
            "api_calls",
            "duration_s",
        }

    async def test_one_pass_at_a_time_per_data_dir(self, world: World) -> None:
        storage = Storage.files(world.settings())
        storage.settings.data_dir.mkdir(parents=True, exist_ok=True)
        async with pass_lock(storage):
            with pytest.raises(PassRunning, match=r"already running .*try again later"):
                async with pass_lock(storage):
                    pass
        async with pass_lock(storage):  # released again
            pass


class TestOutages:
    async def test_a_503_while_reading_trakt_fails_trakt_alone_and_the_next_pass_completes(
        self, world: World
    ) -> None:
        seed(world, trakt_skip={0, 7}, simkl_skip={3})
        world.trakt.fail_next(503, count=3, path="/sync/history")  # every in-process try
        report = await world.run_pass()
        trakt = report.profiles["default"]["trakt"]
        assert trakt.error and "could not be read" in trakt.error and trakt.enqueued == 0
        assert report.errors == [trakt.error]
        assert report.profiles["default"]["simkl"].enqueued == 1
        rows = await world.outbox_rows("SELECT provider FROM deliveries")
        assert rows == [("simkl",)]
        again = await world.run_pass()
        assert not again.errors
        assert again.profiles["default"]["trakt"].enqueued == 2
        assert again.profiles["default"]["simkl"].enqueued == 0

    async def test_an_unreadable_source_fails_every_target_and_enqueues_nothing(
        self, world: World
    ) -> None:
        seed(world, trakt_skip={0}, simkl_skip={0})
        world.plex.fail_next(401, 1)
        report = await world.run_pass()
        assert len(report.errors) == 1 and "plex.token" in report.errors[0]
        assert {r.error for r in report.profiles["default"].values()} == {report.errors[0]}
        assert await world.outbox_rows("SELECT count(*) FROM deliveries") == [(0,)]


class TestIdentity:
    async def test_an_item_no_id_is_found_for_is_listed_and_never_enqueued(
        self, world: World
    ) -> None:
        seed(world, trakt_skip=set(), simkl_skip=set())
        world.plex.add_movie("99999", "Home Video", 2020, [], guid="local://99999")
        world.plex.add_play("99999", viewed_at=T0)
        report = await world.run_pass()
        assert report.profiles["default"]["trakt"].unresolved == 1
        assert [(p, u.label) for p, u in report.unresolved] == [("default", "Home Video (2020)")]
        assert report.profiles["default"]["trakt"].enqueued == 0

    async def test_tautulli_and_the_plex_history_reporting_one_play_make_one_play(
        self, world: World, tmp_path: Path
    ) -> None:
        media = world.media[0]
        at = T0 + timedelta(days=1)
        world.plex.add_play(media.rating_key, viewed_at=at)
        row = history_row(
            row_id=1,
            user="alex",
            media_type="movie",
            rating_key=media.rating_key,
            title=media.entry["title"],
            year=media.entry["year"],
            guid=f"com.plexapp.agents.imdb://{media.entry['ids']['imdb']}?lang=en",
            stopped=int(at.timestamp()) + 120,
        )
        async with FakeTautulli(api_key="tkey", rows=[row], users=["alex"]) as tautulli:
            world.overrides["tautulli"] = {
                "url": tautulli.url,
                "api_key": "tkey",
                "users": ["alex"],
            }
            report = await world.run_pass()
        for result in report.profiles["default"].values():
            assert (result.source_plays, result.missing, result.enqueued) == (1, 1, 1)


class TestHouseholds:
    async def test_two_profiles_are_kept_apart(self, world: World) -> None:
        sam_id = 238960586
        world.plex.add_account(sam_id, "sam")
        times = play_times(10)
        for n in range(6):
            world.plex.add_play(world.media[n].rating_key, viewed_at=times[n])
        for n in (0, 6, 7, 8, 9):
            world.plex.add_play(world.media[n].rating_key, account_id=sam_id, viewed_at=times[n])
        world.trakt.add_play(world.media[6].entry, times[6], user="sam")
        data_dir = world.settings().data_dir
        for name in ("alex", "sam"):
            TokenFile(data_dir, "trakt", name).write(world.trakt.issue_token(user=name))
            TokenFile(data_dir, "simkl", name).write(
                {"access_token": world.simkl.issue_token(user=name)}
            )
        world.overrides["profiles"] = [
            {"name": "alex", "plex_accounts": ["alex"]},
            {"name": "sam", "plex_accounts": ["sam"]},
        ]
        report = await world.run_pass()
        assert not report.errors
        assert report.profiles["alex"]["trakt"].enqueued == 6
        assert report.profiles["sam"]["trakt"].enqueued == 4
        assert report.profiles["sam"]["simkl"].enqueued == 5
        await world.deliver()

        def watched(fake: FakeTrakt, user: str) -> set[int]:
            return {
                int(h["movie" if h["type"] == "movie" else "episode"]["ids"]["trakt"])
                for h in fake.user(user).history
            }

        ids = [int(m.entry["ids"]["trakt"]) for m in world.media]
        assert watched(world.trakt, "alex") == {ids[n] for n in range(6)}
        assert watched(world.trakt, "sam") == {ids[n] for n in (0, 6, 7, 8, 9)}
        assert len(world.trakt.user("sam").history) == 5  # item 6 once
        assert world.trakt.history == []  # nobody's plays in the default account
        again = await world.run_pass(profile="sam")
        assert set(again.profiles) == {"sam"}
        assert all(r.enqueued == 0 and r.missing == 0 for r in again.profiles["sam"].values())


class TestMarkedWatched:
    async def test_the_owners_marked_items_count_as_plays_only_when_asked(
        self, world: World
    ) -> None:
        world.plex.mark_watched(world.media[3].rating_key, viewed_at=T0)
        plain = await world.run_pass(dry_run=True)
        assert plain.profiles["default"]["trakt"].source_plays == 0
        marked = await world.run_pass(reconcile={"include_marked_watched": True})
        trakt = marked.profiles["default"]["trakt"]
        assert (trakt.source_plays, trakt.enqueued) == (1, 1)
        rows = await world.outbox_rows("SELECT occurred_at, providers FROM events")
        at = T0.timestamp()
        assert sorted(rows) == [(at, '["simkl"]'), (at, '["trakt"]')]  # at lastViewedAt
