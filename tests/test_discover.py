"""The Plex Discover client and the plex.tv PIN sign-in against the fake Discover (real HTTP on
127.0.0.1): paging until totalSize, a list that moves while it is read, ids per item, matches
by id, writes without JSON headers, tokens refused, PINs."""

from __future__ import annotations

import asyncio
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from crosswatchd.errors import AuthError, RetryableError
from crosswatchd.http import GetRetry
from crosswatchd.models import Ids, MediaKind
from crosswatchd.sources.discover import DiscoverClient, discover_key
from crosswatchd.sources.plextv import PlexAuth, client_identifier, pin_login
from crosswatchd.tokens import TokenStore
from tests.fakes.discover import FakeDiscover
from tests.watchlist_support import watchlist_catalog

TOKEN = "plex-account-token"
FAST = GetRetry(tries=2, base_s=0.01)


@pytest.fixture
async def plex() -> AsyncIterator[FakeDiscover]:
    async with FakeDiscover(catalog=watchlist_catalog(), token=TOKEN) as fake:
        yield fake


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def client(
    plex: FakeDiscover,
    session: aiohttp.ClientSession,
    tmp_path: Path,
    *,
    token: str = TOKEN,
    page_size: int = 100,
) -> DiscoverClient:
    auth = PlexAuth(TokenStore(tmp_path, "plex"), token)
    return DiscoverClient(
        session=session,
        url=plex.url,
        auth=auth,
        client_id="test-client",
        get_retry=FAST,
        page_size=page_size,
    )


def _sequential(page: Any) -> Any:
    """The pages of a walk one after another (the client asks for them together), so the
    test knows which page sees the change."""
    lock = asyncio.Lock()

    async def one(start: int) -> Any:
        async with lock:
            return await page(start)

    return one


def films(plex: FakeDiscover, *numbers: int) -> list[str]:
    keys = []
    for n in numbers:
        key = plex.rating_key_for({"imdb": f"tt{7_000_000 + n}"})
        assert key is not None
        plex.add_to_watchlist(key, at=1_700_000_000 + n)
        keys.append(key)
    return keys


