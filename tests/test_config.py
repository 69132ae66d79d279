"""Settings: defaults, a TOML file, ``CROSSWATCHD_*`` environment overrides, and errors that
name the bad key (config.load_settings)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from crosswatchd.config import Settings, load_settings
from crosswatchd.errors import ConfigError


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No CROSSWATCHD_* variable from the outside; run in an empty directory."""
    for name in list(os.environ):
        if name.upper().startswith("CROSSWATCHD_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def write(tmp_path: Path, text: str, name: str = "crosswatchd.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def config_error(path: Path | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    return caught.value


class TestDefaults:
    """Without a file or environment, the documented defaults apply."""

    def test_defaults(self) -> None:
        settings = load_settings()
        assert settings.data_dir == Path.cwd() / "data"
        assert settings.config_file is None
        assert (settings.http.host, settings.http.port) == ("127.0.0.1", 8765)
        assert settings.trakt.api_url == "https://api.trakt.tv"
        assert settings.delivery.dedupe_window_s == 14_400
        assert settings.plex.accounts == []
        assert settings.tautulli.users == []
        assert settings.webhook.secret == ""

    def test_no_targets_without_client_ids(self) -> None:
        assert load_settings().providers() == []


class TestFile:
    """Values come from the TOML file given as *path*, or named by CROSSWATCHD_CONFIG."""

    TOML = """
        data_dir = "/srv/crosswatchd"
        log_level = "DEBUG"

        [http]
        host = "0.0.0.0"
        port = 9000

        [plex]
        accounts = ["Alice", "bob"]

        [trakt]
        client_id = "file-id"
        client_secret = "file-secret"

        [tautulli]
        url = "http://127.0.0.1:8181"
        users = ["alice"]

        [delivery]
        dedupe_window_s = 600
    """

    def test_file_values_are_loaded(self, tmp_path: Path) -> None:
        settings = load_settings(write(tmp_path, self.TOML))
        assert settings.data_dir == Path("/srv/crosswatchd")
        assert settings.log_level == "debug"
        assert (settings.http.host, settings.http.port) == ("0.0.0.0", 9000)
        assert settings.plex.accounts == ["Alice", "bob"]
        assert (settings.trakt.client_id, settings.trakt.client_secret) == (
            "file-id",
            "file-secret",
        )
        assert settings.tautulli.users == ["alice"]
        assert settings.delivery.dedupe_window_s == 600
        assert settings.providers() == ["trakt"]

    def test_unset_keys_of_a_section_keep_their_defaults(self, tmp_path: Path) -> None:
        settings = load_settings(write(tmp_path, "[http]\nport = 9000\n"))
        assert settings.http.host == "127.0.0.1"
        assert settings.http.max_body_bytes == 1_048_576

    def test_crosswatchd_config_selects_the_file(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("CROSSWATCHD_CONFIG", str(write(tmp_path, self.TOML)))
        assert load_settings().http.port == 9000

    def test_explicit_path_wins_over_crosswatchd_config(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("CROSSWATCHD_CONFIG", str(write(tmp_path, self.TOML, "env.toml")))
        chosen = write(tmp_path, "[http]\nport = 9100\n", "chosen.toml")
        assert load_settings(chosen).http.port == 9100

    def test_a_file_does_not_leak_into_later_loads(self, tmp_path: Path) -> None:
        load_settings(write(tmp_path, self.TOML))
        assert load_settings().http.port == 8765
        assert Settings().http.port == 8765


class TestEnvironment:
    """``CROSSWATCHD_SECTION__KEY`` overrides the file; other file keys stay."""

    def test_env_override_beats_the_file(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        path = write(tmp_path, "[http]\nport = 9000\n[trakt]\nclient_id = 'file-id'\n")
        monkeypatch.setenv("CROSSWATCHD_HTTP__PORT", "9200")
        monkeypatch.setenv("CROSSWATCHD_TRAKT__CLIENT_ID", "env-id")
        settings = load_settings(path)
        assert settings.http.port == 9200
        assert settings.trakt.client_id == "env-id"

    def test_env_override_keeps_the_files_other_keys_of_that_section(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        path = write(tmp_path, "[trakt]\nclient_id = 'file-id'\nclient_secret = 'file-secret'\n")
        monkeypatch.setenv("CROSSWATCHD_TRAKT__CLIENT_ID", "env-id")
        settings = load_settings(path)
        assert (settings.trakt.client_id, settings.trakt.client_secret) == (
            "env-id",
            "file-secret",
        )

    def test_env_without_a_file(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("CROSSWATCHD_HTTP__PORT", "9300")
        monkeypatch.setenv("CROSSWATCHD_DATA_DIR", "/var/lib/cw")
        settings = load_settings()
        assert settings.http.port == 9300
        assert settings.data_dir == Path("/var/lib/cw")

    def test_env_list_value_is_json(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("CROSSWATCHD_TAUTULLI__USERS", '["alice", "bob"]')
        assert load_settings().tautulli.users == ["alice", "bob"]

    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ("alice", ["alice"]),
            ("alice,bob", ["alice", "bob"]),
            (" alice , bob ,", ["alice", "bob"]),
        ],
    )
    def test_env_list_value_may_be_comma_separated(
        self, monkeypatch: pytest.MonkeyPatch, raw: str, expected: list[str]
    ) -> None:
        monkeypatch.setenv("CROSSWATCHD_TAUTULLI__USERS", raw)
        monkeypatch.setenv("CROSSWATCHD_PLEX__ACCOUNTS", raw)
        settings = load_settings()
        assert settings.tautulli.users == expected
        assert settings.plex.accounts == expected

    def test_env_names_are_case_insensitive(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("crosswatchd_http__port", "9301")
        assert load_settings().http.port == 9301


class TestDataDir:
    """A relative data_dir means the same folder whichever directory a command runs in."""

    def test_relative_data_dir_is_next_to_the_config_file(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        conf = tmp_path / "etc"
        conf.mkdir()
        path = write(conf, 'data_dir = "./data"\n')
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        monkeypatch.chdir(elsewhere)
        settings = load_settings(path)
        assert settings.data_dir == conf / "data"
        assert settings.config_file == path

    def test_default_data_dir_with_a_config_file_is_next_to_it(self, tmp_path: Path) -> None:
        conf = tmp_path / "etc"
        conf.mkdir()
        assert load_settings(write(conf, "")).data_dir == conf / "data"

    def test_relative_data_dir_from_the_environment_is_the_current_directory(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        conf = tmp_path / "etc"
        conf.mkdir()
        monkeypatch.setenv("CROSSWATCHD_DATA_DIR", "state")
        assert load_settings(write(conf, "")).data_dir == tmp_path / "state"

    def test_config_file_path_is_absolute(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        write(tmp_path, "")
        settings = load_settings("crosswatchd.toml")
        assert settings.config_file == tmp_path / "crosswatchd.toml"


class TestErrors:
    """Every problem is one ConfigError whose text names the dotted key (or --config)."""

    def test_port_out_of_range_names_http_port(self, tmp_path: Path) -> None:
        err = config_error(write(tmp_path, "[http]\nport = 70000\n"))
        assert err.key == "http.port"
        assert "http.port" in str(err)
        assert "\n" not in str(err)

    def test_wrong_type_names_the_key(self, tmp_path: Path) -> None:
        err = config_error(write(tmp_path, "[delivery]\ndedupe_window_s = 'long'\n"))
        assert err.key == "delivery.dedupe_window_s"

    def test_bad_env_value_names_the_variable(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("CROSSWATCHD_HTTP__PORT", "eighty")
        err = config_error()
        assert err.key == "CROSSWATCHD_HTTP__PORT"
        assert "CROSSWATCHD_HTTP__PORT" in str(err)
        assert "\n" not in str(err)

    def test_a_section_set_to_a_word_names_the_variable(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("CROSSWATCHD_HTTP", "x")
        err = config_error()
        assert err.key == "CROSSWATCHD_HTTP"
        assert "JSON object" in str(err)

    def test_a_section_as_a_json_object(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("CROSSWATCHD_HTTP", '{"port": 9444}')
        assert load_settings().http.port == 9444

    def test_a_bad_key_inside_a_json_section_names_the_variable(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("CROSSWATCHD_HTTP", '{"prot": 9444}')
        err = config_error()
        assert err.key == "CROSSWATCHD_HTTP"
        assert "unknown setting" in str(err)

    def test_a_bad_json_list_names_the_variable(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("CROSSWATCHD_TAUTULLI__USERS", '["alice",')
        err = config_error()
        assert err.key == "CROSSWATCHD_TAUTULLI__USERS"
        assert "JSON list" in str(err)

    def test_unknown_key_in_a_section(self, tmp_path: Path) -> None:
        err = config_error(write(tmp_path, "[http]\nprot = 9000\n"))
        assert err.key == "http.prot"
        assert "unknown key" in str(err)

    def test_unknown_env_key_in_a_section(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("CROSSWATCHD_HTTP__PROT", "9000")
        err = config_error()
        assert err.key == "CROSSWATCHD_HTTP__PROT"
        assert "unknown setting" in str(err)

    def test_unknown_env_section_is_reported_like_one_in_the_file(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("CROSSWATCHD_TRAK__CLIENT_ID", "x")
        err = config_error()
        assert err.key == "CROSSWATCHD_TRAK__CLIENT_ID"
        assert "unknown setting" in str(err)

    def test_unknown_top_level_env_variable(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("CROSSWATCHD_COLOUR", "blue")
        assert config_error().key == "CROSSWATCHD_COLOUR"

    def test_unknown_top_level_key(self, tmp_path: Path) -> None:
        err = config_error(write(tmp_path, "colour = 'blue'\n"))
        assert err.key == "colour"
        assert "unknown key" in str(err)

    def test_unknown_section(self, tmp_path: Path) -> None:
        err = config_error(write(tmp_path, "[trackt]\nclient_id = 'x'\n"))
        assert err.key == "trackt"
        assert "unknown key" in str(err)

    def test_bad_log_level_names_log_level(self, tmp_path: Path) -> None:
        err = config_error(write(tmp_path, "log_level = 'loud'\n"))
        assert err.key == "log_level"

    def test_missing_file_names_config_option(self, tmp_path: Path) -> None:
        missing = tmp_path / "nope.toml"
        err = config_error(missing)
        assert err.key == "--config"
        assert "--config" in str(err)
        assert str(missing) in str(err)

    def test_missing_file_from_env_names_config_option(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("CROSSWATCHD_CONFIG", str(tmp_path / "nope.toml"))
        err = config_error()
        assert err.key == "CROSSWATCHD_CONFIG"
        assert str(tmp_path / "nope.toml") in str(err)

    def test_invalid_toml_names_config_option(self, tmp_path: Path) -> None:
        err = config_error(write(tmp_path, "[http\nport = = 1\n"))
        assert err.key == "--config"
        assert "not valid TOML" in str(err)
        assert "\n" not in str(err)


class TestWatchlistSettings:
    """``[watchlist]`` and the Plex watchlist's keys (issue 17)."""

    def test_defaults_are_mode_plex_hourly_and_discover(self) -> None:
        settings = load_settings()
        assert (settings.watchlist.mode, settings.watchlist.interval_s) == ("plex", 3600.0)
        assert settings.plex.discover_url == "https://discover.provider.plex.tv"
        assert settings.plex.plextv_url == "https://plex.tv"

    def test_the_discover_url_comes_from_the_environment(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("CROSSWATCHD_PLEX__DISCOVER_URL", "http://127.0.0.1:9999")
        monkeypatch.setenv("CROSSWATCHD_WATCHLIST__MODE", "two-way")
        settings = load_settings()
        assert settings.plex.discover_url == "http://127.0.0.1:9999"
        assert settings.watchlist.mode == "two-way"

    def test_another_mode_names_watchlist_mode(self, tmp_path: Path) -> None:
        error = config_error(write(tmp_path, "[watchlist]\nmode = 'both'\n"))
        assert error.key == "watchlist.mode"
        assert "'plex' or 'two-way'" in str(error)

    def test_a_negative_interval_is_refused(self, tmp_path: Path) -> None:
        assert config_error(write(tmp_path, "[watchlist]\ninterval_s = -1\n")).key == (
            "watchlist.interval_s"
        )

    def test_a_profile_has_its_own_plex_token_never_in_its_repr(self, tmp_path: Path) -> None:
        from crosswatchd.profiles import Household

        path = write(tmp_path, "[[profiles]]\nname = 'sam'\nplex_token = 'sam-secret'\n")
        (sam,) = Household.from_settings(load_settings(path)).profiles
        assert sam.plex_token == "sam-secret" and "sam-secret" not in repr(sam)


class TestAnime:
    """``[anime]``: the Anime-Lists file for HAMA (AniDB) libraries."""

    def test_defaults_fetch_the_real_list_daily_and_retry_every_five_minutes(self) -> None:
        anime = load_settings().anime
        assert anime.mapping_url == (
            "https://raw.githubusercontent.com/Anime-Lists/anime-lists/master/anime-list-master.xml"
        )
        assert (anime.refresh_s, anime.retry_s) == (86400, 300)

    def test_file_and_environment(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        path = write(
            tmp_path, '[anime]\nmapping_url = "http://mirror.lan/list.xml"\nretry_s = 60\n'
        )
        monkeypatch.setenv("CROSSWATCHD_ANIME__REFRESH_S", "3600")
        anime = load_settings(path).anime
        assert (anime.mapping_url, anime.refresh_s, anime.retry_s) == (
            "http://mirror.lan/list.xml",
            3600,
            60,
        )

    def test_empty_url_from_the_environment_turns_it_off(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("CROSSWATCHD_ANIME__MAPPING_URL", "")
        assert load_settings().anime.mapping_url == ""

    def test_a_url_that_is_not_http_names_the_key(self, tmp_path: Path) -> None:
        error = config_error(write(tmp_path, '[anime]\nmapping_url = "ftp://x/list.xml"\n'))
        assert error.key == "anime.mapping_url"

    def test_a_zero_retry_names_the_variable(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("CROSSWATCHD_ANIME__RETRY_S", "0")
        assert config_error().key == "CROSSWATCHD_ANIME__RETRY_S"
