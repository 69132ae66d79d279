"""The Tautulli history importer against the fake Tautulli and a real outbox."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from crosswatchd.animelists_store import AnimeListStore
from crosswatchd.errors import ConfigError, SourceUnavailableError
from crosswatchd.importer import ImportSummary, format_summary, run_import
from crosswatchd.models import Action, Item, MediaKind, PlayEvent, Source
from crosswatchd.outbox import Outbox
from crosswatchd.sources.tautulli_api import TautulliClient
from tests.fakes.animelists import REAL_ROWS, FakeAnimeLists, anime_list_xml
from tests.fakes.tautulli import FakeTautulli, history_row, make_rows

KEY = "k" * 32
DAY = 86_400
T0 = 1_750_000_000  # 2025-06-15T15:06:40Z


def movie(row_id: int, **kw: Any) -> dict[str, Any]:
    """A completed movie play with imdb id in its legacy guid (unless overridden)."""
    kw.setdefault("rating_key", 5000 + row_id)
    kw.setdefault("stopped", T0 - row_id * DAY)
    return history_row(row_id=row_id, **kw)


def episode(row_id: int, **kw: Any) -> dict[str, Any]:
    """A completed Futurama S02E15 play (legacy thetvdb guid unless overridden)."""
    kw.setdefault("rating_key", 7015)
    kw.setdefault("stopped", T0 - row_id * DAY)
    kw.setdefault("guid", "com.plexapp.agents.thetvdb://73871/2/15?lang=en")
    return history_row(
        row_id=row_id,
        media_type="episode",
        title="A Clone of My Own",
        show_title="Futurama",
        season=2,
        episode=15,
        grandparent_rating_key=7000,
        **kw,
    )


NEW_MOVIE = "plex://movie/5d7768313c3c2a001fbcab72"
NEW_EPISODE = "plex://episode/5d9c1276e9d5a1001f4ff2fa"


def movie_meta(rating_key: str, guid: str, guids: list[str], **kw: Any) -> dict[str, Any]:
    """get_metadata data of a movie (api_v2_reference.md, "get_metadata")."""
    return {"rating_key": rating_key, "media_type": "movie", "guid": guid, "guids": guids, **kw}


def episode_meta(
    rating_key: str, guid: str, guids: list[str], *, show_rk: str, **kw: Any
) -> dict[str, Any]:
    """get_metadata data of Futurama S02E15 under the show *show_rk*."""
    return {
        "rating_key": rating_key,
        "media_type": "episode",
        "title": "A Clone of My Own",
        "guid": guid,
        "guids": guids,
        "grandparent_rating_key": show_rk,
        "grandparent_title": "Futurama",
        "parent_media_index": "2",
        "media_index": "15",
        **kw,
    }


def show_meta(rating_key: str, title: str, guids: list[str]) -> dict[str, Any]:
    """get_metadata data of a show."""
    return {
        "rating_key": rating_key,
        "media_type": "show",
        "title": title,
        "guid": f"plex://show/{int(rating_key):024x}",
        "guids": guids,
    }


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def outbox(tmp_path: Path) -> AsyncIterator[Outbox]:
    box = await Outbox.open(tmp_path / "outbox.db", providers=["trakt", "simkl"])
    yield box
    await box.close()


async def _run(
    rows: list[dict[str, Any]],
    session: aiohttp.ClientSession,
    outbox: Outbox | None,
    *,
    metadata: dict[str, dict[str, Any]] | None = None,
    users: list[str] | None = None,
    fake_users: list[str] | None = None,
    **kw: Any,
) -> tuple[ImportSummary, FakeTautulli]:
    async with FakeTautulli(
        api_key=KEY, rows=rows, metadata=metadata, users=fake_users or ["alice", "bob"]
    ) as fake:
        client = TautulliClient(session=session, url=fake.url, api_key=KEY)
        summary = await run_import(
            client, outbox, users=["alice"] if users is None else users, **kw
        )
    return summary, fake


async def _events(outbox: Outbox) -> list[tuple[str, str, dict[str, Any], float]]:
    rows = await outbox.fetch_all(
        "SELECT source, account, item, occurred_at FROM events ORDER BY id"
    )
    return [(r[0], r[1], orjson.loads(r[2]), r[3]) for r in rows]


async def _counts(outbox: Outbox) -> tuple[int, int]:
    events = (await outbox.fetch_all("SELECT count(*) FROM events"))[0][0]
    deliveries = (await outbox.fetch_all("SELECT count(*) FROM deliveries"))[0][0]
    return int(events), int(deliveries)


class TestWhatIsImported:
    async def test_only_completed_movie_and_episode_plays_are_enqueued(
        self, session: aiohttp.ClientSession, outbox: Outbox
    ) -> None:
        rows = [
            movie(1),
            episode(2),
            movie(3, watched_status=0.5),
            movie(4, watched_status=0),
            movie(5, media_type="track", title="Song"),
        ]
        summary, _ = await _run(rows, session, outbox)
        assert (summary.plays, summary.skipped_incomplete, summary.skipped_media_type) == (2, 2, 1)
        assert summary.by_kind == {"movie": 1, "episode": 1}
        events = await _events(outbox)
        assert [(src, e["kind"]) for src, _, e, _ in events] == [
            (Source.IMPORT.value, "movie"),
            (Source.IMPORT.value, "episode"),
        ]

    async def test_rewatches_are_separate_plays_at_their_stopped_times(
        self, session: aiohttp.ClientSession, outbox: Outbox
    ) -> None:
        first, second = T0 - 30 * DAY, T0 - 2 * DAY
        rows = [movie(2, rating_key=42, stopped=second), movie(1, rating_key=42, stopped=first)]
        summary, _ = await _run(rows, session, outbox)
        assert summary.enqueued == 2
        assert [at for *_, at in await _events(outbox)] == [second, first]
        assert summary.sample[0].occurred_at == datetime.fromtimestamp(second, UTC)

    async def test_episode_keeps_show_ids_season_and_number_from_the_row(
        self, session: aiohttp.ClientSession, outbox: Outbox
    ) -> None:
        summary, fake = await _run([episode(1)], session, outbox)
        item = (await _events(outbox))[0][2]
        assert (item["show_ids"], item["season"], item["number"]) == ({"tvdb": "73871"}, 2, 15)
        assert item["show_title"] == "Futurama" and item["grandparent_rating_key"] == "7000"
        assert summary.metadata_calls == 0 and not fake.metadata_calls_by_key

    async def test_a_legacy_tvdb_guids_numbering_wins_over_the_rows(
        self, session: aiohttp.ClientSession, outbox: Outbox
    ) -> None:
        """The library numbers the episode S03E04 (DVD order); its thetvdb guid says TVDB's
        S02E15, the numbering that goes with the guid's show id (as webhooks send it)."""
        row = history_row(
            row_id=1,
            media_type="episode",
            title="A Clone of My Own",
            show_title="Futurama",
            season=3,
            episode=4,
            rating_key=7015,
            grandparent_rating_key=7000,
            guid="com.plexapp.agents.thetvdb://73871/2/15?lang=en",
            stopped=T0,
        )
        await _run([row], session, outbox)
        item = (await _events(outbox))[0][2]
        assert (item["show_ids"], item["season"], item["number"]) == ({"tvdb": "73871"}, 2, 15)