class TestWatchlist:
    async def test_pages_until_total_size_with_json_and_the_client_headers(
        self, plex: FakeDiscover, session: aiohttp.ClientSession, tmp_path: Path
    ) -> None:
        keys = films(plex, 1, 2, 3, 4, 5)
        rows = await client(plex, session, tmp_path, page_size=2).watchlist()
        assert sorted(r.rating_key for r in rows) == sorted(keys)
        assert {r.kind for r in rows} == {MediaKind.MOVIE}
        pages = [q for _, path, q in plex.requests if path == "/library/sections/watchlist/all"]
        assert [q["X-Plex-Container-Start"] for q in pages] == ["0", "2", "4"]
        assert {q["X-Plex-Container-Size"] for q in pages} == {"2"}

    async def test_a_list_that_moves_while_it_is_read_is_read_again(
        self, plex: FakeDiscover, session: aiohttp.ClientSession, tmp_path: Path
    ) -> None:
        films(plex, 1, 2, 3, 4, 5)
        late = plex.rating_key_for({"imdb": "tt7000006"}) or ""
        pages = 0

        def add_during_the_first_walk(request: web.Request) -> None:
            nonlocal pages
            if request.path.startswith("/library/sections/watchlist"):
                pages += 1
                if pages == 2:
                    plex.add_to_watchlist(late, at=1_800_000_000)

        plex.before_request = add_during_the_first_walk
        rows = await client(plex, session, tmp_path, page_size=2).watchlist()
        assert len(rows) == 6 and late in {r.rating_key for r in rows}
        assert pages == 3 + 3  # one walk that saw totalSize move, one whole walk

    async def test_a_walk_that_reads_a_row_twice_is_walked_again(
        self, plex: FakeDiscover, session: aiohttp.ClientSession, tmp_path: Path
    ) -> None:
        """One film added and the oldest removed while the pages are read: totalSize stays,
        but a row comes twice and the count does not add up, so the list is read again."""
        keys = films(plex, 1, 2, 3, 4, 5)
        late = plex.rating_key_for({"imdb": "tt7000006"}) or ""
        pages = 0

        def swap_during_the_first_walk(request: web.Request) -> None:
            nonlocal pages
            if request.path.startswith("/library/sections/watchlist"):
                pages += 1
                if pages == 2:
                    plex.remove_from_watchlist(keys[0])
                    plex.add_to_watchlist(late, at=1_800_000_000)

        plex.before_request = swap_during_the_first_walk
        discover = client(plex, session, tmp_path, page_size=2)
        discover._page = _sequential(discover._page)  # type: ignore[method-assign]
        rows = await discover.watchlist()
        assert sorted(r.rating_key for r in rows) == sorted([*keys[1:], late])
        assert pages == 3 + 3

    async def test_a_list_that_keeps_moving_is_not_taken_for_what_was_read(
        self, plex: FakeDiscover, session: aiohttp.ClientSession, tmp_path: Path
    ) -> None:
        films(plex, 1, 2, 3)
        spare = iter(
            plex.rating_key_for({"imdb": f"tt{7_000_000 + n}"}) or "" for n in range(4, 13)
        )

        def add_on_every_second_page(request: web.Request) -> None:
            if request.query.get("X-Plex-Container-Start") == "2":
                plex.add_to_watchlist(next(spare))

        plex.before_request = add_on_every_second_page
        with pytest.raises(RetryableError, match="kept changing"):
            await client(plex, session, tmp_path, page_size=2).watchlist()

    async def test_without_total_size_only_a_short_first_page_is_the_whole_list(
        self, plex: FakeDiscover, session: aiohttp.ClientSession, tmp_path: Path
    ) -> None:
        plex.omit_total_size = True
        discover = client(plex, session, tmp_path, page_size=2)
        assert await discover.watchlist() == []
        films(plex, 1)
        assert [r.title for r in await discover.watchlist()] == ["Film 1"]
        films(plex, 2, 3)
        with pytest.raises(RetryableError, match="totalSize"):
            await discover.watchlist()

    async def test_each_token_reads_its_own_watchlist(
        self, plex: FakeDiscover, session: aiohttp.ClientSession, tmp_path: Path
    ) -> None:
        films(plex, 1)
        sam = plex.add_user("sam")
        plex.add_to_watchlist(plex.rating_key_for({"imdb": "tt7000002"}) or "", user="sam")
        rows = await client(plex, session, tmp_path, token=sam).watchlist()
        assert [r.title for r in rows] == ["Film 2"]


class TestTokens:
    async def test_a_refused_stored_token_is_set_aside(
        self, plex: FakeDiscover, session: aiohttp.ClientSession, tmp_path: Path
    ) -> None:
        store = TokenStore(tmp_path, "plex", "sam")
        store.save({"access_token": "signed-out"})
        auth = PlexAuth(store, "", "sam")
        discover = DiscoverClient(
            session=session, url=plex.url, auth=auth, client_id="c", get_retry=FAST
        )
        with pytest.raises(AuthError, match="crosswatchd auth plex --profile sam"):
            await discover.watchlist()
        assert not auth.is_authorized()
        assert (tmp_path / "tokens" / "sam" / "plex.json.revoked").exists()

    async def test_a_stored_token_wins_over_the_configured_one(self, tmp_path: Path) -> None:
        store = TokenStore(tmp_path, "plex")
        auth = PlexAuth(store, "from-config")
        assert (auth.token(), auth.source()) == ("from-config", "config")
        store.save({"access_token": "from-pin"})
        assert (auth.token(), auth.source()) == ("from-pin", "stored")

    async def test_no_token_at_all_asks_for_auth_plex(self, tmp_path: Path) -> None:
        auth = PlexAuth(TokenStore(tmp_path, "plex"), "")
        with pytest.raises(AuthError, match="crosswatchd auth plex"):
            auth.token()


