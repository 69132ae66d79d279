"""The fake Tautulli keeps to api_v2_reference.md: server identity, several users apart."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.fakes.tautulli import FakeTautulli, history_row, make_rows, user_id_of

KEY = "tautulli-key"
ROWS = [
    history_row(row_id=3, user="alice", rating_key=100, stopped=1_700_000_300),
    history_row(row_id=2, user="bob", rating_key=101, stopped=1_700_000_200),
    history_row(row_id=1, user="alice", rating_key=102, stopped=1_700_000_100),
]


@pytest.fixture
async def fake() -> AsyncIterator[FakeTautulli]:
    async with FakeTautulli(
        api_key=KEY, rows=ROWS, users=["alice", "bob"], machine_identifier="abc123machine"
    ) as server:
        yield server


async def call(fake: FakeTautulli, cmd: str, **params: str) -> Any:
    async with (
        aiohttp.ClientSession() as http,
        http.get(fake.url + "/api/v2", params={"apikey": KEY, "cmd": cmd, **params}) as resp,
    ):
        assert resp.status == 200
        body = await resp.json()
    assert body["response"]["result"] == "success"
    return body["response"]["data"]


class TestServerIdentity:
    async def test_answers_the_plex_machine_identifier(self, fake: FakeTautulli) -> None:
        """get_server_identity → {machine_identifier, version} (Tautulli's code: a dict)."""
        data = await call(fake, "get_server_identity")

        assert data == {"machine_identifier": "abc123machine", "version": fake.pms_version}

    async def test_can_answer_the_docstrings_list_form(self, fake: FakeTautulli) -> None:
        """With server_identity_as_list the reply is the reference's one-element list."""
        fake.server_identity_as_list = True

        data = await call(fake, "get_server_identity")

        assert [d["machine_identifier"] for d in data] == ["abc123machine"]


class TestHistoryUsers:
    async def test_each_row_keeps_its_users_name_and_id(self, fake: FakeTautulli) -> None:
        """Rows of alice and bob carry their own user and user_id (as get_users reports)."""
        rows = (await call(fake, "get_history"))["data"]
        users = {u["username"]: int(u["user_id"]) for u in await call(fake, "get_users")}

        assert {(r["user"], r["user_id"]) for r in rows} == set(users.items())
        assert users["alice"] != users["bob"]

    async def test_user_filter_selects_that_users_rows(self, fake: FakeTautulli) -> None:
        """user=alice → only alice's rows; recordsFiltered counts them."""
        data = await call(fake, "get_history", user="alice")

        assert [r["rating_key"] for r in data["data"]] == [100, 102]
        assert (data["recordsFiltered"], data["recordsTotal"]) == (2, 3)

    async def test_user_id_filter_selects_that_users_rows(self, fake: FakeTautulli) -> None:
        """user_id=<bob's id> → only bob's row."""
        data = await call(fake, "get_history", user_id=str(user_id_of("bob")))

        assert [r["user"] for r in data["data"]] == ["bob"]

    async def test_generated_history_filters_by_user_id_too(self) -> None:
        """make_rows: the lazily generated rows carry per-user ids the filter selects on."""
        history = make_rows(200, users=(("alice", 1), ("bob", 1)))
        async with FakeTautulli(api_key=KEY, rows=history.rows, users=["alice", "bob"]) as fake:
            data = await call(fake, "get_history", user_id=str(user_id_of("bob")), length="500")

        assert data["data"] and {r["user"] for r in data["data"]} == {"bob"}
