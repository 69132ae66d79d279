"""Watchlist passes against the strict fakes of Plex Discover, Trakt and SIMKL: what a person
sees on each service after a pass and its delivery, in mode "plex" and "two-way", through
outages, refusals and full lists, with the real outbox, state file, providers and drainers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from crosswatchd.app import services
from crosswatchd.drain import Drainer
from crosswatchd.models import Action, Ids, Item, MediaKind, PlayEvent, Source
from crosswatchd.report import build_report
from crosswatchd.storage import Storage
from crosswatchd.tokens.files import TokenFile
from crosswatchd.watchlist.state import WatchlistState
from tests.fakes.discover import FakeDiscover
from tests.fakes.simkl import FakeSimkl
from tests.fakes.trakt import FakeTrakt
from tests.watchlist_support import (
    CID,
    SECRET,
    World,
    imdb,
    plex_key,
    settings_for,
    watchlist_catalog,
    world,
)

FUTURAMA = {"tvdb": 73871}


@pytest.fixture
async def one_way(tmp_path: Path) -> AsyncIterator[World]:
    async with world(tmp_path, mode="plex") as w:
        yield w


@pytest.fixture
async def two_way(tmp_path: Path) -> AsyncIterator[World]:
    async with world(tmp_path, mode="two-way") as w:
        yield w


def everywhere(w: World) -> tuple[set[str], set[str], set[str]]:
    """The imdb ids on Plex's watchlist, Trakt's watchlist and SIMKL's Plan to Watch."""
    return w.plex.watchlist_imdb(), w.trakt.watchlist_imdb(), w.simkl.list_imdb()


async def synced(w: World, *films: int) -> None:
    """Films on Plex, passed and delivered everywhere, and one pass more to settle."""
    for n in films:
        w.plex.add_to_watchlist(plex_key(w, n))
    await w.sync_and_deliver()
    await w.run()
    w.later()


async def play(w: World, provider: str, n: int) -> None:
    """A play of Film n delivered to *provider* (as a webhook's would be)."""
    w.later()
    film = Item(MediaKind.MOVIE, f"Film {n}", ids=Ids(imdb=imdb(n)))
    event = PlayEvent(Source.PLEX, Action.WATCHED, "me", film, datetime.now(UTC))
    await w.outbox.enqueue_many([event], targets=[provider])
    account = next(a for a in w.profile().accounts() if a.provider == provider)
    drainer = Drainer(w.outbox, w.svc.providers[account], w.settings.delivery)
    assert await drainer.drain_plays_once() == 1


class TestModePlex:
    async def test_plex_items_land_on_trakt_and_in_simkl_plan_to_watch(
        self, one_way: World
    ) -> None:
        w = one_way
        for n in (1, 2):
            w.plex.add_to_watchlist(plex_key(w, n))
        w.plex.add_to_watchlist(w.plex.rating_key_for(FUTURAMA, "show") or "")
        result = await w.sync_and_deliver()
        assert result.ok
        assert result.sides["plex"] == {
            "items": 3,
            "added": 0,
            "removed": 0,
            "unidentified": [],
            "unresolved": [],
        }
        assert result.sides["trakt"] == {"items": 0, "added": 3, "removed": 0, "extra": 0}
        assert result.sides["simkl"] == {"items": 0, "added": 3, "removed": 0, "extra": 0}
        films = {imdb(1), imdb(2), "tt0149460"}  # Futurama's imdb
        assert everywhere(w) == (films, films, films)

    async def test_a_film_taken_off_plex_leaves_both_targets_and_target_only_items_stay(
        self, one_way: World
    ) -> None:
        w = one_way
        w.trakt.watchlist_add("movie", {"imdb": imdb(5)})
        w.simkl.put_in_list("movie", {"imdb": imdb(6)}, "plantowatch")
        await synced(w, 1, 2)
        w.plex.remove_from_watchlist(plex_key(w, 1))
        result = await w.sync_and_deliver()
        assert result.sides["trakt"] == {"items": 3, "added": 0, "removed": 1, "extra": 1}
        assert result.sides["simkl"] == {"items": 3, "added": 0, "removed": 1, "extra": 1}
        assert everywhere(w) == ({imdb(2)}, {imdb(2), imdb(5)}, {imdb(2), imdb(6)})

    async def test_nothing_is_written_to_plex(self, one_way: World) -> None:
        w = one_way
        w.trakt.watchlist_add("movie", {"imdb": imdb(5)})
        await synced(w, 1)
        assert w.plex.watchlist_imdb() == {imdb(1)}
        assert not [r for r in w.plex.requests if r[0] == "PUT"]
        assert not [c for c in await w.changes() if c[0] == "plex"]

    async def test_unidentified_plex_items_are_reported_and_never_sent(
        self, one_way: World
    ) -> None:
        w = one_way
        home_video = w.plex.add_item("movie", "Our Holiday", 2024, [])
        w.plex.add_to_watchlist(home_video)
        w.plex.add_to_watchlist(plex_key(w, 1))
        result = await w.sync_and_deliver()
        assert result.ok
        assert result.sides["plex"]["items"] == 2
        assert result.sides["plex"]["unidentified"] == [
            {"title": "Our Holiday", "year": 2024, "guid": f"plex://movie/{home_video}"}
        ]
        assert [c[3] for c in await w.changes()] == ["Film 1 (1991)", "Film 1 (1991)"]

    async def test_a_target_removal_is_not_copied_and_the_plex_item_goes_back(
        self, one_way: World
    ) -> None:
        w = one_way
        await synced(w, 1)
        w.trakt.watchlist_remove("movie", {"imdb": imdb(1)})
        result = await w.sync_and_deliver()
        assert result.sides["trakt"]["added"] == 1
        assert everywhere(w) == ({imdb(1)}, {imdb(1)}, {imdb(1)})


