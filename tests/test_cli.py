"""The ``crosswatchd`` command line, run as the real console script in a subprocess.

Fakes (Tautulli, Trakt) run in the test's event loop; the CLI subprocess talks to them over
127.0.0.1, so subprocesses are started with :func:`asyncio.create_subprocess_exec` to keep
the loop serving while the CLI runs.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import stat
import sys
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from crosswatchd.models import Action, Item, MediaKind, PlayEvent, Source
from crosswatchd.outbox import Outbox, ReasonKind, Settlement
from crosswatchd.tokens import TokenStore
from tests.fakes.tautulli import FakeTautulli, history_row
from tests.fakes.trakt import FakeTrakt

_SCRIPT = Path(sys.executable).parent / "crosswatchd"
COMMAND = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "crosswatchd.cli"]
PLEX_SCROBBLE = (
    Path(__file__).parent
    / "fixtures"
    / "plex"
    / "movie_media.scrobble_plex-agent_big-trouble-in-little-china.json"
)
TAUTULLI_KEY = "tautulli-api-key-0123456789"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("CROSSWATCHD_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))


def write_config(
    path: Path,
    data_dir: Path,
    profiles: Sequence[Mapping[str, Any]] = (),
    **sections: Mapping[str, Any],
) -> Path:
    """A TOML config with ``data_dir``, the given ``[section]`` tables and ``[[profiles]]``;
    the Anime-Lists mapping off unless an ``anime`` table is given (never the real list)."""
    lines = [f"data_dir = {_toml_value(data_dir)}"]
    sections = {"anime": {"mapping_url": ""}, **sections}
    for name, table in sections.items():
        lines.append(f"[{name}]")
        lines.extend(f"{key} = {_toml_value(value)}" for key, value in table.items())
    for profile in profiles:
        lines.append("[[profiles]]")
        lines.extend(f"{key} = {_toml_value(value)}" for key, value in profile.items())
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]


async def cli(
    config: Path | None,
    *args: str,
    timeout_s: float = 30.0,
    env: Mapping[str, str] | None = None,
) -> Run:
    """Run ``crosswatchd --config CONFIG ARGS…`` to completion (no ``--config`` for None),
    with *env* added to a ``CROSSWATCHD_*``-free environment."""
    options = ["--config", str(config)] if config is not None else []
    proc = await asyncio.create_subprocess_exec(
        *COMMAND,
        *options,
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**_env(), **(env or {})},
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())


@dataclass
class Home:
    """A data directory and a config file pointing at it."""

    data_dir: Path
    config: Path

    def configure(
        self, profiles: Sequence[Mapping[str, Any]] = (), **sections: Mapping[str, Any]
    ) -> Path:
        return write_config(self.config, self.data_dir, profiles, **sections)

    async def outbox(self, providers: list[str]) -> Outbox:
        return await Outbox.open(self.data_dir / "outbox.sqlite3", providers=providers)

    async def query(self, sql: str, providers: list[str] | None = None) -> list[tuple[Any, ...]]:
        outbox = await self.outbox(providers or ["trakt"])
        try:
            return await outbox.fetch_all(sql)
        finally:
            await outbox.close()

    async def query_write(self, sql: str, *params: Any) -> None:
        """Change the outbox behind the CLI's back (a state no command makes directly)."""
        with sqlite3.connect(self.data_dir / "outbox.sqlite3") as db:
            db.execute(sql, params)


@pytest.fixture
def home(tmp_path: Path) -> Home:
    home = Home(tmp_path / "data", tmp_path / "crosswatchd.toml")
    home.configure(trakt={"client_id": "cid", "client_secret": "csecret"})
    return home


# -- bad configuration ----------------------------------------------------------------------


