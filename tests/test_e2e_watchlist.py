"""The watchlist as a user runs it: ``crosswatchd watchlist sync``, ``auth plex``, ``status`` as
real subprocesses, and ``serve`` passing on its own and surviving a SIGKILL between queueing a
change and delivering it. Fakes of Plex Discover, Trakt and SIMKL run in the test's loop."""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
import stat
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from crosswatchd.tokens import TokenStore
from tests.e2e_support import SECRET, Daemon, free_port, wait_for
from tests.fakes.discover import FakeDiscover
from tests.fakes.simkl import FakeSimkl
from tests.fakes.trakt import FakeTrakt
from tests.test_cli import cli, write_config
from tests.watchlist_support import CID, PLEX_TOKEN, imdb, watchlist_catalog
from tests.watchlist_support import SECRET as CSECRET


@dataclass
class Fakes:
    plex: FakeDiscover
    trakt: FakeTrakt
    simkl: FakeSimkl

    def key(self, n: int) -> str:
        key = self.plex.rating_key_for({"imdb": imdb(n)})
        assert key is not None
        return key


@pytest.fixture
async def fakes() -> AsyncIterator[Fakes]:
    catalog = watchlist_catalog()
    async with (
        FakeDiscover(catalog=catalog, token=PLEX_TOKEN) as plex,
        FakeTrakt(
            client_id=CID, client_secret=CSECRET, catalog=catalog, post_tolerance_s=1.0
        ) as trakt,
        FakeSimkl(client_id=CID, catalog=catalog, get_per_s=1000, post_per_s=1000) as simkl,
    ):
        yield Fakes(plex, trakt, simkl)


def configure(
    path: Path,
    data_dir: Path,
    fakes: Fakes,
    *,
    mode: str = "plex",
    interval_s: float = 0,
    port: int = 0,
    plex_token: str = PLEX_TOKEN,
    profiles: list[Mapping[str, Any]] = (),  # type: ignore[assignment]
) -> Path:
    return write_config(
        path,
        data_dir,
        profiles,
        http={"port": port or free_port()},
        webhook={"secret": SECRET},
        plex={
            "token": plex_token,
            "discover_url": fakes.plex.url,
            "plextv_url": fakes.plex.url,
            "discover_put_per_s": 50,
        },
        trakt={
            "client_id": fakes.trakt.client_id,
            "client_secret": fakes.trakt.client_secret,
            "api_url": fakes.trakt.url,
            "post_per_s": 50,
        },
        simkl={"client_id": fakes.simkl.client_id, "api_url": fakes.simkl.url, "post_per_s": 50},
        watchlist={"mode": mode, "interval_s": interval_s},
        resolver={"use_search": False},
        delivery={"timeout_s": 3.0, "poll_s": 0.1, "backoff_base_s": 0.2, "backoff_max_s": 0.5},
    )


def authorize(data_dir: Path, fakes: Fakes, profile: str = "default") -> None:
    TokenStore(data_dir, "trakt", profile).save(fakes.trakt.issue_token())
    TokenStore(data_dir, "simkl", profile).save({"access_token": fakes.simkl.issue_token()})