class TestTwoWay:
    async def test_additions_on_every_side_reach_every_side(self, two_way: World) -> None:
        w = two_way
        w.plex.add_to_watchlist(plex_key(w, 1))
        w.trakt.watchlist_add("movie", {"imdb": imdb(2)})
        w.simkl.put_in_list("movie", {"imdb": imdb(3)}, "plantowatch")
        w.simkl.put_in_list("show", FUTURAMA, "plantowatch")
        result = await w.sync_and_deliver()
        assert result.sides["plex"]["added"] == 3
        all_four = {imdb(1), imdb(2), imdb(3), "tt0149460"}
        assert everywhere(w) == (all_four, all_four, all_four)

    @pytest.mark.parametrize("remover", ["plex", "trakt", "simkl"])
    async def test_a_removal_on_any_side_leaves_every_side(
        self, two_way: World, remover: str
    ) -> None:
        w = two_way
        await synced(w, 1, 2)
        if remover == "plex":
            w.plex.remove_from_watchlist(plex_key(w, 1))
        elif remover == "trakt":
            w.trakt.watchlist_remove("movie", {"imdb": imdb(1)})
        else:
            w.simkl.leave_lists("movie", {"imdb": imdb(1)})
        await w.sync_and_deliver()
        assert everywhere(w) == ({imdb(2)}, {imdb(2)}, {imdb(2)})
        assert (await w.run()).sides["plex"]["added"] == 0  # and it stays gone

    async def test_a_target_item_plex_does_not_know_is_reported_not_guessed(
        self, two_way: World
    ) -> None:
        w = two_way
        del w.plex.items[plex_key(w, 4)]  # Discover has no item with Film 4's ids
        w.trakt.watchlist_add("movie", {"imdb": imdb(4)})
        result = await w.sync_and_deliver()
        film = w.trakt.catalog.movie({"imdb": imdb(4)})
        assert film is not None
        assert result.sides["plex"]["unresolved"] == [
            {
                "title": "Film 4",
                "year": 1994,
                "ids": {"imdb": imdb(4), "tmdb": "900004", "trakt": str(film["ids"]["trakt"])},
            }
        ]
        assert result.sides["plex"]["added"] == 0
        assert w.simkl.list_imdb() == {imdb(4)}  # the other target still gets it
        matches = [r for r in w.plex.requests if r[1] == "/library/metadata/matches"]
        assert all("title" not in query for _, _, query in matches)  # by id only
        before = len(w.plex.requests)
        await w.run()  # the miss is remembered: no lookup again
        assert not [r for r in w.plex.requests[before:] if r[1] == "/library/metadata/matches"]

    async def test_trakt_dropping_a_film_just_played_is_not_a_removal(self, two_way: World) -> None:
        """Trakt takes a watched film off its watchlist (auto removal); with the play in the
        daemon's history, Plex and SIMKL keep it and it goes back on Trakt's."""
        w = two_way
        await synced(w, 1, 2)
        await play(w, "trakt", 1)
        assert imdb(1) not in w.trakt.watchlist_imdb()  # the fake's auto removal
        result = await w.sync_and_deliver()
        assert result.sides["plex"]["removed"] == 0
        assert result.sides["simkl"]["removed"] == 0
        assert everywhere(w)[0] == {imdb(1), imdb(2)}
        assert imdb(1) in w.simkl.list_imdb()

    async def test_simkl_moving_a_watched_film_to_completed_keeps_it_elsewhere(
        self, two_way: World
    ) -> None:
        w = two_way
        await synced(w, 1)
        await play(w, "simkl", 1)
        assert w.simkl.list_imdb("completed") == {imdb(1)}
        result = await w.sync_and_deliver()
        assert result.sides["plex"]["removed"] == 0
        assert w.plex.watchlist_imdb() == {imdb(1)}
        assert w.simkl.list_imdb("completed") == {imdb(1)}  # left where SIMKL put it
        assert len(w.simkl.user().history) == 1  # the play is still there