class TestMetadata:
    async def test_movie_without_ids_in_its_row_gets_them_from_get_metadata(
        self, session: aiohttp.ClientSession, outbox: Outbox
    ) -> None:
        meta = {"900": movie_meta("900", NEW_MOVIE, ["imdb://tt0090728", "tmdb://6978"])}
        rows = [movie(1, rating_key=900, guid=NEW_MOVIE)]
        await _run(rows, session, outbox, metadata=meta)
        item = (await _events(outbox))[0][2]
        assert item["ids"] == {"imdb": "tt0090728", "tmdb": "6978"}

    async def test_each_rating_key_is_looked_up_once_per_run(
        self, session: aiohttp.ClientSession, outbox: Outbox
    ) -> None:
        meta = {"900": movie_meta("900", NEW_MOVIE, ["imdb://tt0090728"])}  # 901 is gone
        rows = [
            movie(n, rating_key=900 + n % 2, guid=NEW_MOVIE) for n in range(1, 9)
        ]  # four plays each of 900 and 901, over several pages
        summary, fake = await _run(rows, session, outbox, metadata=meta, page_size=3)
        assert dict(fake.metadata_calls_by_key) == {"900": 1, "901": 1}
        assert summary.metadata_calls == 2

    async def test_episode_ids_come_from_metadata_and_show_ids_from_the_grandparent(
        self, session: aiohttp.ClientSession, outbox: Outbox
    ) -> None:
        meta = {
            "7015": episode_meta("7015", NEW_EPISODE, [], show_rk="7000"),
            "7000": show_meta("7000", "Futurama", ["tvdb://73871", "imdb://tt0149460"]),
        }
        rows = [episode(1, guid=NEW_EPISODE)]
        summary, fake = await _run(rows, session, outbox, metadata=meta)
        item = (await _events(outbox))[0][2]
        assert item["show_ids"] == {"imdb": "tt0149460", "tvdb": "73871"}
        assert dict(fake.metadata_calls_by_key) == {"7015": 1, "7000": 1}
        assert summary.unresolved == []

    async def test_episode_with_its_own_ids_needs_no_show_lookup(
        self, session: aiohttp.ClientSession, outbox: Outbox
    ) -> None:
        meta = {"7015": episode_meta("7015", NEW_EPISODE, ["tvdb://163303"], show_rk="7000")}
        rows = [episode(1, guid=NEW_EPISODE)]
        _, fake = await _run(rows, session, outbox, metadata=meta)
        assert (await _events(outbox))[0][2]["ids"] == {"tvdb": "163303"}
        assert dict(fake.metadata_calls_by_key) == {"7015": 1}

    async def test_unresolved_play_is_still_enqueued_and_reported_with_a_reason(
        self, session: aiohttp.ClientSession, outbox: Outbox
    ) -> None:
        rows = [movie(1, rating_key=901, title="Lost Film", year=1999, guid="plex://movie/ab")]
        summary, _ = await _run(rows, session, outbox)
        assert summary.enqueued == 1 and summary.unresolved_plays == 1
        assert summary.unresolved == [
            (
                "Lost Film (1999)",
                "gone from Plex (get_metadata rating_key 901 is empty); guid plex://movie/ab",
            )
        ]