class TestItems:
    async def test_ids_come_from_the_items_metadata(
        self, plex: FakeDiscover, session: aiohttp.ClientSession, tmp_path: Path
    ) -> None:
        discover = client(plex, session, tmp_path)
        key = plex.rating_key_for({"imdb": "tt0090728"}) or ""
        assert await discover.ids(key) == Ids(imdb="tt0090728", tmdb="6978")
        assert await discover.ids("0" * 24) is None  # Discover does not know it

    async def test_matches_finds_the_item_by_tmdb_and_type(
        self, plex: FakeDiscover, session: aiohttp.ClientSession, tmp_path: Path
    ) -> None:
        discover = client(plex, session, tmp_path)
        show = await discover.find(MediaKind.SHOW, Ids(tmdb="615"))  # Futurama
        assert show == plex.rating_key_for({"tvdb": 73871}, "show")
        asked = [q for _, p, q in plex.requests if p == "/library/metadata/matches"]
        assert asked == [{"type": "2", "guid": "tmdb://615"}]

    async def test_a_candidate_whose_own_ids_differ_is_not_used(
        self, plex: FakeDiscover, session: aiohttp.ClientSession, tmp_path: Path
    ) -> None:
        async def other_ids(_: str) -> Ids:
            return Ids(imdb="tt0000001")

        found = await client(plex, session, tmp_path).find(
            MediaKind.MOVIE, Ids(imdb="tt0090728"), other_ids
        )
        assert found is None

    async def test_add_and_remove_go_without_json_headers(
        self, plex: FakeDiscover, session: aiohttp.ClientSession, tmp_path: Path
    ) -> None:
        plex.put_json_headers_500 = True  # Seerr's note: JSON headers on a PUT got a 500
        discover = client(plex, session, tmp_path)
        key = plex.rating_key_for({"imdb": "tt0090728"}) or ""
        assert await discover.change("addToWatchlist", key)
        assert plex.user().rating_keys() == [key]
        assert await discover.change("removeFromWatchlist", key)
        assert plex.user().rating_keys() == []
        assert not await discover.change("addToWatchlist", "f" * 24)  # 404: unknown key

    def test_the_discover_key_is_the_last_part_of_a_plex_guid(self) -> None:
        assert discover_key("plex://movie/5d7768000000000000000001") == "5d7768000000000000000001"
        assert discover_key("com.plexapp.agents.imdb://tt0090728") is None


class TestPinSignIn:
    async def test_the_code_is_shown_and_the_token_stored_with_the_account(
        self, plex: FakeDiscover, session: aiohttp.ClientSession, tmp_path: Path
    ) -> None:
        shown: list[str] = []
        sam = plex.add_user("sam")

        async def approve() -> None:
            while not plex.pins:  # noqa: ASYNC110 - the fake has no event to wait on
                await asyncio.sleep(0.01)
            (pin,) = plex.pins.values()
            plex.approve_pin(pin.code, "sam")

        approver = asyncio.create_task(approve())
        tokens = TokenStore(tmp_path, "plex", "sam")
        stored = await pin_login(
            session=session,
            plextv_url=plex.url,
            client_id=client_identifier(tmp_path),
            tokens=tokens,
            out=shown.append,
            poll_s=0.02,
        )
        await approver
        assert stored.access_token == sam
        assert stored.raw["username"] == "sam"
        (pin,) = plex.pins.values()
        assert pin.code in shown[0] and "plex.tv/link" in shown[0]
        assert stat.S_IMODE(tokens.path.stat().st_mode) == 0o600

    async def test_an_expired_code_is_one_error(
        self, plex: FakeDiscover, session: aiohttp.ClientSession, tmp_path: Path
    ) -> None:
        plex.pin_expires_in_s = 0.05
        with pytest.raises(AuthError, match="expired"):
            await pin_login(
                session=session,
                plextv_url=plex.url,
                client_id="c",
                tokens=TokenStore(tmp_path, "plex"),
                out=lambda _: None,
                poll_s=0.02,
            )

    def test_the_client_identifier_is_stable_and_private(self, tmp_path: Path) -> None:
        first = client_identifier(tmp_path)
        assert client_identifier(tmp_path) == first
        assert stat.S_IMODE((tmp_path / "plex_client_id").stat().st_mode) == 0o600