class TestBadConfig:
    """A bad config prints exactly one line on stderr naming the key, and exits 2."""

    @pytest.mark.parametrize(
        "command", [["status"], ["webhook-url"], ["unresolved", "list"], ["serve"]]
    )
    async def test_port_out_of_range(self, home: Home, command: list[str]) -> None:
        home.configure(http={"port": 70000})
        run = await cli(home.config, *command)
        assert run.code == 2
        assert len(run.err_lines) == 1, run.err
        assert "http.port" in run.err
        assert "Traceback" not in run.err + run.out

    async def test_unknown_key(self, home: Home) -> None:
        home.configure(http={"prot": 9000})
        run = await cli(home.config, "status")
        assert run.code == 2
        assert len(run.err_lines) == 1, run.err
        assert "http.prot" in run.err and "unknown key" in run.err

    async def test_missing_config_file(self, tmp_path: Path) -> None:
        run = await cli(tmp_path / "nope.toml", "status")
        assert run.code == 2
        assert len(run.err_lines) == 1, run.err
        assert "--config" in run.err

    async def test_missing_config_file_from_the_environment_names_the_variable(
        self, tmp_path: Path
    ) -> None:
        run = await cli(None, "status", env={"CROSSWATCHD_CONFIG": str(tmp_path / "nope.toml")})
        assert run.code == 2
        assert len(run.err_lines) == 1, run.err
        assert "CROSSWATCHD_CONFIG" in run.err

    @pytest.mark.parametrize(
        ("variable", "value"),
        [
            ("CROSSWATCHD_HTTP", "x"),
            ("CROSSWATCHD_HTTP__PROT", "9000"),
            ("CROSSWATCHD_TRAK__CLIENT_ID", "abc"),
            ("CROSSWATCHD_HTTP__PORT", "eighty"),
            ("CROSSWATCHD_PLEX__ACCOUNTS", '["Alice"'),
        ],
    )
    async def test_a_bad_environment_value_is_one_line_naming_the_variable(
        self, home: Home, variable: str, value: str
    ) -> None:
        home.configure()
        run = await cli(home.config, "status", env={variable: value})
        assert run.code == 2
        assert len(run.err_lines) == 1, run.err
        assert variable in run.err
        assert "Traceback" not in run.err + run.out

    async def test_comma_separated_lists_from_the_environment(self, home: Home) -> None:
        home.configure(trakt={"client_id": "id", "client_secret": "s"})
        run = await cli(
            home.config,
            "status",
            "--json",
            env={"CROSSWATCHD_TAUTULLI__USERS": "alice,bob", "CROSSWATCHD_PLEX__ACCOUNTS": "Al"},
        )
        assert run.code == 0, run.err
        assert json.loads(run.out)["tautulli_users"] == ["alice", "bob"]


# -- status ---------------------------------------------------------------------------------


class TestStatus:
    """``status`` shows per-target counts and whether the target is authorized."""

    async def test_json_shape_and_authorized_flips_once_a_token_exists(self, home: Home) -> None:
        before = await cli(home.config, "status", "--json")
        assert before.code == 0, before.err
        trakt = json.loads(before.out)["providers"]["trakt"]
        assert trakt["authorized"] is False
        for key in ("pending", "delivered", "dead", "unresolved"):
            assert type(trakt[key]) is int, key

        TokenStore(home.data_dir, "trakt").save(
            {"access_token": "a" * 64, "refresh_token": "r" * 64, "expires_in": 86400}
        )
        assert (home.data_dir / "tokens" / "trakt.json").exists()
        after = await cli(home.config, "status", "--json")
        assert json.loads(after.out)["providers"]["trakt"]["authorized"] is True
        assert "a" * 64 not in after.out

    async def test_table_has_a_row_per_target(self, home: Home) -> None:
        run = await cli(home.config, "status")
        assert run.code == 0, run.err
        lines = [line.strip() for line in run.out.splitlines()]
        header = next(line.split() for line in lines if line.startswith("target"))
        assert header[:3] == ["target", "auth", "pending"]
        row = next(line.split() for line in lines if line.startswith("trakt"))
        assert row[:3] == ["trakt", "NO", "0"]
        assert "crosswatchd auth trakt" in run.out

    async def test_counts_reflect_the_outbox(self, home: Home) -> None:
        outbox = await home.outbox(["trakt"])
        try:
            await outbox.enqueue(watched("Some Film"))
        finally:
            await outbox.close()
        run = await cli(home.config, "status", "--json")
        assert json.loads(run.out)["providers"]["trakt"]["pending"] == 1

    async def test_an_outage_shows_since_when_plays_wait_and_the_last_error(
        self, home: Home
    ) -> None:
        outbox = await home.outbox(["trakt"])
        try:
            await outbox.enqueue(watched("Some Film"))
            (claimed,) = await outbox.claim("trakt", "play", limit=10, lease_s=60)
            await outbox.settle(
                claimed,
                Settlement.pending(300, "trakt: HTTP 503 from /sync/history", keep_sent=True),
            )
        finally:
            await outbox.close()
        run = await cli(home.config, "status", "--json")
        backlog = json.loads(run.out)["providers"]["trakt"]["backlog"]
        assert backlog["oldest_watched_at"] == "2026-01-02T20:00:00Z"
        assert backlog["attempts"] == 1
        assert backlog["last_error"] == "trakt: HTTP 503 from /sync/history"
        table = await cli(home.config, "status")
        assert "waiting since 2026-01-02T20:00:00Z" in table.out
        assert "HTTP 503" in table.out


