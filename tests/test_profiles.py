"""Households in the configuration: ``[[profiles]]`` (file or ``CROSSWATCHD_PROFILES``), the
errors that name the key or the account, and the routing of source accounts to profiles."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from crosswatchd.config import load_settings
from crosswatchd.errors import ConfigError
from crosswatchd.profiles import DEFAULT_PROFILE, Household, TargetAccount

TWO = """
[trakt]
client_id = "t"
client_secret = "ts"
[simkl]
client_id = "s"

[[profiles]]
name = "alex"
plex_accounts = ["Alex", "12345"]
tautulli_users = ["alex"]

[[profiles]]
name = "sam"
plex_accounts = ["Sam"]
tautulli_users = ["sam"]
targets = ["simkl"]
"""


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.upper().startswith("CROSSWATCHD_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


def error(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    return caught.value


class TestConfiguration:
    def test_profiles_from_the_file(self, tmp_path: Path) -> None:
        household = Household.from_settings(load_settings(write(tmp_path, TWO)))
        assert household.names() == ["alex", "sam"]
        assert household.accounts() == [
            TargetAccount("alex", "trakt"),
            TargetAccount("alex", "simkl"),
            TargetAccount("sam", "simkl"),
        ]

    def test_profiles_from_the_environment_as_a_json_list(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("CROSSWATCHD_TRAKT__CLIENT_ID", "t")
        monkeypatch.setenv(
            "CROSSWATCHD_PROFILES",
            '[{"name": "alex", "plex_accounts": ["Alex"]}, {"name": "sam"}]',
        )
        household = Household.from_settings(load_settings())
        assert household.names() == ["alex", "sam"]

    def test_profiles_in_the_environment_must_be_json(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("CROSSWATCHD_PROFILES", "alex,sam")
        with pytest.raises(ConfigError) as caught:
            load_settings()
        assert caught.value.key == "CROSSWATCHD_PROFILES"

    def test_without_profiles_one_implicit_default(self, tmp_path: Path) -> None:
        settings = load_settings(
            write(tmp_path, '[trakt]\nclient_id = "t"\n[tautulli]\nusers = ["Me"]\n')
        )
        household = Household.from_settings(settings)
        assert household.names() == [DEFAULT_PROFILE]
        assert not household.explicit
        assert household.accounts() == [TargetAccount("default", "trakt")]

    @pytest.mark.parametrize(
        ("extra", "key", "words"),
        [
            ('[plex]\naccounts = ["X"]\n', "plex.accounts", "must be empty"),
            ('[tautulli]\nusers = ["x"]\n', "tautulli.users", "must be empty"),
        ],
    )
    def test_global_account_lists_must_be_empty_with_profiles(
        self, tmp_path: Path, extra: str, key: str, words: str
    ) -> None:
        err = error(write(tmp_path, extra + TWO))
        assert err.key == key
        assert words in str(err)

    def test_an_account_in_two_profiles_names_the_account(self, tmp_path: Path) -> None:
        err = error(
            write(tmp_path, TWO.replace('plex_accounts = ["Sam"]', 'plex_accounts = ["alex"]'))
        )
        assert err.key == "profiles[1].plex_accounts"
        assert "'alex'" in str(err)

    def test_an_unknown_target_names_the_key(self, tmp_path: Path) -> None:
        err = error(write(tmp_path, TWO.replace('targets = ["simkl"]', 'targets = ["letterboxd"]')))
        assert err.key == "profiles[1].targets"
        assert "letterboxd" in str(err)

    def test_a_target_that_is_not_configured_names_the_key(self, tmp_path: Path) -> None:
        err = error(write(tmp_path, TWO.replace('[simkl]\nclient_id = "s"\n', "")))
        assert err.key == "profiles[1].targets"
        assert "simkl.client_id" in str(err)

    @pytest.mark.parametrize("name", ["Alex", "a b", "", "x" * 33, "ünï"])
    def test_a_bad_name_names_the_key(self, tmp_path: Path, name: str) -> None:
        err = error(write(tmp_path, TWO.replace('name = "alex"', f'name = "{name}"')))
        assert err.key == "profiles[0].name"

    def test_a_name_used_twice(self, tmp_path: Path) -> None:
        err = error(write(tmp_path, TWO.replace('name = "sam"', 'name = "alex"')))
        assert err.key == "profiles[1].name"


class TestRouting:
    @pytest.fixture
    def household(self, tmp_path: Path) -> Household:
        return Household.from_settings(load_settings(write(tmp_path, TWO)))

    def test_plex_account_title_case_insensitive(self, household: Household) -> None:
        alex = household.for_plex("ALEX", "7", user=False)
        assert alex is not None and alex.name == "alex"

    def test_plex_account_id_as_a_string(self, household: Household) -> None:
        alex = household.for_plex("Someone", "12345", user=False)
        assert alex is not None and alex.name == "alex"

    def test_a_stranger_belongs_to_nobody(self, household: Household) -> None:
        assert household.for_plex("Guest", "99", user=True) is None
        assert household.for_tautulli("guest") is None

    def test_tautulli_username(self, household: Household) -> None:
        sam = household.for_tautulli("Sam")
        assert sam is not None and sam.name == "sam"

    def test_implicit_profile_with_no_plex_accounts_takes_the_owners_own_plays(
        self, tmp_path: Path
    ) -> None:
        household = Household.from_settings(load_settings(write(tmp_path, "")))
        assert household.for_plex("Anyone", "1", user=True) is not None
        assert household.for_plex("Anyone", "1", user=False) is None

    def test_pick_one_or_all(self, household: Household) -> None:
        assert [p.name for p in household.pick(None)] == ["alex", "sam"]
        assert [p.name for p in household.pick("sam")] == ["sam"]
        with pytest.raises(KeyError):
            household.pick("nobody")
