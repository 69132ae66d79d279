"""The fake Plex Media Server and the fake Plex Discover / plex.tv keep to the reference
(shared/reference/plex/README.md, discover-watchlist.md) and to what PMS is known to return.

Plain aiohttp requests, no crosswatchd code: what a client sees on the wire.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict

from tests.fakes.catalog import Catalog, default_catalog
from tests.fakes.discover import FakeDiscover
from tests.fakes.plex_server import FakePlexServer

OWNER_TOKEN = "owner-token"
SAM_ID = 238960586
JSON = {"Accept": "application/json"}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def get(
    http: aiohttp.ClientSession,
    url: str,
    *,
    token: str | None,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    json_reply: bool = True,
) -> tuple[int, Any, Mapping[str, str]]:
    sent = {**(JSON if json_reply else {}), **(headers or {})}
    if token is not None:
        sent["X-Plex-Token"] = token
    async with http.get(url, params=params, headers=sent) as resp:
        raw = await resp.read()
        received = CIMultiDict(resp.headers)  # header names are case-insensitive
        if resp.content_type == "application/json":
            return resp.status, await resp.json(), received
        return resp.status, raw.decode(), received


# =========================================================================== media server


@pytest.fixture
async def plex() -> AsyncIterator[FakePlexServer]:
    async with FakePlexServer(token=OWNER_TOKEN, owner="alex") as server:
        server.add_movie("100", "Barry Lyndon", 1975, ["imdb://tt0072684", "tmdb://3175"])
        server.add_movie("101", "Big Trouble in Little China", 1986, ["imdb://tt0090728"])
        server.add_show("200", "Futurama", 1999, ["tvdb://73871"])
        server.add_episode("215", "200", 2, 15, ["tvdb://163303"], title="A Clone of My Own")
        yield server


class TestPlexHistory:
    async def test_pages_by_container_headers_with_total_size(
        self, plex: FakePlexServer, http: aiohttp.ClientSession
    ) -> None:
        """X-Plex-Container-Start/Size headers page the history; totalSize and offset say
        where the page is."""
        for n in range(5):
            plex.add_play("100", viewed_at=1_700_000_000 + n)
        paging = {"X-Plex-Container-Start": "2", "X-Plex-Container-Size": "2"}

        _, body, _ = await get(
            http, plex.url + "/status/sessions/history/all", token=OWNER_TOKEN, headers=paging
        )

        page = body["MediaContainer"]
        assert (page["size"], page["totalSize"], page["offset"]) == (2, 5, 2)
        assert [r["viewedAt"] for r in page["Metadata"]] == [1_700_000_002, 1_700_000_003]

    async def test_pages_by_query_parameters_too(
        self, plex: FakePlexServer, http: aiohttp.ClientSession
    ) -> None:
        """The same paging works as query parameters."""
        for n in range(3):
            plex.add_play("100", viewed_at=1_700_000_000 + n)
        params = {
            "X-Plex-Container-Start": "0",
            "X-Plex-Container-Size": "1",
            "sort": "viewedAt:desc",
        }

        _, body, _ = await get(
            http, plex.url + "/status/sessions/history/all", token=OWNER_TOKEN, params=params
        )

        rows = body["MediaContainer"]["Metadata"]
        assert [r["viewedAt"] for r in rows] == [1_700_000_002]
        assert body["MediaContainer"]["totalSize"] == 3

    async def test_episode_rows_carry_account_viewed_at_and_the_show_key(
        self, plex: FakePlexServer, http: aiohttp.ClientSession
    ) -> None:
        """A row: accountID, viewedAt, ratingKey, type, and the show as grandparentKey
        (/library/metadata/<show ratingKey>), grandparentTitle, parentIndex/index."""
        plex.add_account(SAM_ID, "sam")
        plex.add_play("215", account_id=SAM_ID, viewed_at=1_700_000_500)

        _, body, _ = await get(http, plex.url + "/status/sessions/history/all", token=OWNER_TOKEN)

        (row,) = body["MediaContainer"]["Metadata"]
        assert (row["accountID"], row["viewedAt"], row["ratingKey"], row["type"]) == (
            SAM_ID,
            1_700_000_500,
            "215",
            "episode",
        )
        assert (row["grandparentKey"], row["parentIndex"], row["index"]) == (
            "/library/metadata/200",
            2,
            15,
        )

    async def test_filters_by_account_and_viewed_at(
        self, plex: FakePlexServer, http: aiohttp.ClientSession
    ) -> None:
        """accountID= and viewedAt>= (python-plexapi's mindate) select rows."""
        plex.add_account(SAM_ID, "sam")
        plex.add_play("100", account_id=1, viewed_at=1_700_000_000)
        plex.add_play("101", account_id=SAM_ID, viewed_at=1_700_000_100)
        plex.add_play("100", account_id=SAM_ID, viewed_at=1_700_000_200)

        _, body, _ = await get(
            http,
            plex.url + "/status/sessions/history/all",
            token=OWNER_TOKEN,
            params={"accountID": str(SAM_ID), "viewedAt>": "1700000150"},
        )

        assert [r["ratingKey"] for r in body["MediaContainer"]["Metadata"]] == ["100"]

    async def test_a_shared_users_token_sees_only_their_plays(
        self, plex: FakePlexServer, http: aiohttp.ClientSession
    ) -> None:
        """The owner's token lists every account's plays; sam's token only sam's."""
        sam = plex.add_account(SAM_ID, "sam")
        plex.add_play("100", account_id=1, viewed_at=1_700_000_000)
        plex.add_play("101", account_id=SAM_ID, viewed_at=1_700_000_100)

        _, everyone, _ = await get(
            http, plex.url + "/status/sessions/history/all", token=OWNER_TOKEN
        )
        _, own, _ = await get(http, plex.url + "/status/sessions/history/all", token=sam)

        assert everyone["MediaContainer"]["size"] == 2
        assert [r["accountID"] for r in own["MediaContainer"]["Metadata"]] == [SAM_ID]

    async def test_unknown_token_is_401(
        self, plex: FakePlexServer, http: aiohttp.ClientSession
    ) -> None:
        """X-Plex-Token must be an account's token."""
        status, _, _ = await get(http, plex.url + "/status/sessions/history/all", token="nope")

        assert status == 401

    async def test_without_accept_json_the_reply_is_xml(
        self, plex: FakePlexServer, http: aiohttp.ClientSession
    ) -> None:
        """JSON only with Accept: application/json; otherwise a MediaContainer in XML."""
        plex.add_play("100", viewed_at=1_700_000_000)

        _, text, _ = await get(
            http, plex.url + "/status/sessions/history/all", token=OWNER_TOKEN, json_reply=False
        )

        root = ET.fromstring(text)
        assert root.tag == "MediaContainer" and root[0].get("ratingKey") == "100"


class TestPlexLibrary:
    async def test_accounts_map_ids_to_names(
        self, plex: FakePlexServer, http: aiohttp.ClientSession
    ) -> None:
        """/accounts: Account[] with id, key and name (the owner is 1)."""
        plex.add_account(SAM_ID, "sam")

        _, body, _ = await get(http, plex.url + "/accounts", token=OWNER_TOKEN)

        names = {a["id"]: a["name"] for a in body["MediaContainer"]["Account"]}
        assert names[1] == "alex" and names[SAM_ID] == "sam"

    async def test_sections_are_listed_as_directories(
        self, plex: FakePlexServer, http: aiohttp.ClientSession
    ) -> None:
        """/library/sections: Directory[] with string keys and their type."""
        _, body, _ = await get(http, plex.url + "/library/sections", token=OWNER_TOKEN)

        assert [(d["key"], d["type"]) for d in body["MediaContainer"]["Directory"]] == [
            ("1", "movie"),
            ("2", "show"),
        ]

    async def test_section_items_show_the_tokens_own_view_state(
        self, plex: FakePlexServer, http: aiohttp.ClientSession
    ) -> None:
        """viewCount, lastViewedAt and userRating are the requesting account's."""
        sam = plex.add_account(SAM_ID, "sam")
        plex.add_play("100", account_id=SAM_ID, viewed_at=1_700_000_000)
        plex.rate("100", 8.0, account_id=SAM_ID, rated_at=1_700_000_010)

        _, mine, _ = await get(http, plex.url + "/library/sections/1/all", token=sam)
        _, owners, _ = await get(http, plex.url + "/library/sections/1/all", token=OWNER_TOKEN)

        barry = next(m for m in mine["MediaContainer"]["Metadata"] if m["ratingKey"] == "100")
        assert (barry["viewCount"], barry["lastViewedAt"], barry["userRating"]) == (
            1,
            1_700_000_000,
            8.0,
        )
        owner_barry = next(
            m for m in owners["MediaContainer"]["Metadata"] if m["ratingKey"] == "100"
        )
        assert "viewCount" not in owner_barry and "userRating" not in owner_barry

    async def test_marking_watched_by_hand_adds_no_history_row(
        self, plex: FakePlexServer, http: aiohttp.ClientSession
    ) -> None:
        """mark_watched sets viewCount/lastViewedAt; the history stays empty."""
        plex.mark_watched("101", viewed_at=1_700_000_000)

        _, items, _ = await get(http, plex.url + "/library/sections/1/all", token=OWNER_TOKEN)
        _, history, _ = await get(
            http, plex.url + "/status/sessions/history/all", token=OWNER_TOKEN
        )

        big = next(m for m in items["MediaContainer"]["Metadata"] if m["ratingKey"] == "101")
        assert (big["viewCount"], big["lastViewedAt"]) == (1, 1_700_000_000)
        assert history["MediaContainer"]["size"] == 0

    async def test_guids_only_with_include_guids(
        self, plex: FakePlexServer, http: aiohttp.ClientSession
    ) -> None:
        """Guid[] is in the section listing only with includeGuids=1."""
        url = plex.url + "/library/sections/1/all"

        _, plain, _ = await get(http, url, token=OWNER_TOKEN)
        _, with_ids, _ = await get(http, url, token=OWNER_TOKEN, params={"includeGuids": "1"})

        assert all("Guid" not in m for m in plain["MediaContainer"]["Metadata"])
        assert {g["id"] for g in with_ids["MediaContainer"]["Metadata"][0]["Guid"]} == {
            "imdb://tt0072684",
            "tmdb://3175",
        }

    async def test_show_section_lists_episodes_with_type_4(
        self, plex: FakePlexServer, http: aiohttp.ClientSession
    ) -> None:
        """A show section lists shows; type=4 its episodes."""
        url = plex.url + "/library/sections/2/all"

        _, shows, _ = await get(http, url, token=OWNER_TOKEN)
        _, episodes, _ = await get(http, url, token=OWNER_TOKEN, params={"type": "4"})

        assert [m["type"] for m in shows["MediaContainer"]["Metadata"]] == ["show"]
        assert [m["ratingKey"] for m in episodes["MediaContainer"]["Metadata"]] == ["215"]


# =========================================================================== discover


@pytest.fixture
def catalog() -> Catalog:
    cat = default_catalog()
    cat.add_show("Big Trouble: The Series", 2030, tmdb=6978)  # shares the movie's TMDB number
    return cat


@pytest.fixture
async def discover(catalog: Catalog) -> AsyncIterator[FakeDiscover]:
    async with FakeDiscover(catalog=catalog, token=OWNER_TOKEN, user="alex") as server:
        yield server


def rk(discover: FakeDiscover, **ids: Any) -> str:
    found = discover.rating_key_for(ids)
    assert found is not None
    return found


async def put(http: aiohttp.ClientSession, url: str, token: str, rating_key: str) -> int:
    async with http.put(
        url, params={"ratingKey": rating_key}, headers={"X-Plex-Token": token}
    ) as resp:
        return resp.status


class TestDiscoverWatchlist:
    async def test_without_a_token_is_401(
        self, discover: FakeDiscover, http: aiohttp.ClientSession
    ) -> None:
        """§2: the account token is required."""
        status, _, _ = await get(http, discover.url + "/library/sections/watchlist/all", token=None)

        assert status == 401

    async def test_pages_by_container_headers_with_total_size(
        self, discover: FakeDiscover, http: aiohttp.ClientSession
    ) -> None:
        """§3: X-Plex-Container-Start/Size page the list; offset, size, totalSize."""
        for n, key in enumerate(list(discover.items)[:5]):
            discover.add_to_watchlist(key, at=1_700_000_000 + n)
        paging = {"X-Plex-Container-Start": "4", "X-Plex-Container-Size": "2"}

        _, body, _ = await get(
            http,
            discover.url + "/library/sections/watchlist/all",
            token=OWNER_TOKEN,
            headers=paging,
        )

        page = body["MediaContainer"]
        assert (page["offset"], page["size"], page["totalSize"]) == (4, 1, 5)
        assert page["librarySectionID"] == "watchlist"

    async def test_default_page_is_20_items(
        self, discover: FakeDiscover, http: aiohttp.ClientSession
    ) -> None:
        """§3: without paging parameters the reply is a page of 20 (totalSize tells more)."""
        for n in range(25):
            discover.add_item("movie", f"Listed {n}", 2000, [f"imdb://tt{9_700_000 + n}"])
        for key in list(discover.items)[-25:]:
            discover.add_to_watchlist(key)

        _, body, _ = await get(
            http, discover.url + "/library/sections/watchlist/all", token=OWNER_TOKEN
        )

        assert (body["MediaContainer"]["size"], body["MediaContainer"]["totalSize"]) == (20, 25)

    async def test_rows_carry_no_guids_metadata_does(
        self, discover: FakeDiscover, http: aiohttp.ClientSession
    ) -> None:
        """§3: external ids come from one metadata call per item, not from the listing."""
        key = rk(discover, imdb="tt0090728")
        discover.add_to_watchlist(key)

        _, listing, _ = await get(
            http,
            discover.url + "/library/sections/watchlist/all",
            token=OWNER_TOKEN,
            params={"includeGuids": "1"},
        )
        _, meta, _ = await get(http, discover.url + f"/library/metadata/{key}", token=OWNER_TOKEN)

        (row,) = listing["MediaContainer"]["Metadata"]
        assert "Guid" not in row and row["guid"] == f"plex://movie/{key}"
        assert {"imdb://tt0090728", "tmdb://6978"} <= {
            g["id"] for g in meta["MediaContainer"]["Metadata"][0]["Guid"]
        }
        assert discover.metadata_calls[key] == 1

    async def test_add_and_remove_by_the_discover_rating_key(
        self, discover: FakeDiscover, http: aiohttp.ClientSession
    ) -> None:
        """§4: PUT addToWatchlist / removeFromWatchlist with the 24-hex Discover key."""
        key = rk(discover, tvdb="73871")

        added = await put(http, discover.url + "/actions/addToWatchlist", OWNER_TOKEN, key)
        listed = discover.user().rating_keys()
        removed = await put(http, discover.url + "/actions/removeFromWatchlist", OWNER_TOKEN, key)

        assert (added, listed, removed) == (200, [key], 200)
        assert discover.user().rating_keys() == []

    async def test_a_media_server_rating_key_is_not_accepted(
        self, discover: FakeDiscover, http: aiohttp.ClientSession
    ) -> None:
        """§4: a PMS library ratingKey (a small integer) is a different key → 404."""
        status = await put(http, discover.url + "/actions/addToWatchlist", OWNER_TOKEN, "100")

        assert status == 404 and discover.user().watchlist == []

    async def test_each_token_has_its_own_watchlist(
        self, discover: FakeDiscover, http: aiohttp.ClientSession
    ) -> None:
        """§2: a shared user's watchlist needs, and is seen with, that user's token."""
        sam = discover.add_user("sam")
        await put(
            http, discover.url + "/actions/addToWatchlist", sam, rk(discover, imdb="tt0072684")
        )

        _, alexs, _ = await get(
            http, discover.url + "/library/sections/watchlist/all", token=OWNER_TOKEN
        )
        _, sams, _ = await get(http, discover.url + "/library/sections/watchlist/all", token=sam)

        assert alexs["MediaContainer"]["totalSize"] == 0
        assert [m["title"] for m in sams["MediaContainer"]["Metadata"]] == ["Barry Lyndon"]

    async def test_json_only_with_accept_json(
        self, discover: FakeDiscover, http: aiohttp.ClientSession
    ) -> None:
        """§2: without Accept: application/json the reply is XML."""
        discover.add_to_watchlist(rk(discover, imdb="tt0072684"))

        _, text, _ = await get(
            http,
            discover.url + "/library/sections/watchlist/all",
            token=OWNER_TOKEN,
            json_reply=False,
        )

        root = ET.fromstring(text)
        assert (root.tag, root.get("totalSize"), root[0].get("title")) == (
            "MediaContainer",
            "1",
            "Barry Lyndon",
        )

    async def test_unchanged_list_with_its_etag_is_304(
        self, discover: FakeDiscover, http: aiohttp.ClientSession
    ) -> None:
        """If-None-Match with the last ETag → 304 until the watchlist changes."""
        url = discover.url + "/library/sections/watchlist/all"
        _, _, headers = await get(http, url, token=OWNER_TOKEN)
        etag = {"If-None-Match": headers["ETag"]}

        unchanged, _, _ = await get(http, url, token=OWNER_TOKEN, headers=etag)
        discover.add_to_watchlist(rk(discover, imdb="tt0072684"))
        changed, _, _ = await get(http, url, token=OWNER_TOKEN, headers=etag)

        assert (unchanged, changed) == (304, 200)


class TestDiscoverMatches:
    async def test_finds_the_item_by_imdb_guid(
        self, discover: FakeDiscover, http: aiohttp.ClientSession
    ) -> None:
        """§5: matches?type=1&guid=imdb://… → the movie's Discover ratingKey."""
        _, body, _ = await get(
            http,
            discover.url + "/library/metadata/matches",
            token=OWNER_TOKEN,
            params={"type": "1", "guid": "imdb://tt0090728"},
        )

        assert [m["ratingKey"] for m in body["MediaContainer"]["Metadata"]] == [
            rk(discover, imdb="tt0090728")
        ]

    async def test_title_form_with_type_picks_one_kind(
        self, discover: FakeDiscover, http: aiohttp.ClientSession
    ) -> None:
        """§5: CrossWatch's ?type=show&title=tmdb-<id>: TMDB ids are per type."""
        _, body, _ = await get(
            http,
            discover.url + "/library/metadata/matches",
            token=OWNER_TOKEN,
            params={"type": "show", "title": "tmdb-6978"},
        )

        assert [m["type"] for m in body["MediaContainer"]["Metadata"]] == ["show"]

    async def test_without_type_a_tmdb_number_can_match_two_items(
        self, discover: FakeDiscover, http: aiohttp.ClientSession
    ) -> None:
        """§5: a movie and a show can share a TMDB number; always send type."""
        _, body, _ = await get(
            http,
            discover.url + "/library/metadata/matches",
            token=OWNER_TOKEN,
            params={"guid": "tmdb://6978"},
        )

        assert sorted(m["type"] for m in body["MediaContainer"]["Metadata"]) == ["movie", "show"]


class TestPlexTvPin:
    async def test_pin_login_as_python_plexapi_does_it(
        self, discover: FakeDiscover, http: aiohttp.ClientSession
    ) -> None:
        """POST /api/v2/pins → <pin id code>; GET /api/v2/pins/{id} has no authToken until
        approved, then the approving user's account token (XML, as python-plexapi parses)."""
        client = {"X-Plex-Client-Identifier": "crosswatchd-test", "X-Plex-Product": "crosswatchd"}
        sam = discover.add_user("sam")
        async with http.post(discover.url + "/api/v2/pins", headers=client) as resp:
            created = ET.fromstring(await resp.text())
            assert resp.status == 201
        check = discover.url + f"/api/v2/pins/{created.get('id')}"

        async with http.get(check, headers=client) as resp:
            pending = ET.fromstring(await resp.text())
        discover.approve_pin(str(created.get("code")), user="sam")
        async with http.get(check, headers=client) as resp:
            linked = ET.fromstring(await resp.text())
        _, me, _ = await get(http, discover.url + "/api/v2/user", token=linked.get("authToken"))

        assert len(str(created.get("code"))) == 4 and not pending.get("authToken")
        assert linked.get("authToken") == sam and me["username"] == "sam"

    async def test_pins_need_a_client_identifier(
        self, discover: FakeDiscover, http: aiohttp.ClientSession
    ) -> None:
        """Without X-Plex-Client-Identifier plex.tv refuses the pin (400)."""
        async with http.post(discover.url + "/api/v2/pins", headers=JSON) as resp:
            body = await resp.json()

        assert resp.status == 400 and body["errors"][0]["code"] == 1000

    async def test_a_pin_is_only_visible_to_its_client(
        self, discover: FakeDiscover, http: aiohttp.ClientSession
    ) -> None:
        """Checking another client's pin → 404 (JSON with Accept: application/json)."""
        mine = {"X-Plex-Client-Identifier": "one", **JSON}
        theirs = {"X-Plex-Client-Identifier": "two", **JSON}
        async with http.post(
            discover.url + "/api/v2/pins", headers=mine, params={"strong": "true"}
        ) as resp:
            pin = await resp.json()

        async with http.get(discover.url + f"/api/v2/pins/{pin['id']}", headers=theirs) as resp:
            status = resp.status

        assert len(pin["code"]) == 25 and pin["authToken"] is None and status == 404