# -- unresolved -----------------------------------------------------------------------------


def watched(title: str) -> PlayEvent:
    return PlayEvent(
        source=Source.PLEX,
        action=Action.WATCHED,
        account="alice",
        item=Item(kind=MediaKind.MOVIE, title=title, year=1999, rating_key=title),
        occurred_at=datetime(2026, 1, 2, 20, 0, tzinfo=UTC),
    )


@pytest.fixture
async def parked(home: Home) -> list[int]:
    """Two Trakt plays parked as unresolved; their delivery ids."""
    outbox = await home.outbox(["trakt"])
    try:
        for title in ("Obscure Film", "Lost Tape"):
            await outbox.enqueue(watched(title))
        claimed = await outbox.claim("trakt", "play", limit=10, lease_s=60)
        assert len(claimed) == 2
        for c in claimed:
            assert await outbox.settle(
                c, Settlement.parked(f"no ids found for {c.item.title}", ReasonKind.UNRESOLVED)
            )
        return [c.id for c in claimed]
    finally:
        await outbox.close()


async def states(home: Home) -> dict[int, str]:
    rows = await home.query("SELECT id, state FROM deliveries")
    return {int(r[0]): str(r[1]) for r in rows}


class TestUnresolved:
    """``unresolved list`` shows parked plays; ``retry`` puts them back in the queue."""

    async def test_list_shows_each_parked_play_with_its_reason(
        self, home: Home, parked: list[int]
    ) -> None:
        run = await cli(home.config, "unresolved", "list")
        assert run.code == 0, run.err
        for delivery_id, title in zip(parked, ("Obscure Film", "Lost Tape"), strict=True):
            line = next(x for x in run.out.splitlines() if x.startswith(f"#{delivery_id} "))
            assert f"{title} (1999)" in line
            assert f"no ids found for {title}" in line

    async def test_list_json(self, home: Home, parked: list[int]) -> None:
        run = await cli(home.config, "unresolved", "list", "--json")
        rows = json.loads(run.out)
        assert sorted(r["id"] for r in rows) == sorted(parked)
        assert {r["kind"] for r in rows} == {"unresolved"}

    async def test_a_parked_rating_is_listed_and_counted_apart_from_plays(
        self, home: Home, parked: list[int]
    ) -> None:
        outbox = await home.outbox(["trakt"])
        try:
            for title, rating in (("Obscure Film", 8), ("Lost Tape", None)):
                event = watched(title)
                await outbox.enqueue(replace(event, action=Action.RATE, rating=rating))
            (first, _) = await outbox.claim("trakt", "rating", limit=10, lease_s=60)
            await outbox.settle(first, Settlement.parked("no ids", ReasonKind.UNRESOLVED))
        finally:
            await outbox.close()
        run = await cli(home.config, "unresolved", "list")
        line = next(x for x in run.out.splitlines() if x.startswith(f"#{first.id} "))
        assert "[rating 8] Obscure Film (1999)" in line
        report = json.loads((await cli(home.config, "status", "--json")).out)
        trakt = report["providers"]["trakt"]
        assert (trakt["unresolved"], trakt["pending"]) == (2, 0)  # the plays only
        assert (trakt["ratings_parked"], trakt["ratings_pending"]) == (1, 1)
        assert report["problems"][0]["change"] == "rating 8"
        table = (await cli(home.config, "status")).out
        assert "ratings 1 pending, 0 delivered, 1 parked" in table

    async def test_retry_all_requeues_every_unresolved_play(
        self, home: Home, parked: list[int]
    ) -> None:
        run = await cli(home.config, "unresolved", "retry", "--all")
        assert run.code == 0, run.err
        assert "Re-queued 2 play(s)" in run.out
        assert await states(home) == dict.fromkeys(parked, "pending")
        again = await cli(home.config, "unresolved", "list")
        assert "Nothing unresolved." in again.out

    async def test_retry_one_id_requeues_only_that_play(
        self, home: Home, parked: list[int]
    ) -> None:
        first, second = parked
        run = await cli(home.config, "unresolved", "retry", str(first))
        assert run.code == 0, run.err
        assert "Re-queued 1 play(s)" in run.out
        assert await states(home) == {first: "pending", second: "parked"}

    async def test_retry_unknown_id_is_one_line_exit_1_and_requeues_nothing(
        self, home: Home, parked: list[int]
    ) -> None:
        run = await cli(home.config, "unresolved", "retry", "999999")
        assert run.code == 1
        assert run.err_lines == [
            "crosswatchd: #999999 is not a parked or dead play"
            " (see `crosswatchd unresolved list --all-parked`)"
        ]
        assert set((await states(home)).values()) == {"parked"}

    async def test_retry_of_a_delivered_play_is_refused(
        self, home: Home, parked: list[int]
    ) -> None:
        await home.query_write("UPDATE deliveries SET state = 'delivered' WHERE id = ?", parked[0])
        run = await cli(home.config, "unresolved", "retry", str(parked[0]))
        assert run.code == 1
        assert "not a parked or dead play" in run.err

    async def test_dismiss_drops_a_parked_play_for_good(
        self, home: Home, parked: list[int]
    ) -> None:
        run = await cli(home.config, "unresolved", "dismiss", str(parked[0]))
        assert run.code == 0, run.err
        assert "Dismissed 1 play(s)" in run.out
        assert (await states(home))[parked[0]] == "dropped"
        listing = await cli(home.config, "unresolved", "list", "--json")
        assert [row["id"] for row in json.loads(listing.out)] == [parked[1]]
        retried = await cli(home.config, "unresolved", "retry", "--all")
        assert "Re-queued 1 play(s)" in retried.out
        assert (await states(home))[parked[0]] == "dropped"

    async def test_dismiss_all(self, home: Home, parked: list[int]) -> None:
        run = await cli(home.config, "unresolved", "dismiss", "--all")
        assert "Dismissed 2 play(s)" in run.out
        assert set((await states(home)).values()) == {"dropped"}

    async def test_list_says_times_are_utc(self, home: Home, parked: list[int]) -> None:
        run = await cli(home.config, "unresolved", "list")
        assert "2026-01-02 20:00 UTC" in run.out

    async def test_retry_without_id_or_all_is_a_usage_error(self, home: Home) -> None:
        run = await cli(home.config, "unresolved", "retry")
        assert run.code == 2
        assert "--all" in run.err