class TestReusedRatingKeys:
    """Old rows' rating_keys may name other items after a library rebuild: such metadata is
    never merged, and the play is reported unresolved with the reason."""

    async def test_metadata_of_another_item_under_the_rows_key_is_not_taken(
        self, session: aiohttp.ClientSession, outbox: Outbox
    ) -> None:
        meta = {"900": movie_meta("900", "plex://movie/5d776b59ad5437001f79c6f8", ["imdb://tt1"])}
        rows = [movie(1, rating_key=900, title="Lost Film", year=1999, guid=NEW_MOVIE)]
        summary, _ = await _run(rows, session, outbox, metadata=meta)
        assert (await _events(outbox))[0][2]["ids"] == {}
        assert summary.unresolved_plays == 1
        label, reason = summary.unresolved[0]
        assert label == "Lost Film (1999)"
        assert reason.startswith("rating_key 900 now belongs to another item")
        assert "guid plex://movie/5d776b59ad5437001f79c6f8" in reason

    async def test_metadata_of_another_media_type_is_not_taken(
        self, session: aiohttp.ClientSession, outbox: Outbox
    ) -> None:
        meta = {"7015": movie_meta("7015", NEW_EPISODE, ["imdb://tt0090728"])}
        rows = [episode(1, guid=NEW_EPISODE)]
        summary, fake = await _run(rows, session, outbox, metadata=meta)
        item = (await _events(outbox))[0][2]
        assert (item["ids"], item["show_ids"]) == ({}, {})
        assert "rating_key 7015 now belongs to another item (a movie" in summary.unresolved[0][1]
        assert dict(fake.metadata_calls_by_key) == {"7015": 1}  # its show was not looked up

    async def test_another_show_under_the_rows_show_key_is_not_taken(
        self, session: aiohttp.ClientSession, outbox: Outbox
    ) -> None:
        """The episode is gone; the row's show key now names another show."""
        meta = {"7000": show_meta("7000", "The Simpsons", ["tvdb://71663"])}
        rows = [episode(1, guid=NEW_EPISODE)]
        summary, _ = await _run(rows, session, outbox, metadata=meta)
        assert (await _events(outbox))[0][2]["show_ids"] == {}
        assert summary.unresolved[0][1].startswith(
            "show rating_key 7000 now belongs to another item (titled 'The Simpsons'"
        )

    async def test_a_confirmed_episode_uses_its_current_show_key(
        self, session: aiohttp.ClientSession, outbox: Outbox
    ) -> None:
        """After a rebuild the episode (same guid) has a new show key; the row's is stale."""
        meta = {
            "7015": episode_meta("7015", NEW_EPISODE, [], show_rk="8000"),
            "8000": show_meta("8000", "Futurama", ["tvdb://73871"]),
            "7000": show_meta("7000", "The Simpsons", ["tvdb://71663"]),
        }
        rows = [episode(1, guid=NEW_EPISODE)]
        summary, fake = await _run(rows, session, outbox, metadata=meta)
        assert (await _events(outbox))[0][2]["show_ids"] == {"tvdb": "73871"}
        assert dict(fake.metadata_calls_by_key) == {"7015": 1, "8000": 1}
        assert summary.unresolved == []