class TestSimklRules:
    async def test_an_item_held_in_another_list_is_not_moved_and_keeps_its_history(
        self, one_way: World
    ) -> None:
        w = one_way
        w.simkl.put_in_list("movie", {"imdb": imdb(1)}, "completed")
        await synced(w, 1)
        assert w.simkl.list_imdb("completed") == {imdb(1)}
        state, reason = (await w.changes("d.state", "d.reason"))[-1]
        assert state == "delivered" and "completed" in reason
        w.plex.remove_from_watchlist(plex_key(w, 1))
        await w.sync_and_deliver()  # a removal from Plex does not touch Completed
        assert w.simkl.list_imdb("completed") == {imdb(1)}

    async def test_a_removal_deletes_nothing_watched_meanwhile(self, one_way: World) -> None:
        """Between the pass and the delivery the film is watched on SIMKL: the removal sees it
        in Completed and sends no /sync/history/remove, so the watch record stays."""
        w = one_way
        await synced(w, 1)
        w.plex.remove_from_watchlist(plex_key(w, 1))
        await w.run()
        w.later()
        w.simkl.put_in_list("movie", {"imdb": imdb(1)}, "completed")
        await w.deliver()
        assert w.simkl.list_imdb("completed") == {imdb(1)}
        assert not [r for r in w.simkl.requests if r["path"] == "/sync/history/remove"]

    async def test_an_item_still_in_plan_to_watch_is_removed(self, one_way: World) -> None:
        w = one_way
        await synced(w, 1, 2)
        w.plex.remove_from_watchlist(plex_key(w, 2))
        await w.sync_and_deliver()
        assert w.simkl.list_imdb() == {imdb(1)}
        removals = [r for r in w.simkl.requests if r["path"] == "/sync/history/remove"]
        assert [r["json"]["movies"][0]["ids"]["imdb"] for r in removals] == [imdb(2)]


class TestFullTraktWatchlist:
    async def test_refused_additions_are_parked_naming_the_limit_and_tried_again(
        self, one_way: World
    ) -> None:
        w = one_way
        w.trakt.user().watchlist_limit = 2
        for n in (1, 2, 3):
            w.plex.add_to_watchlist(plex_key(w, n))
        await w.sync_and_deliver()
        assert len(w.trakt.watchlist_imdb()) == 2
        assert len(w.simkl.list_imdb()) == 3  # the other target went through
        parked = [
            c for c in await w.changes("d.provider", "d.state", "d.reason") if c[1] == "parked"
        ]
        assert len(parked) == 1 and parked[0][0] == "trakt"
        assert "420" in parked[0][2] and "X-Account-Limit=2" in parked[0][2]
        report = await build_report(w.storage, w.outbox)
        assert report["watchlist"]["default"]["trakt"]["parked"] == 1
        assert "420" in report["watchlist"]["default"]["trakt"]["reason"]

        again = await w.sync_and_deliver()  # a later pass tries it again, still refused
        assert again.sides["trakt"]["added"] == 1
        report = await build_report(w.storage, w.outbox)
        assert report["watchlist"]["default"]["trakt"]["parked"] == 1  # not 2: replaced

        w.trakt.user().watchlist_limit = 250  # VIP
        await w.sync_and_deliver()
        assert len(w.trakt.watchlist_imdb()) == 3
        report = await build_report(w.storage, w.outbox)
        assert report["watchlist"]["default"]["trakt"] == {
            "pending": 0,
            "parked": 0,
            "reason": None,
        }