def watchlist_rows(data_dir: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(data_dir / "outbox.sqlite3") as db:
        rows = db.execute(
            "SELECT d.provider, e.action, d.state FROM deliveries AS d"
            " JOIN events AS e ON e.id = d.event_id WHERE d.kind = 'watchlist' ORDER BY d.id"
        ).fetchall()
    db.close()
    return [tuple(r) for r in rows]


class TestWatchlistSyncCommand:
    async def test_json_lists_each_side_and_the_changes_are_queued(
        self, fakes: Fakes, tmp_path: Path
    ) -> None:
        data = tmp_path / "data"
        config = configure(tmp_path / "c.toml", data, fakes, mode="two-way")
        authorize(data, fakes)
        fakes.plex.add_to_watchlist(fakes.key(1))
        fakes.trakt.watchlist_add("movie", {"imdb": imdb(2)})
        holiday = fakes.plex.add_item("movie", "Our Holiday", 2024, [])
        fakes.plex.add_to_watchlist(holiday)

        dry = await cli(config, "watchlist", "sync", "--dry-run", "--json")
        assert dry.code == 0, dry.err
        assert not (data / "outbox.sqlite3").exists() or watchlist_rows(data) == []

        run = await cli(config, "watchlist", "sync", "--json")
        assert run.code == 0, run.err
        report = json.loads(run.out)
        assert report == {
            "profiles": {
                "default": {
                    "mode": "two-way",
                    "plex": {
                        "items": 2,
                        "added": 1,
                        "removed": 0,
                        "unidentified": [
                            {
                                "title": "Our Holiday",
                                "year": 2024,
                                "guid": f"plex://movie/{holiday}",
                            }
                        ],
                        "unresolved": [],
                    },
                    "trakt": {"items": 1, "added": 1, "removed": 0, "extra": 0},
                    "simkl": {"items": 0, "added": 2, "removed": 0, "extra": 0},
                }
            }
        }
        assert sorted(watchlist_rows(data)) == sorted(
            [
                ("trakt", "watchlist_add", "pending"),
                ("simkl", "watchlist_add", "pending"),
                ("simkl", "watchlist_add", "pending"),
                ("plex", "watchlist_add", "pending"),
            ]
        )
        text = await cli(config, "watchlist", "sync")
        assert text.code == 0 and "profile default (mode two-way)" in text.out
        assert "Our Holiday (2024)" in text.out  # unidentified, listed

    async def test_an_unreadable_side_exits_1_and_queues_nothing(
        self, fakes: Fakes, tmp_path: Path
    ) -> None:
        data = tmp_path / "data"
        config = configure(tmp_path / "c.toml", data, fakes)
        authorize(data, fakes)
        fakes.plex.add_to_watchlist(fakes.key(1))
        fakes.simkl.down = True
        run = await cli(config, "watchlist", "sync", "--json")
        assert run.code == 1
        assert "simkl" in json.loads(run.out)["profiles"]["default"]["error"]
        assert watchlist_rows(data) == []
        status = json.loads((await cli(config, "status", "--json")).out)
        assert status["watchlist"]["default"]["simkl"]["reason"]
        assert status["watchlist"]["default"]["last_sync"] is None

    async def test_another_mode_is_one_line_naming_the_key(
        self, fakes: Fakes, tmp_path: Path
    ) -> None:
        config = configure(tmp_path / "c.toml", tmp_path / "data", fakes, mode="both")
        run = await cli(config, "watchlist", "sync")
        assert run.code == 2
        assert len(run.err_lines) == 1 and "watchlist.mode" in run.err_lines[0]

    async def test_status_shows_the_watchlist_and_a_profile_without_a_plex_token(
        self, fakes: Fakes, tmp_path: Path
    ) -> None:
        data = tmp_path / "data"
        config = configure(
            tmp_path / "c.toml",
            data,
            fakes,
            plex_token="",
            profiles=[{"name": "alex", "plex_token": PLEX_TOKEN}, {"name": "sam"}],
        )
        authorize(data, fakes, "alex")
        fakes.plex.add_to_watchlist(fakes.key(1))
        assert (await cli(config, "watchlist", "sync")).code == 0
        no_token = await cli(config, "watchlist", "sync", "--profile", "sam")
        assert no_token.code == 2 and "profiles[1].plex_token" in no_token.err
        report = json.loads((await cli(config, "status", "--json")).out)
        alex, sam = report["watchlist"]["alex"], report["watchlist"]["sam"]
        assert alex["mode"] == "plex" and alex["last_sync"] is not None
        assert alex["trakt"] == {"pending": 1, "parked": 0, "reason": None}
        assert "no Plex token" in sam["plex"]["reason"]
        assert "plex" not in report["profiles"]["alex"]  # not a play target
        text = (await cli(config, "status")).out
        assert "watchlist of alex (mode plex" in text
        assert "no Plex token" in text


class TestAuthPlex:
    async def test_the_pin_flow_stores_a_token_the_sync_then_uses(
        self, fakes: Fakes, tmp_path: Path
    ) -> None:
        data = tmp_path / "data"
        config = configure(
            tmp_path / "c.toml", data, fakes, plex_token="", profiles=[{"name": "sam"}]
        )
        sam_token = fakes.plex.add_user("sam")
        fakes.plex.add_to_watchlist(fakes.key(3), user="sam")
        authorize(data, fakes, "sam")

        async def approve() -> None:
            while not fakes.plex.pins:  # noqa: ASYNC110 - the fake has no event to wait on
                await asyncio.sleep(0.05)
            (pin,) = fakes.plex.pins.values()
            fakes.plex.approve_pin(pin.code, "sam")

        approver = asyncio.create_task(approve())
        run = await cli(config, "auth", "plex", "--profile", "sam")
        await approver
        assert run.code == 0, run.err
        (pin,) = fakes.plex.pins.values()
        assert pin.code in run.out and "plex.tv/link" in run.out
        token_file = data / "tokens" / "sam" / "plex.json"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert sam_token not in run.out + run.err
        stored = TokenStore(data, "plex", "sam").load()
        assert stored is not None and stored.access_token == sam_token

        synced = await cli(config, "watchlist", "sync", "--json")
        assert synced.code == 0, synced.err
        assert json.loads(synced.out)["profiles"]["sam"]["trakt"]["added"] == 1


class TestDaemon:
    async def test_serve_passes_on_its_own_and_a_sigkill_between_queue_and_delivery_loses_nothing(
        self, fakes: Fakes, tmp_path: Path
    ) -> None:
        data = tmp_path / "data"
        port = free_port()
        config = configure(tmp_path / "c.toml", data, fakes, interval_s=0.3, port=port)
        authorize(data, fakes)
        for n in (1, 2, 3):
            fakes.plex.add_to_watchlist(fakes.key(n))
        # Reads work, deliveries fail: the changes are queued and wait.
        fakes.trakt.fail_next(503, 10_000, path="/sync/watchlist", method="POST")
        fakes.simkl.fail_next(503, 10_000, path="/sync/watched")
        daemon = Daemon(config, port, tmp_path / "daemon.log")
        await daemon.start()
        try:
            await wait_for(lambda: len(watchlist_rows(data)) == 6, 15, "six changes queued")
            await wait_for(
                lambda: any(r["path"] == "/sync/watched" for r in fakes.simkl.requests),
                15,
                "a delivery tried",
            )
            daemon.kill()
        finally:
            if daemon.proc is not None and daemon.proc.poll() is None:
                daemon.kill()
        assert {state for *_, state in watchlist_rows(data)} <= {"pending", "leased"}
        fakes.trakt.clear_failures()
        fakes.simkl.clear_failures()
        films = {imdb(1), imdb(2), imdb(3)}
        again = Daemon(config, port, tmp_path / "daemon.log")
        await again.start()
        try:
            await wait_for(
                lambda: fakes.trakt.watchlist_imdb() == films and fakes.simkl.list_imdb() == films,
                20,
                "the watchlist on both targets",
            )
            await wait_for(
                lambda: {s for *_, s in watchlist_rows(data)} == {"delivered"}, 10, "all settled"
            )
        finally:
            assert again.stop() == 0
        assert len(watchlist_rows(data)) == 6  # nothing queued twice after the restart
        log = (tmp_path / "daemon.log").read_text()
        assert "watchlist.pass" in log and PLEX_TOKEN not in log

    async def test_in_two_way_mode_serve_adds_a_trakt_item_to_the_plex_watchlist(
        self, fakes: Fakes, tmp_path: Path
    ) -> None:
        data = tmp_path / "data"
        port = free_port()
        config = configure(
            tmp_path / "c.toml", data, fakes, mode="two-way", interval_s=0.3, port=port
        )
        authorize(data, fakes)
        fakes.trakt.watchlist_add("movie", {"imdb": imdb(2)})
        daemon = Daemon(config, port, tmp_path / "daemon.log")
        await daemon.start()
        try:
            await wait_for(
                lambda: (
                    fakes.plex.watchlist_imdb() == {imdb(2)}
                    and fakes.simkl.list_imdb() == {imdb(2)}
                ),
                20,
                "Film 2 on Plex and SIMKL",
            )
        finally:
            assert daemon.stop() == 0
        puts = [q for m, p, q in fakes.plex.requests if m == "PUT"]
        assert puts == [{"ratingKey": fakes.key(2)}]

    async def test_a_failing_pass_is_one_log_line_the_daemon_goes_on_and_stops_promptly(
        self, fakes: Fakes, tmp_path: Path
    ) -> None:
        data = tmp_path / "data"
        port = free_port()
        config = configure(tmp_path / "c.toml", data, fakes, interval_s=0.3, port=port)
        authorize(data, fakes)
        fakes.plex.add_to_watchlist(fakes.key(1))
        fakes.simkl.down = True
        log_path = tmp_path / "daemon.log"
        daemon = Daemon(config, port, log_path)
        await daemon.start()
        try:
            await wait_for(
                lambda: "watchlist.pass_failed" in log_path.read_text(), 15, "a failed pass"
            )
            failed = [
                line
                for line in log_path.read_text().splitlines()
                if "watchlist.pass_failed" in line
            ]
            assert "simkl" in failed[0] and "Traceback" not in log_path.read_text()
            assert watchlist_rows(data) == []  # nothing queued while SIMKL cannot be read
            fakes.simkl.down = False
            await wait_for(
                lambda: (
                    fakes.trakt.watchlist_imdb() == {imdb(1)}
                    and fakes.simkl.list_imdb() == {imdb(1)}
                ),
                20,
                "the next pass and its delivery",
            )
            fakes.plex.delay_s = 20.0  # the next pass hangs on Discover
            asked = len(fakes.plex.requests)
            await wait_for(lambda: len(fakes.plex.requests) > asked, 10, "a pass under way")
            started = time.monotonic()
            assert daemon.stop() == 0
            assert time.monotonic() - started < 8.0  # cancelled, not waited for
        finally:
            if daemon.proc is not None and daemon.proc.poll() is None:
                daemon.kill()


async def test_auth_plex_with_plex_tv_unreachable_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    config = write_config(tmp_path / "c.toml", tmp_path / "data", plex={"plextv_url": dead})
    run = await cli(config, "auth", "plex")
    assert run.code == 1
    assert len(run.err_lines) == 1 and "could not reach plex.tv" in run.err_lines[0]
