"""TautulliClient against the fake Tautulli: unwrapping, paging, and one-line errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date

import aiohttp
import pytest

from crosswatchd.errors import SourceUnavailableError
from crosswatchd.http import GetRetry
from crosswatchd.sources.tautulli_api import TautulliClient, api_int, api_rating_key
from tests.fakes.tautulli import FakeTautulli, history_row

KEY = "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6"


def _rows() -> list[dict[str, object]]:
    """Five movie rows, row_id 1..5, row 5 the newest."""
    return [
        history_row(row_id=n, rating_key=100 + n, stopped=1_700_000_000 + n * 86_400)
        for n in range(1, 6)
    ]


@pytest.fixture
async def fake() -> AsyncIterator[FakeTautulli]:
    async with FakeTautulli(
        api_key=KEY,
        rows=_rows(),
        metadata={"101": {"rating_key": "101", "guids": ["imdb://tt0072684"]}},
        users=["alice", "bob"],
    ) as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


#: In-process GET retries without noticeable waits.
FAST_RETRY = GetRetry(tries=3, base_s=0.001)


def _client(
    session: aiohttp.ClientSession, url: str, key: str = KEY, timeout_s: float = 30.0
) -> TautulliClient:
    return TautulliClient(
        session=session, url=url, api_key=key, timeout_s=timeout_s, get_retry=FAST_RETRY
    )


class TestSuccess:
    async def test_get_history_unwraps_rows_and_totals(
        self, fake: FakeTautulli, session: aiohttp.ClientSession
    ) -> None:
        page = await _client(session, fake.url).get_history(start=0, length=10)
        assert [r["row_id"] for r in page.rows] == [5, 4, 3, 2, 1]
        assert (page.records_filtered, page.records_total) == (5, 5)

    async def test_get_history_pages_with_start_and_length(
        self, fake: FakeTautulli, session: aiohttp.ClientSession
    ) -> None:
        page = await _client(session, fake.url).get_history(start=2, length=2)
        assert [r["row_id"] for r in page.rows] == [3, 2]

    async def test_get_history_asks_newest_first_with_the_filters(
        self, fake: FakeTautulli, session: aiohttp.ClientSession
    ) -> None:
        await _client(session, fake.url).get_history(
            start=0, length=3, after=date(2023, 11, 17), user="alice"
        )
        sent = fake.requests[-1]
        assert sent["order_column"] == "date" and sent["order_dir"] == "desc"
        assert sent["after"] == "2023-11-17" and sent["user"] == "alice"

    async def test_get_metadata_returns_the_data_dict(
        self, fake: FakeTautulli, session: aiohttp.ClientSession
    ) -> None:
        meta = await _client(session, fake.url).get_metadata("101")
        assert meta == {"rating_key": "101", "guids": ["imdb://tt0072684"]}

    async def test_get_metadata_of_a_gone_item_is_none(
        self, fake: FakeTautulli, session: aiohttp.ClientSession
    ) -> None:
        assert await _client(session, fake.url).get_metadata("999") is None

    async def test_get_users_returns_usernames(
        self, fake: FakeTautulli, session: aiohttp.ClientSession
    ) -> None:
        assert await _client(session, fake.url).get_users() == ["alice", "bob"]

    async def test_get_server_identity_names_the_plex_server(
        self, fake: FakeTautulli, session: aiohttp.ClientSession
    ) -> None:
        """Tautulli's code answers a dict (pmsconnect.get_server_identity)."""
        assert await _client(session, fake.url).get_server_identity() == fake.machine_identifier

    async def test_get_server_identity_reads_the_references_one_element_list(
        self, fake: FakeTautulli, session: aiohttp.ClientSession
    ) -> None:
        fake.server_identity_as_list = True

        assert await _client(session, fake.url).get_server_identity() == fake.machine_identifier

    async def test_a_url_ending_in_api_v2_is_accepted(
        self, fake: FakeTautulli, session: aiohttp.ClientSession
    ) -> None:
        assert await _client(session, fake.url + "/api/v2/").get_users() == ["alice", "bob"]