class TestUnreadableSide:
    @pytest.mark.parametrize("broken", ["plex", "trakt", "simkl"])
    async def test_a_side_that_cannot_be_read_queues_nothing_and_removes_nothing(
        self, one_way: World, broken: str
    ) -> None:
        w = one_way
        await synced(w, 1, 2)
        w.plex.remove_from_watchlist(plex_key(w, 1))
        w.trakt.watchlist_add("movie", {"imdb": imdb(7)})  # so Trakt is read
        w.simkl.put_in_list("movie", {"imdb": imdb(8)}, "plantowatch")
        # Three failures: every in-process try of the GET fails.
        if broken == "plex":
            w.plex.fail_next(503, 3, path="/library/sections/watchlist")
        elif broken == "trakt":
            w.trakt.fail_next(503, 3, path="/sync/watchlist")
        else:
            w.simkl.fail_next(503, 3, path="/sync/all-items")
        before = await w.changes()
        result = await w.run()
        assert not result.ok and broken in (result.error or "")
        assert await w.changes() == before  # nothing queued
        report = await build_report(w.storage, w.outbox)
        assert report["watchlist"]["default"][broken]["reason"]
        await w.sync_and_deliver()  # the same change is seen once the side reads again
        assert everywhere(w) == ({imdb(2)}, {imdb(2), imdb(7)}, {imdb(2), imdb(8)})

    async def test_a_page_missing_in_the_middle_is_not_a_shorter_list(self, tmp_path: Path) -> None:
        async with world(tmp_path) as w:
            for n in range(1, 6):
                w.plex.add_to_watchlist(plex_key(w, n))
            await w.sync_and_deliver()
            sync = w.sync
            sync.discover(w.profile())._page_size = 2  # type: ignore[attr-defined]
            seen: list[str] = []

            def fail_third_page(request: Any) -> None:
                if request.query.get("X-Plex-Container-Start") == "4":
                    seen.append("page 3")
                    w.plex.fail_next(500, 1)

            w.plex.before_request = fail_third_page
            result = await w.run()
            assert seen and not result.ok
            assert not [c for c in await w.changes() if c[1] == "watchlist_remove"]

    async def test_a_refused_plex_token_is_an_unreadable_side(self, one_way: World) -> None:
        w = one_way
        w.plex.users["owner"].token = "rotated"
        result = await w.run()
        assert not result.ok and "401" in (result.error or "")


class TestAnotherPlexAccount:
    async def test_a_new_token_is_not_compared_with_the_old_accounts_list(
        self, one_way: World
    ) -> None:
        """The config now names another account's token: its watchlist is not taken for the
        old one with everything removed; this pass only adds."""
        w = one_way
        await synced(w, 1, 2)
        sam = w.plex.add_user("sam")
        w.plex.add_to_watchlist(plex_key(w, 3), user="sam")
        TokenFile(w.settings.data_dir, "plex").write({"access_token": sam})  # wins over config
        result = await w.sync_and_deliver()
        # The old account's films stay on Trakt, now only there (extra).
        assert result.sides["trakt"] == {"items": 2, "added": 1, "removed": 0, "extra": 2}
        assert w.trakt.watchlist_imdb() == {imdb(1), imdb(2), imdb(3)}
        w.plex.remove_from_watchlist(plex_key(w, 3), user="sam")
        w.later()
        await w.sync_and_deliver()  # from now on sam's list is compared with itself
        assert w.trakt.watchlist_imdb() == {imdb(1), imdb(2)}