# -- webhook-url ----------------------------------------------------------------------------


async def test_webhook_url_prints_urls_with_a_secret_stored_0600(home: Home) -> None:
    run = await cli(home.config, "webhook-url")
    assert run.code == 0, run.err
    secret_file = home.data_dir / "webhook_secret"
    secret = secret_file.read_text().strip()
    assert len(secret) >= 16
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert f"http://127.0.0.1:8765/webhook/plex?token={secret}" in run.out
    assert f"/webhook/tautulli?token={secret}" in run.out
    again = await cli(home.config, "webhook-url")
    assert again.out == run.out  # the same secret every time


# -- import tautulli ------------------------------------------------------------------------


@pytest.fixture
async def tautulli() -> AsyncIterator[FakeTautulli]:
    rows = [
        history_row(row_id=3, user="alice", rating_key=75580, stopped=1_700_000_000),
        history_row(
            row_id=2,
            user="alice",
            media_type="episode",
            title="A Clone of My Own",
            year=2000,
            rating_key=59852,
            grandparent_rating_key=59800,
            guid="com.plexapp.agents.thetvdb://73871/2/15?lang=en",
            show_title="Futurama",
            season=2,
            episode=15,
            stopped=1_699_990_000,
        ),
        history_row(row_id=1, user="bob", rating_key=75581, stopped=1_699_980_000),
    ]
    async with FakeTautulli(api_key=TAUTULLI_KEY, rows=rows, users=["alice", "bob"]) as fake:
        yield fake


