"""End to end: plays from HAMA (AniDB) libraries reach Trakt and SIMKL as the right show,
season and episode, through the real daemon, the fake list host and both fake targets.

Webhooks are the real Plex captures (``tests/fixtures/plex``: the legacy-agent episode and
movie) with a HAMA GUID put in, each with its own ratingKeys. The list holds the real rows of
the reference's worked examples (``tests.fakes.animelists.REAL_ROWS``).
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from crosswatchd.tokens import TokenStore
from tests.e2e_support import FIXTURES, Daemon, free_port, post_webhook, wait_for, write_config
from tests.fakes.animelists import REAL_ROWS, AnimeRow, FakeAnimeLists, anime_list_xml
from tests.fakes.catalog import Catalog, default_catalog
from tests.fakes.simkl import FakeSimkl
from tests.fakes.trakt import FakeTrakt

HAMA = "com.plexapp.agents.hama://"
LIST_V1 = anime_list_xml(REAL_ROWS)
#: The next week's list: it has a row for AniDB 17290 (constructed ids).
LIST_V2 = anime_list_xml([*REAL_ROWS, AnimeRow(17290, tvdbid="418367", defaulttvdbseason="1")])


def episode_webhook(n: int, guid: str, season: int, number: int, show: str) -> dict[str, Any]:
    """The real legacy-agent episode capture, finished, as HAMA item number *n*."""
    payload = orjson.loads(
        (FIXTURES / "episode_media.pause_legacy-agent_thetvdb_futurama.json").read_bytes()
    )
    payload["event"] = "media.scrobble"
    payload["Metadata"].update(
        guid=guid,
        ratingKey=str(700_000 + n),
        key=f"/library/metadata/{700_000 + n}",
        grandparentRatingKey=str(600_000 + n),
        parentIndex=season,
        index=number,
        grandparentTitle=show,
        title=f"{show} episode",
    )
    return payload


def movie_webhook(n: int, guid: str, title: str) -> dict[str, Any]:
    """The real legacy-agent movie capture, finished, as HAMA item number *n*."""
    payload = orjson.loads(
        (FIXTURES / "movie_media.stop_legacy-agent_imdb_barry-lyndon.json").read_bytes()
    )
    payload["event"] = "media.scrobble"
    payload["Metadata"].update(
        guid=guid, ratingKey=str(700_000 + n), key=f"/library/metadata/{700_000 + n}", title=title
    )
    return payload


@dataclass(frozen=True)
class Case:
    """One HAMA webhook and where it must land: ``(tvdb, season, number)`` or a movie's imdb."""

    name: str
    payload: dict[str, Any]
    expected: tuple[int, int, int] | str | None


def cases() -> list[Case]:
    return [
        # WE1 plain season, WE2 episodeoffset, WE3 special through the mapping-list.
        Case(
            "plain",
            episode_webhook(1, f"{HAMA}anidb-15207/1/5?lang=en", 1, 5, "Kaguya-sama"),
            (354198, 2, 5),
        ),
        Case(
            "episodeoffset",
            episode_webhook(2, f"{HAMA}anidb-14444/1/3?lang=en", 1, 3, "Shingeki no Kyojin S3"),
            (267440, 3, 15),
        ),
        Case(
            "special",
            episode_webhook(3, f"{HAMA}anidb-9541/0/7?lang=en", 0, 7, "Shingeki no Kyojin"),
            (267440, 0, 8),
        ),
        # Super Dragon Ball Heroes: episode 3 is numbered absolutely (ranges start at 7).
        Case(
            "absolute",
            episode_webhook(4, f"{HAMA}anidb-14086/1/3?lang=en", 1, 3, "SDBH"),
            (347734, 1, 3),
        ),
        Case("film", movie_webhook(5, f"{HAMA}anidb-11829?lang=en", "Kimi no Na wa."), "tt5311514"),
        Case(
            "tvdb guid",
            episode_webhook(6, f"{HAMA}tvdb-81797/22/70?lang=en", 22, 70, "One Piece"),
            (81797, 22, 70),
        ),
        Case(
            "missing",
            episode_webhook(7, f"{HAMA}anidb-17290/1/1?lang=en", 1, 1, "New Show"),
            None,
        ),
    ]