class TestCheapPasses:
    async def test_a_pass_with_nothing_new_reads_only_plex_pages_and_activities(
        self, one_way: World
    ) -> None:
        w = one_way
        for n in range(1, 6):
            w.plex.add_to_watchlist(plex_key(w, n))
        w.sync.discover(w.profile())._page_size = 2  # type: ignore[attr-defined]
        await synced(w)
        metadata = sum(w.plex.metadata_calls.values())
        counts = len(w.plex.requests), len(w.trakt.requests), len(w.simkl.requests)
        result = await w.run()
        assert result.ok and all(result.sides[s]["added"] == 0 for s in ("trakt", "simkl"))
        plex_new = w.plex.requests[counts[0] :]
        assert [p for _, p, _ in plex_new] == ["/library/sections/watchlist/all"] * 3
        assert sum(w.plex.metadata_calls.values()) == metadata  # ids from the cache
        assert [(m, p) for m, p, _ in w.trakt.requests[counts[1] :]] == [
            ("GET", "/sync/last_activities")
        ]
        assert [(r["method"], r["path"]) for r in w.simkl.requests[counts[2] :]] == [
            ("GET", "/sync/activities")
        ]


class TestModes:
    async def test_switching_modes_neither_re_adds_nor_loses_anything(self, one_way: World) -> None:
        w = one_way
        w.trakt.watchlist_add("movie", {"imdb": imdb(5)})  # only on Trakt
        w.trakt.watchlist_add("movie", {"imdb": imdb(6)})
        await synced(w, 1)
        w.trakt.watchlist_remove("movie", {"imdb": imdb(6)})  # removed while in mode plex
        await w.sync_and_deliver()
        w.use_mode("two-way")
        w.later()
        result = await w.sync_and_deliver()
        assert result.sides["plex"]["added"] == 1  # the item mode plex left alone
        both = {imdb(1), imdb(5)}
        assert everywhere(w) == (both, both, both)
        w.use_mode("plex")
        w.later()
        result = await w.sync_and_deliver()
        assert result.sides["trakt"]["added"] == result.sides["trakt"]["removed"] == 0
        assert everywhere(w) == (both, both, both)


async def test_a_dry_run_plans_but_queues_and_stores_nothing(one_way: World) -> None:
    w = one_way
    w.plex.add_to_watchlist(plex_key(w, 1))
    result = await w.run(dry_run=True)
    assert result.sides["trakt"]["added"] == 1
    assert await w.changes() == []
    assert await w.state.sides("default") == {}


async def test_two_profiles_keep_their_lists_apart(tmp_path: Path) -> None:
    catalog = watchlist_catalog()
    async with (
        FakeDiscover(catalog=catalog) as plex,
        FakeTrakt(
            client_id=CID, client_secret=SECRET, catalog=catalog, post_tolerance_s=1.0
        ) as trakt,
        FakeSimkl(client_id=CID, catalog=catalog, get_per_s=1000, post_per_s=1000) as simkl,
    ):
        alex_token, sam_token = plex.add_user("alex"), plex.add_user("sam")
        settings = settings_for(
            tmp_path,
            plex,
            trakt,
            simkl,
            profiles=[
                {"name": "alex", "plex_token": alex_token},
                {"name": "sam", "targets": ["trakt"]},
            ],
        )
        for name in ("alex", "sam"):
            TokenFile(settings.data_dir, "trakt", name).write(trakt.issue_token(user=name))
        TokenFile(settings.data_dir, "simkl", "alex").write(
            {"access_token": simkl.issue_token(user="alex")}
        )
        TokenFile(settings.data_dir, "plex", "sam").write({"access_token": sam_token})
        plex.add_to_watchlist(plex.rating_key_for({"imdb": imdb(1)}) or "", user="alex")
        plex.add_to_watchlist(plex.rating_key_for({"imdb": imdb(2)}) or "", user="sam")
        outbox = await Storage.files(settings).outbox()
        state = await WatchlistState.open(settings.data_dir)
        try:
            async with services(Storage.files(settings)) as svc:
                w = World(plex, trakt, simkl, settings, outbox, state, svc)
                for name in ("alex", "sam"):
                    assert (await w.sync_and_deliver(name)).ok
        finally:
            await state.close()
            await outbox.close()
        assert trakt.watchlist_imdb(user="alex") == {imdb(1)}
        assert trakt.watchlist_imdb(user="sam") == {imdb(2)}
        assert simkl.list_imdb(user="alex") == {imdb(1)}
        assert simkl.list_imdb(user="sam") == set()
        assert trakt.watchlist_imdb() == set()  # the default user saw nothing