def _one_line_without_key(err: SourceUnavailableError, key: str) -> str:
    text = str(err)
    assert "\n" not in text
    assert key not in text
    return text


class TestLooseNumbers:
    """Tautulli sends numbers as ints, floats or strings; anything else is no number."""

    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            (17, 17),
            ("17", 17),
            (17.0, 17),
            ("17.0", 17),
            (" 17 ", 17),
            (True, None),
            (None, None),
            ("", None),
            ("abc", None),
            ("inf", None),
            (float("nan"), None),
        ],
    )
    def test_api_int(self, value: object, expected: int | None) -> None:
        assert api_int(value) == expected

    @pytest.mark.parametrize(
        ("value", "expected"), [(1219, "1219"), ("1219", "1219"), ("", None), (0, None)]
    )
    def test_api_rating_key(self, value: object, expected: str | None) -> None:
        assert api_rating_key(value) == expected


class TestErrors:
    async def test_wrong_api_key_is_a_clear_error_without_the_key(
        self, fake: FakeTautulli, session: aiohttp.ClientSession
    ) -> None:
        wrong = "ffffffffffffffffffffffffffffffff"
        with pytest.raises(SourceUnavailableError) as info:
            await _client(session, fake.url, key=wrong).get_users()
        text = _one_line_without_key(info.value, wrong)
        assert "Invalid apikey" in text and "tautulli.api_key" in text

    async def test_unreachable_server_is_a_clear_error(
        self, fake: FakeTautulli, session: aiohttp.ClientSession
    ) -> None:
        await fake.stop()
        with pytest.raises(SourceUnavailableError) as info:
            await _client(session, fake.url).get_users()
        assert "unreachable" in _one_line_without_key(info.value, KEY)

    async def test_slow_server_times_out_with_a_clear_error(
        self, fake: FakeTautulli, session: aiohttp.ClientSession
    ) -> None:
        fake.delay_s = 1.0
        with pytest.raises(SourceUnavailableError) as info:
            await _client(session, fake.url, timeout_s=0.05).get_users()
        assert "timeout" in _one_line_without_key(info.value, KEY)

    async def test_html_login_page_is_a_clear_error(
        self, fake: FakeTautulli, session: aiohttp.ClientSession
    ) -> None:
        fake.html_mode = True
        with pytest.raises(SourceUnavailableError) as info:
            await _client(session, fake.url).get_history(start=0, length=10)
        text = _one_line_without_key(info.value, KEY)
        assert "HTML page" in text and "tautulli.url" in text

    async def test_http_error_names_the_status(
        self, fake: FakeTautulli, session: aiohttp.ClientSession
    ) -> None:
        fake.fail_next(502, FAST_RETRY.tries)
        with pytest.raises(SourceUnavailableError) as info:
            await _client(session, fake.url).get_metadata("101")
        assert "HTTP 502" in _one_line_without_key(info.value, KEY)

    async def test_one_server_error_is_retried_in_process(
        self, fake: FakeTautulli, session: aiohttp.ClientSession
    ) -> None:
        """A single 502 costs a second request, not a failed command."""
        fake.fail_next(502)

        meta = await _client(session, fake.url).get_metadata("101")

        assert meta == {"rating_key": "101", "guids": ["imdb://tt0072684"]}
        assert len(fake.requests) == 2

    async def test_wrong_api_key_is_not_retried(
        self, fake: FakeTautulli, session: aiohttp.ClientSession
    ) -> None:
        with pytest.raises(SourceUnavailableError):
            await _client(session, fake.url, key="f" * 32).get_users()
        assert len(fake.requests) == 1

    async def test_api_error_message_is_passed_on(
        self, fake: FakeTautulli, session: aiohttp.ClientSession
    ) -> None:
        with pytest.raises(SourceUnavailableError) as info:
            await _client(session, fake.url).get_metadata("")
        assert "rating_key" in _one_line_without_key(info.value, KEY)