class TestServerScope:
    """Plex ratingKeys name an item on one server: an imported play carries the server
    Tautulli watches, so it dedupes against a webhook's play of that server's ratingKey, and
    never against another server's."""

    SERVER = "ds48g4r354a8v9byrrtr697g3g79w"  # FakeTautulli's default machine_identifier

    @staticmethod
    def webhook_play(server: str) -> PlayEvent:
        """A webhook's play of a movie known only by ratingKey 901 (no ids anywhere)."""
        item = Item(
            kind=MediaKind.MOVIE,
            title="Lost Film",
            rating_key="901",
            guid="plex://movie/ab",
            server=server,
        )
        at = datetime.fromtimestamp(T0 - DAY, UTC)
        return PlayEvent(Source.PLEX, Action.WATCHED, "alice", item, at)

    async def test_imported_plays_carry_the_plex_server_tautulli_watches(
        self, session: aiohttp.ClientSession, outbox: Outbox
    ) -> None:
        summary, fake = await _run([movie(1), episode(2)], session, outbox)
        items = [e for _, _, e, _ in await _events(outbox)]
        assert [i["server"] for i in items] == [fake.machine_identifier] * 2
        assert summary.notes == []

    async def test_without_a_server_identity_the_plays_are_unscoped_and_a_note_says_so(
        self, session: aiohttp.ClientSession, outbox: Outbox
    ) -> None:
        async with FakeTautulli(
            api_key=KEY, rows=[movie(1)], users=["alice"], machine_identifier=" "
        ) as fake:
            client = TautulliClient(session=session, url=fake.url, api_key=KEY)
            summary = await run_import(client, outbox, users=["alice"])
        assert (await _events(outbox))[0][2]["server"] is None
        assert "names no Plex server" in summary.notes[0]

    async def test_a_play_on_the_same_server_and_rating_key_is_one_play(
        self, session: aiohttp.ClientSession, outbox: Outbox
    ) -> None:
        await outbox.enqueue(self.webhook_play(self.SERVER))
        rows = [movie(1, rating_key=901, title="Lost Film", guid="plex://movie/ab")]
        summary, _ = await _run(rows, session, outbox)
        assert (summary.enqueued, summary.already_known) == (0, 1)

    async def test_the_same_rating_key_on_another_server_is_another_play(
        self, session: aiohttp.ClientSession, outbox: Outbox
    ) -> None:
        await outbox.enqueue(self.webhook_play("another-plex-server"))
        rows = [movie(1, rating_key=901, title="Lost Film", guid="plex://movie/ab")]
        summary, _ = await _run(rows, session, outbox)
        assert (summary.enqueued, summary.already_known) == (1, 0)
        assert (await _counts(outbox))[0] == 2