def catalog(*, rezero_on_tvdb_numbering: bool = True) -> Catalog:
    """The default items plus what the list maps to. Re:Zero (WE7) is TVDB S02E14 by the
    list; a catalogue built with ``rezero_on_tvdb_numbering=False`` has moved that show to
    other numbering (as Trakt has done with some anime), so it lacks that episode."""
    cat = default_catalog()
    kaguya = cat.add_show("Kaguya-sama: Love Is War", 2019, anime=True, tvdb=354198)
    cat.add_episode(kaguya, 2, 5)
    aot = cat.add_show("Attack on Titan", 2013, anime=True, tvdb=267440, imdb="tt2560140")
    for season, number in ((3, 15), (3, 16), (0, 8)):
        cat.add_episode(aot, season, number)
    sdbh = cat.add_show("Super Dragon Ball Heroes", 2018, anime=True, tvdb=347734)
    for number in range(1, 7):
        cat.add_episode(sdbh, 1, number, number_abs=number)
    one_piece = cat.add_show("One Piece", 1999, anime=True, tvdb=81797)
    cat.add_episode(one_piece, 22, 70)
    cat.add_movie("Your Name.", 2016, imdb="tt5311514", tmdb=372058)
    rezero = cat.add_show("Re:ZERO", 2016, anime=True, tvdb=305089)
    if rezero_on_tvdb_numbering:
        cat.add_episode(rezero, 2, 14)
    else:
        cat.add_episode(rezero, 1, 39)
    new = cat.add_show("New Show", 2026, anime=True, tvdb=418367)
    cat.add_episode(new, 1, 1)
    return cat


def trakt_plays(fake: FakeTrakt) -> Counter[tuple[int, int, int] | str]:
    out: Counter[tuple[int, int, int] | str] = Counter()
    for h in fake.history:
        if h["type"] == "movie":
            out[h["movie"]["ids"]["imdb"]] += 1
        else:
            ep = h["episode"]
            out[(h["show"]["ids"]["tvdb"], ep["season"], ep["number"])] += 1
    return out


def simkl_plays(fake: FakeSimkl) -> Counter[tuple[int, int, int] | str]:
    out: Counter[tuple[int, int, int] | str] = Counter()
    for h in fake.history:
        if h["type"] == "movie":
            out[h["ids"]["imdb"]] += 1
        else:
            # Which show the fake matched (its catalogue tvdb id), and what was sent for it.
            show = fake.catalog.show({"simkl": h["simkl"]})
            assert show is not None
            assert "anidb" not in (h["show_ids"] or {}), h
            out[(show["ids"]["tvdb"], h["season"], h["number"])] += 1
    return out