def tautulli_config(home: Home, fake: FakeTautulli, **tautulli: Any) -> None:
    home.configure(
        trakt={"client_id": "cid", "client_secret": "csecret"},
        tautulli={"url": fake.url, "api_key": TAUTULLI_KEY, **tautulli},
    )


class TestImportTautulli:
    """``import tautulli`` backfills history into the outbox, once."""

    async def test_dry_run_prints_a_summary_and_writes_nothing(
        self, home: Home, tautulli: FakeTautulli
    ) -> None:
        tautulli_config(home, tautulli)
        run = await cli(home.config, "import", "tautulli", "--dry-run", "--user", "alice")
        assert run.code == 0, run.err
        assert "dry run: 2 would be enqueued of 2 plays" in run.out
        assert "Futurama S02E15" in run.out
        assert await home.query("SELECT count(*) FROM events") == [(0,)]

    async def test_stdout_is_the_summary_alone(self, home: Home, tautulli: FakeTautulli) -> None:
        """The report is not interleaved with log lines (it is read by people and pipes)."""
        tautulli_config(home, tautulli)
        run = await cli(home.config, "import", "tautulli", "--dry-run", "--user", "alice")
        lines = run.out.splitlines()
        assert lines[0] == "Tautulli import (dry run: nothing written)"
        assert lines[-1].startswith("dry run: ")

    async def test_real_run_enqueues_and_a_second_run_adds_nothing(
        self, home: Home, tautulli: FakeTautulli
    ) -> None:
        tautulli_config(home, tautulli)
        first = await cli(home.config, "import", "tautulli", "--user", "alice")
        assert first.code == 0, first.err
        assert "import: 2 enqueued" in first.out
        deliveries = "SELECT provider, kind FROM deliveries ORDER BY id"
        assert await home.query(deliveries) == [("trakt", "play"), ("trakt", "play")]
        second = await cli(home.config, "import", "tautulli", "--user", "alice")
        assert second.code == 0, second.err
        assert "import: 0 enqueued of 2 plays, 2 already known" in second.out
        assert len(await home.query(deliveries)) == 2

    async def test_users_from_the_config_are_used(self, home: Home, tautulli: FakeTautulli) -> None:
        tautulli_config(home, tautulli, users=["bob"])
        run = await cli(home.config, "import", "tautulli")
        assert run.code == 0, run.err
        assert "import: 1 enqueued" in run.out

    async def test_wrong_api_key_is_one_line_without_the_key(
        self, home: Home, tautulli: FakeTautulli
    ) -> None:
        wrong = "wrong-key-f00dfeedbeef"
        home.configure(trakt={"client_id": "cid"}, tautulli={"url": tautulli.url, "api_key": wrong})
        run = await cli(home.config, "import", "tautulli", "--user", "alice")
        assert run.code != 0
        assert len(run.err_lines) == 1, run.err
        assert "api key" in run.err.lower()
        assert "Traceback" not in run.out + run.err
        assert wrong not in run.out + run.err

    async def test_no_users_is_an_error_listing_the_servers_users(
        self, home: Home, tautulli: FakeTautulli
    ) -> None:
        tautulli_config(home, tautulli)
        run = await cli(home.config, "import", "tautulli")
        assert run.code == 2
        assert len(run.err_lines) == 1, run.err
        assert "tautulli.users" in run.err
        assert "alice" in run.err and "bob" in run.err
        assert await home.query("SELECT count(*) FROM events") == [(0,)]