class TestIdempotence:
    async def test_re_running_enqueues_nothing_new(
        self, session: aiohttp.ClientSession, outbox: Outbox
    ) -> None:
        rows = [movie(1), movie(2), episode(3)]
        first, _ = await _run(rows, session, outbox)
        deliveries = (await _counts(outbox))[1]
        second, _ = await _run(rows, session, outbox)
        assert (first.enqueued, second.enqueued, second.already_known) == (3, 0, 3)
        assert (await _counts(outbox))[1] == deliveries

    async def test_dry_run_writes_nothing(
        self, session: aiohttp.ClientSession, outbox: Outbox
    ) -> None:
        await _run([movie(1)], session, outbox)
        before = await _counts(outbox)
        summary, _ = await _run([movie(1), movie(2)], session, outbox, dry_run=True)
        assert await _counts(outbox) == before
        assert (summary.enqueued, summary.already_known) == (1, 1)

    async def test_dry_run_counts_exactly_what_a_real_run_then_enqueues(
        self, session: aiohttp.ClientSession, outbox: Outbox
    ) -> None:
        """Including plays the import itself repeats within the dedupe window (a play
        Tautulli split into two rows an hour apart), not only plays the outbox already has."""
        await _run([movie(1)], session, outbox)
        rows = [
            movie(1),
            movie(2),
            movie(3),
            movie(4, rating_key=5003, stopped=T0 - 3 * DAY + 3600),
        ]
        dry, _ = await _run(rows, session, outbox, dry_run=True)
        real, _ = await _run(rows, session, outbox)
        assert (dry.enqueued, dry.already_known) == (real.enqueued, real.already_known) == (2, 2)

    async def test_dry_run_report_lists_sample_and_unresolved_with_reasons(
        self, session: aiohttp.ClientSession
    ) -> None:
        rows = [movie(1, title="Barry Lyndon"), movie(2, rating_key=901, guid="plex://movie/ab")]
        summary, _ = await _run(rows, session, None, dry_run=True)
        report = format_summary(summary, dry_run=True)
        assert "Barry Lyndon (1975)" in report and "imdb=tt0072684" in report
        assert "gone from Plex (get_metadata rating_key 901 is empty)" in report
        assert report.splitlines()[-1].startswith("dry run: 2 would be enqueued of 2 plays")

    async def test_real_run_report_ends_with_one_summary_line(
        self, session: aiohttp.ClientSession, outbox: Outbox
    ) -> None:
        summary, _ = await _run([movie(1), movie(2, watched_status=0)], session, outbox)
        last = format_summary(summary, dry_run=False).splitlines()[-1]
        assert last == "import: 1 enqueued of 1 plays, 0 already known, 0 unresolved, 2 rows read"