async def crosswatchd(config: Path, *args: str) -> Any:
    """``crosswatchd --config CONFIG ARGS`` (a JSON-printing command); its parsed output."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "crosswatchd.cli",
        "--config",
        str(config),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return orjson.loads(out)


@dataclass
class World:
    trakt: FakeTrakt
    simkl: FakeSimkl
    lists: FakeAnimeLists
    daemon: Daemon
    config: Path


@pytest.fixture
async def world(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[World]:
    options: dict[str, Any] = getattr(request, "param", {})
    async with (
        FakeTrakt(catalog=catalog(rezero_on_tvdb_numbering=False)) as trakt,
        FakeSimkl(catalog=catalog()) as simkl,
        FakeAnimeLists(LIST_V1) as lists,
    ):
        data_dir = tmp_path / "data"
        TokenStore(data_dir, "trakt").save(trakt.issue_token())
        TokenStore(data_dir, "simkl").save({"access_token": simkl.issue_token()})
        port = free_port()
        config = write_config(
            tmp_path / "crosswatchd.toml",
            data_dir=data_dir,
            port=port,
            trakt=trakt,
            simkl=simkl,
            use_search=True,  # Trakt's id search places the absolutely numbered episode
            anime_url=lists.url,
            **options,
        )
        daemon = Daemon(config, port, tmp_path / "daemon.log")
        try:
            yield World(trakt, simkl, lists, daemon, config)
        finally:
            if daemon.proc is not None and daemon.proc.poll() is None:
                daemon.proc.kill()
                daemon.proc.wait()


async def post_all(port: int, payloads: list[dict[str, Any]]) -> None:
    async with aiohttp.ClientSession() as http:
        for payload in payloads:
            assert await post_webhook(http, port, payload) == 202


async def test_hama_plays_land_once_on_both_targets_and_the_list_is_downloaded_once(
    world: World,
) -> None:
    trakt, simkl, lists, daemon = world.trakt, world.simkl, world.lists, world.daemon
    all_cases = cases()
    rezero = episode_webhook(8, f"{HAMA}anidb-15593/1/1?lang=en", 1, 1, "Re:Zero 2021")
    await daemon.start()
    await post_all(daemon.port, [c.payload for c in all_cases] + [rezero])

    landing = [c.expected for c in all_cases if c.expected is not None]
    await wait_for(lambda: len(trakt_plays(trakt)) >= len(landing), 30, "Trakt")
    await wait_for(lambda: len(simkl_plays(simkl)) >= len(landing) + 1, 30, "SIMKL")

    # The missing id parks on both targets, the TVDB/Trakt disagreement on Trakt only.
    async def parked() -> list[dict[str, Any]]:
        report = await crosswatchd(world.config, "status", "--json")
        return list(report["problems"])

    problems: list[dict[str, Any]] = []
    for _ in range(100):
        problems = await parked()
        if len(problems) >= 3:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)  # any (wrong) duplicate or late send would arrive by now
    assert trakt_plays(trakt) == Counter(landing)
    assert simkl_plays(simkl) == Counter([*landing, (305089, 2, 14)])
    absolute = next(
        h for h in trakt.history if h["type"] == "episode" and h["show"]["ids"]["tvdb"] == 347734
    )
    assert absolute["episode"]["number"] == 3

    by_target = {(p["provider"], p["kind"]): p["reason"] for p in problems}
    missing = "anime: AniDB 17290 is not in the Anime-Lists mapping"
    assert by_target[("trakt", "unresolved")] == missing
    assert by_target[("simkl", "unresolved")] == missing
    assert by_target[("trakt", "not_found")] == (
        "trakt does not know this item (not_found): AniDB 15593 episode 1 is TVDB 305089 S02E14"
        " in the Anime-Lists mapping; trakt may number this show or film differently"
    )
    report = await crosswatchd(world.config, "status", "--json")
    counts = report["providers"]
    assert (counts["trakt"]["unresolved"], counts["trakt"]["parked"]) == (1, 1)
    assert (counts["simkl"]["unresolved"], counts["simkl"]["pending"]) == (1, 0)
    assert report["anime"]["stored"] is True
    rows = await crosswatchd(world.config, "unresolved", "list", "--json")
    assert sorted((r["provider"], r["reason"]) for r in rows) == [
        ("simkl", missing),
        ("trakt", missing),
    ]

    # Restart: the stored copy is used as it is (validated less than refresh_s ago).
    assert daemon.stop() == 0
    assert (lists.full_responses, lists.requests_count) == (1, 1)
    await daemon.start()
    await post_all(
        daemon.port,
        [episode_webhook(9, f"{HAMA}anidb-14444/1/4?lang=en", 1, 4, "Shingeki no Kyojin S3")],
    )
    await wait_for(lambda: (267440, 3, 16) in trakt_plays(trakt), 30, "Trakt after restart")
    await wait_for(lambda: (267440, 3, 16) in simkl_plays(simkl), 30, "SIMKL after restart")
    assert lists.requests_count == 1
    assert trakt.rate_limited == 0 and not simkl.rate_limited
    assert daemon.stop() == 0


@pytest.mark.parametrize("world", [{"anime_refresh_s": 1.0}], indirect=True)
async def test_a_new_list_delivers_what_the_old_one_parked(world: World) -> None:
    trakt, simkl, lists, daemon = world.trakt, world.simkl, world.lists, world.daemon
    missing = next(c for c in cases() if c.name == "missing")
    await daemon.start()
    await post_all(daemon.port, [missing.payload])

    async def unresolved() -> int:
        report = await crosswatchd(world.config, "status", "--json")
        return sum(int(p["unresolved"]) for p in report["providers"].values())

    for _ in range(100):
        if await unresolved() == 2:
            break
        await asyncio.sleep(0.1)
    assert await unresolved() == 2
    assert lists.full_responses == 1  # revalidated every second since: 304s

    lists.publish(LIST_V2)
    await wait_for(lambda: (418367, 1, 1) in trakt_plays(trakt), 30, "Trakt")
    await wait_for(lambda: (418367, 1, 1) in simkl_plays(simkl), 30, "SIMKL")
    assert lists.full_responses == 2 and lists.not_modified >= 1
    await asyncio.sleep(1.0)
    assert trakt_plays(trakt) == Counter([(418367, 1, 1)])
    assert simkl_plays(simkl) == Counter([(418367, 1, 1)])
    assert await unresolved() == 0
    assert daemon.stop() == 0


RETRY_S = 1.5


@pytest.mark.parametrize("world", [{"anime_retry_s": RETRY_S}], indirect=True)
async def test_list_down_at_first_start_then_back(world: World) -> None:
    """AniDB plays are accepted and wait (pending, not unresolved) while no list can be had;
    a HAMA tvdb-N/S/E play needs none and is not held up; the waiting play goes out within
    retry_s and a few seconds of the list host answering again."""
    trakt, simkl, lists, daemon = world.trakt, world.simkl, world.lists, world.daemon
    lists.fail_status = 503
    by_name = {c.name: c for c in cases()}
    await daemon.start()
    await post_all(daemon.port, [by_name["episodeoffset"].payload, by_name["tvdb guid"].payload])

    await wait_for(lambda: (81797, 22, 70) in trakt_plays(trakt), 30, "the tvdb play on Trakt")
    await wait_for(lambda: (81797, 22, 70) in simkl_plays(simkl), 30, "the tvdb play on SIMKL")
    await wait_for(lambda: lists.failures >= 2, 10, "the store retrying")
    report = await crosswatchd(world.config, "status", "--json")
    for target in ("trakt", "simkl"):
        counts = report["providers"][target]
        assert (counts["pending"], counts["unresolved"], counts["dead"]) == (1, 0, 0), counts
        assert (
            "Anime-Lists mapping is not available yet (HTTP 503)" in counts["backlog"]["last_error"]
        )
    assert report["anime"]["stored"] is False
    assert report["anime"]["last_attempt"]["error"] == "HTTP 503"

    lists.fail_status = None
    back = asyncio.get_running_loop().time()
    await wait_for(lambda: (267440, 3, 15) in trakt_plays(trakt), RETRY_S + 10, "Trakt")
    await wait_for(lambda: (267440, 3, 15) in simkl_plays(simkl), RETRY_S + 10, "SIMKL")
    assert asyncio.get_running_loop().time() - back < RETRY_S + 5
    assert lists.full_responses == 1
    assert trakt_plays(trakt) == Counter([(81797, 22, 70), (267440, 3, 15)])
    assert daemon.stop() == 0