class TestImportTautulliHouseholds:
    """Each imported play goes to the accounts of its Tautulli user's profile."""

    PROFILES = (
        {"name": "alex", "tautulli_users": ["Alice"]},  # Tautulli says "alice": case-insensitive
        {"name": "sam", "tautulli_users": ["bob"]},
    )

    async def profiles_of_plays(self, home: Home) -> list[tuple[str, str, str]]:
        return await home.query(
            "SELECT e.account, d.profile, d.provider FROM deliveries d"
            " JOIN events e ON e.id = d.event_id ORDER BY e.account, d.id"
        )

    async def test_every_users_plays_go_to_its_profile(
        self, home: Home, tautulli: FakeTautulli
    ) -> None:
        home.configure(
            self.PROFILES,
            trakt={"client_id": "cid", "client_secret": "csecret"},
            tautulli={"url": tautulli.url, "api_key": TAUTULLI_KEY},
        )
        run = await cli(home.config, "import", "tautulli")
        assert run.code == 0, run.err
        assert await self.profiles_of_plays(home) == [
            ("alice", "alex", "trakt"),
            ("alice", "alex", "trakt"),
            ("bob", "sam", "trakt"),
        ]

    async def test_profile_takes_any_users_old_plays(
        self, home: Home, tautulli: FakeTautulli
    ) -> None:
        """How a member's plays recorded under another Tautulli account move to them."""
        home.configure(
            self.PROFILES,
            trakt={"client_id": "cid", "client_secret": "csecret"},
            tautulli={"url": tautulli.url, "api_key": TAUTULLI_KEY},
        )
        run = await cli(home.config, "import", "tautulli", "--profile", "sam", "--user", "alice")
        assert run.code == 0, run.err
        assert {p for _, p, _ in await self.profiles_of_plays(home)} == {"sam"}

    async def test_a_user_in_no_profile_needs_a_profile_named(
        self, home: Home, tautulli: FakeTautulli
    ) -> None:
        home.configure(
            self.PROFILES,
            trakt={"client_id": "cid", "client_secret": "csecret"},
            tautulli={"url": tautulli.url, "api_key": TAUTULLI_KEY},
        )
        run = await cli(home.config, "import", "tautulli", "--user", "carol")
        assert run.code == 2
        assert run.err_lines == [
            "crosswatchd: config error: --profile: tautulli user 'carol' is in no profile:"
            " name the profile its plays belong to (alex, sam)"
        ]
        assert await home.query("SELECT count(*) FROM events") == [(0,)]


# -- serve ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def wait_healthy(url: str, proc: asyncio.subprocess.Process, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            assert proc.returncode is None, "serve exited early"
            try:
                async with session.get(url) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError(f"{url} did not answer within {timeout_s} s")