class TestFilters:
    async def test_since_keeps_only_plays_from_that_day(
        self, session: aiohttp.ClientSession, outbox: Outbox
    ) -> None:
        rows = [movie(1, stopped=T0), movie(2, stopped=T0 - 400 * DAY)]
        summary, fake = await _run(rows, session, outbox, since=date(2025, 1, 1))
        assert summary.plays == 1 and fake.requests[-1]["after"] == "2025-01-01"
        assert [at for *_, at in await _events(outbox)] == [T0]

    async def test_single_user_is_filtered_by_tautulli(
        self, session: aiohttp.ClientSession, outbox: Outbox
    ) -> None:
        rows = [movie(1, user="alice"), movie(2, user="bob")]
        summary, fake = await _run(rows, session, outbox, users=["alice"])
        assert [a for _, a, *_ in await _events(outbox)] == ["alice"]
        assert fake.requests[-1]["user"] == "alice" and summary.rows_seen == 1

    async def test_other_accounts_are_skipped(
        self, session: aiohttp.ClientSession, outbox: Outbox
    ) -> None:
        rows = [movie(1, user="alice"), movie(2, user="bob"), movie(3, user="carol")]
        summary, _ = await _run(
            rows, session, outbox, users=["alice", "carol"], fake_users=["alice", "bob", "carol"]
        )
        assert sorted(a for _, a, *_ in await _events(outbox)) == ["alice", "carol"]
        assert summary.skipped_user == 1

    async def test_without_an_account_filter_the_error_lists_the_servers_users(
        self, session: aiohttp.ClientSession, outbox: Outbox
    ) -> None:
        with pytest.raises(ConfigError) as info:
            await _run([movie(1)], session, outbox, users=[])
        assert info.value.key == "tautulli.users" and "alice, bob" in str(info.value)
        assert await _counts(outbox) == (0, 0)

    async def test_unknown_user_is_noted(
        self, session: aiohttp.ClientSession, outbox: Outbox
    ) -> None:
        summary, _ = await _run([movie(1)], session, outbox, users=["alcie"])
        assert summary.plays == 0 and "'alcie' is not a Tautulli user" in summary.notes[0]


class TestPaging:
    async def test_every_page_is_read_to_the_end(
        self, session: aiohttp.ClientSession, outbox: Outbox
    ) -> None:
        seen: list[tuple[int, int]] = []
        rows = [movie(n) for n in range(1, 8)]
        summary, _ = await _run(
            rows, session, outbox, page_size=3, progress=lambda a, b: seen.append((a, b))
        )
        assert (summary.pages, summary.plays, summary.safety_stop) == (3, 7, None)
        assert seen == [(3, 7), (6, 7), (7, 7)]

    async def test_a_repeated_page_stops_paging(
        self, session: aiohttp.ClientSession, outbox: Outbox
    ) -> None:
        rows = [movie(n) for n in range(1, 8)]
        async with FakeTautulli(api_key=KEY, rows=rows, users=["alice"]) as fake:
            fake.repeat_page = True
            client = TautulliClient(session=session, url=fake.url, api_key=KEY)
            summary = await run_import(client, outbox, users=["alice"], page_size=3)
        assert summary.pages == 2 and summary.plays == 3
        assert summary.safety_stop is not None and "already seen" in summary.safety_stop

    async def test_the_page_cap_stops_paging(
        self, session: aiohttp.ClientSession, outbox: Outbox
    ) -> None:
        rows = [movie(n) for n in range(1, 8)]
        summary, _ = await _run(rows, session, outbox, page_size=2, page_cap=2)
        assert (summary.pages, summary.plays) == (2, 4)
        assert summary.safety_stop == "stopped after 2 pages (page cap)"

    async def test_generated_history_imports_with_one_lookup_per_key(
        self, session: aiohttp.ClientSession, outbox: Outbox
    ) -> None:
        history = make_rows(3000)
        async with FakeTautulli(api_key=KEY, rows=history.rows, users=["alice", "bob"]) as fake:
            client = TautulliClient(session=session, url=fake.url, api_key=KEY)
            summary = await run_import(client, outbox, users=["alice", "bob"], page_size=500)
        assert summary.plays == history.completed_plays(["alice", "bob"])
        assert max(fake.metadata_calls_by_key.values()) == 1
        assert summary.metadata_calls == len(fake.metadata_calls_by_key) > 0