@dataclass
class Daemon:
    """A running ``crosswatchd serve``; after :meth:`stop`, its exit code and output."""

    proc: asyncio.subprocess.Process
    base: str
    secret: str
    trakt: FakeTrakt
    token: dict[str, Any]
    code: int | None = None
    out: str = ""
    err: str = ""
    stop_s: float = 0.0

    async def post_scrobble(self, token: str) -> int:
        form = aiohttp.FormData()
        form.add_field("payload", PLEX_SCROBBLE.read_text(), content_type="application/json")
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{self.base}/webhook/plex", params={"token": token}, data=form) as resp,
        ):
            return resp.status

    async def stop(self) -> None:
        """SIGTERM, then wait (at most 10 s) for the exit."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(self.proc.communicate(), timeout=10)
        self.stop_s = time.monotonic() - started
        self.code, self.out, self.err = self.proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def daemon(home: Home) -> AsyncIterator[Daemon]:
    """``serve`` on a free port with Trakt (authorized) pointed at a FakeTrakt."""
    async with FakeTrakt(client_id="cid", client_secret="csecret") as trakt:
        token = trakt.issue_token()
        TokenStore(home.data_dir, "trakt").save(token)
        port = free_port()
        home.configure(
            http={"port": port},
            trakt={"client_id": "cid", "client_secret": "csecret", "api_url": trakt.url},
            simkl={"enabled": False},
            resolver={"use_search": False},
            delivery={"poll_s": 0.2},
        )
        proc = await asyncio.create_subprocess_exec(
            *COMMAND,
            "--config",
            str(home.config),
            "serve",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=_env(),
        )
        try:
            base = f"http://127.0.0.1:{port}"
            await wait_healthy(f"{base}/healthz", proc, timeout_s=15)
            secret = (home.data_dir / "webhook_secret").read_text().strip()
            yield Daemon(proc, base, secret, trakt, token)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


class TestServe:
    """``serve`` runs the intake and the drainers until SIGTERM."""

    async def test_healthz_answers_and_sigterm_exits_0_within_seconds(self, daemon: Daemon) -> None:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{daemon.base}/healthz") as resp,
        ):
            assert resp.status == 200
        await daemon.stop()
        assert daemon.code == 0, daemon.err
        assert daemon.stop_s < 5
        assert "Traceback" not in daemon.err

    async def test_logs_are_json_lines_on_stdout_without_secrets(self, daemon: Daemon) -> None:
        assert await daemon.post_scrobble(daemon.secret) == 202
        assert await daemon.post_scrobble("wrong-token") == 401
        await daemon.stop()
        records = [orjson.loads(line) for line in daemon.out.splitlines()]
        events = [r["event"] for r in records]
        for name in ("daemon.started", "webhook.accepted", "webhook.rejected", "daemon.stopped"):
            assert name in events, events
        assert daemon.secret not in daemon.out
        # the generated URL is shown once on stderr, by design (a console notice, not the log)
        assert daemon.err.count(daemon.secret) <= 1
        for value in (daemon.token["access_token"], daemon.token["refresh_token"], "csecret"):
            assert value not in daemon.out + daemon.err

    async def test_a_plex_scrobble_reaches_trakt_history(self, daemon: Daemon) -> None:
        assert await daemon.post_scrobble(daemon.secret) == 202
        for _ in range(200):  # up to 10 s
            if daemon.trakt.history:
                break
            await asyncio.sleep(0.05)
        await daemon.stop()
        (play,) = daemon.trakt.history
        assert play["movie"]["ids"]["imdb"] == "tt0090728"


# -- auth ------------------------------------------------------------------------------------


class TestAuth:
    """`crosswatchd auth trakt|simkl` as a user runs it: URL and code shown, token stored 0600."""

    async def test_auth_trakt_device_flow_stores_the_token_and_status_sees_it(
        self, home: Home
    ) -> None:
        async with FakeTrakt(device_interval_s=0.2, auto_approve_after=2) as fake:
            home.configure(
                trakt={
                    "client_id": fake.client_id,
                    "client_secret": fake.client_secret,
                    "api_url": fake.url,
                }
            )
            run = await cli(home.config, "auth", "trakt")
            assert run.code == 0, run.err
            (device,) = fake.devices.values()
            assert device.user_code in run.out
            assert "trakt.tv/activate" in run.out
            token_file = home.data_dir / "tokens" / "trakt.json"
            assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
            stored = TokenStore(home.data_dir, "trakt").load()
            assert stored is not None and stored.refresh_token
            assert stored.access_token not in run.out + run.err
            status = await cli(home.config, "status", "--json")
            assert json.loads(status.out)["providers"]["trakt"]["authorized"] is True

    async def test_auth_with_a_profile_stores_that_members_token_apart(self, home: Home) -> None:
        async with FakeTrakt(device_interval_s=0.2) as fake:
            home.configure(
                profiles=[{"name": "alex"}, {"name": "sam"}],
                trakt={
                    "client_id": fake.client_id,
                    "client_secret": fake.client_secret,
                    "api_url": fake.url,
                },
            )
            ambiguous = await cli(home.config, "auth", "trakt")
            assert ambiguous.code == 2
            assert "--profile" in ambiguous.err and "alex, sam" in ambiguous.err

            async def approve() -> None:
                while not fake.devices:  # noqa: ASYNC110 - the fake has no event to wait on
                    await asyncio.sleep(0.05)
                (code,) = fake.devices
                fake.approve_device(code, user="sam")

            approver = asyncio.create_task(approve())
            run = await cli(home.config, "auth", "trakt", "--profile", "sam")
            await approver
            assert run.code == 0, run.err
            token_file = home.data_dir / "tokens" / "sam" / "trakt.json"
            assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
            assert stat.S_IMODE(token_file.parent.stat().st_mode) == 0o700
            assert not (home.data_dir / "tokens" / "trakt.json").exists()
            stored = TokenStore(home.data_dir, "trakt", "sam").load()
            assert stored is not None and fake.token_user(stored.access_token) == "sam"
            report = json.loads((await cli(home.config, "status", "--json")).out)
            assert report["profiles"]["sam"]["trakt"]["authorized"] is True
            assert report["profiles"]["alex"]["trakt"]["authorized"] is False
            assert report["providers"]["trakt"]["authorized"] is False  # not every account
            text = (await cli(home.config, "status")).out
            assert "profile alex" in text and "profile sam" in text
            assert "crosswatchd auth trakt --profile alex" in text

    async def test_auth_trakt_denied_is_one_line_and_stores_nothing(self, home: Home) -> None:
        async with FakeTrakt(device_interval_s=0.2) as fake:
            home.configure(
                trakt={
                    "client_id": fake.client_id,
                    "client_secret": fake.client_secret,
                    "api_url": fake.url,
                }
            )
            proc = asyncio.create_task(cli(home.config, "auth", "trakt"))
            for _ in range(100):
                if fake.devices:
                    break
                await asyncio.sleep(0.05)
            (code,) = fake.devices
            fake.deny_device(code)
            run = await proc
            assert run.code == 1
            assert len(run.err_lines) == 1 and "Traceback" not in run.err
            assert not (home.data_dir / "tokens" / "trakt.json").exists()

    async def test_auth_simkl_pin_flow_stores_the_token(self, home: Home) -> None:
        from tests.fakes.simkl import FakeSimkl

        async with FakeSimkl(pin_interval_s=0.2) as fake:
            fake.auto_approve_after = 1
            home.configure(simkl={"client_id": fake.client_id, "api_url": fake.url})
            run = await cli(home.config, "auth", "simkl")
            assert run.code == 0, run.err
            assert "simkl.com/pin" in run.out
            token_file = home.data_dir / "tokens" / "simkl.json"
            assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
            stored = TokenStore(home.data_dir, "simkl").load()
            assert stored is not None and stored.access_token in fake.tokens

    @pytest.mark.parametrize("provider", ["trakt", "simkl"])
    async def test_auth_with_the_service_unreachable_is_one_line_naming_it(
        self, home: Home, provider: str
    ) -> None:
        with socket.socket() as sock:  # a port nobody listens on
            sock.bind(("127.0.0.1", 0))
            dead_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        home.configure(
            **{provider: {"client_id": "c" * 16, "client_secret": "s" * 16, "api_url": dead_url}}
        )
        run = await cli(home.config, "auth", provider)
        assert run.code == 1
        assert len(run.err_lines) == 1 and "Traceback" not in run.err
        name = {"trakt": "Trakt", "simkl": "SIMKL"}[provider]
        assert f"could not reach {name}" in run.err_lines[0]

    async def test_auth_without_credentials_names_the_key(self, home: Home) -> None:
        home.configure(simkl={"client_id": ""})
        run = await cli(home.config, "auth", "simkl")
        assert run.code == 2
        assert run.err_lines == ["crosswatchd: config error: simkl.client_id: set simkl.client_id"]