class TestFailures:
    async def test_wrong_api_key_fails_before_anything_is_written(
        self, session: aiohttp.ClientSession, outbox: Outbox
    ) -> None:
        async with FakeTautulli(api_key=KEY, rows=[movie(1)], users=["alice"]) as fake:
            client = TautulliClient(session=session, url=fake.url, api_key="x" * 32)
            with pytest.raises(SourceUnavailableError, match="Invalid apikey"):
                await run_import(client, outbox, users=["alice"])
        assert await _counts(outbox) == (0, 0)

    async def test_html_page_mid_import_raises_and_keeps_earlier_pages(
        self, session: aiohttp.ClientSession, outbox: Outbox
    ) -> None:
        rows = [movie(n) for n in range(1, 6)]
        async with FakeTautulli(api_key=KEY, rows=rows, users=["alice"]) as fake:
            client = TautulliClient(session=session, url=fake.url, api_key=KEY)

            def flip(done: int, total: int) -> None:
                fake.html_mode = True  # the reverse proxy session expires after page 1

            with pytest.raises(SourceUnavailableError, match="HTML page"):
                await run_import(client, outbox, users=["alice"], page_size=2, progress=flip)
        assert (await _counts(outbox))[0] == 2


class TestHamaRows:
    """Rows of HAMA libraries are judged by the Anime-Lists mapping, as the daemon will map
    them: what it maps is not unresolved, what it cannot map says why (no get_metadata)."""

    @staticmethod
    def hama(row_id: int, anidb: str, season: int, number: int) -> dict[str, Any]:
        return episode(
            row_id,
            guid=f"com.plexapp.agents.hama://anidb-{anidb}/{season}/{number}?lang=en",
            rating_key=8000 + row_id,
        )

    @pytest.fixture
    async def lists(
        self, session: aiohttp.ClientSession, tmp_path: Path
    ) -> AsyncIterator[AnimeListStore]:
        async with FakeAnimeLists(anime_list_xml(REAL_ROWS)) as host:
            store = AnimeListStore(session=session, directory=tmp_path / "anime", url=host.url)
            await store.ensure()
            yield store

    async def test_mapped_and_unmapped_anidb_plays(
        self, session: aiohttp.ClientSession, outbox: Outbox, lists: AnimeListStore
    ) -> None:
        rows = [self.hama(1, "14444", 1, 3), self.hama(2, "17290", 1, 1)]

        summary, _ = await _run(rows, session, outbox, anime=lists)

        assert (summary.plays, summary.enqueued, summary.unresolved_plays) == (2, 2, 1)
        assert summary.unresolved == [
            ("Futurama S01E01", "AniDB 17290 is not in the Anime-Lists mapping")
        ]
        assert summary.metadata_calls == 0  # Plex metadata cannot map AniDB numbering

    async def test_plays_wait_while_no_list_can_be_had(
        self, session: aiohttp.ClientSession, outbox: Outbox, tmp_path: Path
    ) -> None:
        async with FakeAnimeLists(anime_list_xml(REAL_ROWS)) as host:
            host.fail_status = 503
            store = AnimeListStore(session=session, directory=tmp_path / "a", url=host.url)
            await store.ensure()
            summary, _ = await _run([self.hama(1, "17290", 1, 1)], session, outbox, anime=store)

        assert (summary.enqueued, summary.unresolved_plays, summary.anime_waiting) == (1, 0, 1)
        assert any("wait for the Anime-Lists mapping" in note for note in summary.notes)
