"""GUID parsing: every Plex GUID form yields the right ids, and garbage never raises."""

from __future__ import annotations

from typing import Any

import pytest

from crosswatchd.models import Ids
from crosswatchd.sources.guids import (
    ParsedGuid,
    guid_base,
    ids_from_guid_list,
    normalize_id,
    parse_guid,
)

_L = "com.plexapp.agents."


class TestNewAgentGuids:
    """``Guid[]`` entries of the new Plex agents name the item itself."""

    @pytest.mark.parametrize(
        ("guid", "ids"),
        [
            ("imdb://tt0090728", Ids(imdb="tt0090728")),
            ("tmdb://6978", Ids(tmdb="6978")),
            ("tvdb://1876", Ids(tvdb="1876")),
        ],
    )
    def test_external_id_guid_is_item_scoped(self, guid: str, ids: Ids) -> None:
        assert parse_guid(guid) == ParsedGuid(ids=ids, scope="item", agent=guid.split(":")[0])

    @pytest.mark.parametrize(
        "guid",
        [
            "plex://movie/5d7768313c3c2a001fbcd1f0",
            "plex://episode/5fbdc9a1bd6a1c002deb79cc",
            "plex://show/5d9c090e705e7a001e6e94d8",
        ],
    )
    def test_plex_guid_carries_no_external_ids(self, guid: str) -> None:
        assert parse_guid(guid) == ParsedGuid(scope="none", agent="plex")


class TestLegacyAgentGuids:
    """Legacy agents put the external id (and for TV, season/episode) in ``Metadata.guid``."""

    def test_imdb_agent_gives_movie_imdb_id_without_query(self) -> None:
        parsed = parse_guid(f"{_L}imdb://tt0072684?lang=en")
        assert parsed == ParsedGuid(ids=Ids(imdb="tt0072684"), scope="item", agent="imdb")

    def test_themoviedb_agent_bare_id_is_item(self) -> None:
        parsed = parse_guid(f"{_L}themoviedb://3175?lang=en")
        assert parsed == ParsedGuid(ids=Ids(tmdb="3175"), scope="item", agent="themoviedb")

    def test_themoviedb_agent_tv_path_gives_show_id_and_episode(self) -> None:
        parsed = parse_guid(f"{_L}themoviedb://615/2/15?lang=en")
        assert parsed == ParsedGuid(
            ids=Ids(tmdb="615"), season=2, number=15, scope="show", agent="themoviedb"
        )

    def test_thetvdb_agent_gives_show_tvdb_id_season_and_episode(self) -> None:
        parsed = parse_guid(f"{_L}thetvdb://73871/2/15?lang=en")
        assert parsed == ParsedGuid(
            ids=Ids(tvdb="73871"), season=2, number=15, scope="show", agent="thetvdb"
        )

    def test_thetvdb_agent_bare_id_is_a_show(self) -> None:
        parsed = parse_guid(f"{_L}thetvdb://73871?lang=en")
        assert parsed == ParsedGuid(ids=Ids(tvdb="73871"), scope="show", agent="thetvdb")

    def test_thetvdb_agent_season_guid_has_season_only(self) -> None:
        parsed = parse_guid(f"{_L}thetvdb://73871/2?lang=en")
        assert (parsed.ids, parsed.season, parsed.number) == (Ids(tvdb="73871"), 2, None)

    def test_tvdb_agent_alias_parses_like_thetvdb(self) -> None:
        parsed = parse_guid(f"{_L}tvdb://73871/2/15")
        assert parsed == ParsedGuid(
            ids=Ids(tvdb="73871"), season=2, number=15, scope="show", agent="tvdb"
        )

    def test_season_zero_specials_are_kept(self) -> None:
        parsed = parse_guid(f"{_L}thetvdb://73871/0/3?lang=en")
        assert (parsed.season, parsed.number) == (0, 3)

    def test_unreadable_episode_path_keeps_show_id_without_position(self) -> None:
        parsed = parse_guid(f"{_L}thetvdb://73871/x/15?lang=en")
        assert parsed == ParsedGuid(ids=Ids(tvdb="73871"), scope="show", agent="thetvdb")


class TestHamaGuids:
    """HAMA (anime) GUIDs: ``<source>-<id>/<season>/<episode>``."""

    def test_tvdb_mode_gives_show_tvdb_id_and_episode(self) -> None:
        parsed = parse_guid(f"{_L}hama://tvdb-12345/1/2?lang=en")
        assert parsed == ParsedGuid(
            ids=Ids(tvdb="12345"), season=1, number=2, scope="show", agent="hama"
        )

    @pytest.mark.parametrize("prefix", ["tvdb2", "tvdb3", "tvdb4", "tvdb5", "tvdb6"])
    def test_absolute_and_arc_tvdb_modes_keep_the_show_but_not_its_numbering(
        self, prefix: str
    ) -> None:
        """HAMA's tvdb2-…tvdb6- paths number episodes absolutely or by arc, not as TVDB does."""
        parsed = parse_guid(f"{_L}hama://{prefix}-12345/1/57?lang=en")
        assert parsed == ParsedGuid(ids=Ids(tvdb="12345"), scope="show", agent="hama")

    def test_bare_absolute_tvdb_mode_is_like_bare_tvdb(self) -> None:
        assert parse_guid(f"{_L}hama://tvdb2-12345") == parse_guid(f"{_L}hama://tvdb-12345")

    def test_anidb_episode_gives_anidb_id(self) -> None:
        parsed = parse_guid(f"{_L}hama://anidb-123/1/5?lang=en")
        assert parsed == ParsedGuid(
            ids=Ids(anidb="123"), season=1, number=5, scope="show", agent="hama"
        )

    def test_bare_anidb_id_is_item(self) -> None:
        parsed = parse_guid(f"{_L}hama://anidb-123?lang=en")
        assert parsed == ParsedGuid(ids=Ids(anidb="123"), scope="item", agent="hama")

    def test_unknown_hama_source_has_no_ids(self) -> None:
        assert parse_guid(f"{_L}hama://mal-5114/1/1") == ParsedGuid(agent="hama")


class TestGuidsWithoutIds:
    """Local, ``none`` and unknown agents carry no external ids; garbage never raises."""

    @pytest.mark.parametrize(
        ("guid", "agent"),
        [
            ("local://123", "local"),
            (f"{_L}none://5a3f1e2b?lang=xn", "none"),
            (f"{_L}plexmusic://gracenote/track/7572499-91016293BE6?lang=en", "plexmusic"),
        ],
    )
    def test_agent_without_external_ids(self, guid: str, agent: str) -> None:
        assert parse_guid(guid) == ParsedGuid(scope="none", agent=agent)

    @pytest.mark.parametrize(
        "garbage",
        [
            "",
            "   ",
            "tt0090728",
            "imdb://",
            "imdb://nm0000123",
            "imdb://tt",
            "tmdb://abc",
            "tmdb://0",
            "tvdb://-5",
            "tvdb://1e5",
            f"{_L}imdb://",
            f"{_L}thetvdb://?lang=en",
            f"{_L}thetvdb://abc/1/2",
            f"{_L}hama://",
            "://",
            "💥://💥/💥/💥",
            "com.plexapp.agents.thetvdb:/73871/2/15",
        ],
    )
    def test_garbage_gives_no_ids(self, garbage: str) -> None:
        parsed = parse_guid(garbage)
        assert not parsed.ids
        assert parsed.scope == "none"

    @pytest.mark.parametrize("not_text", [None, 12345, 1.5, ["imdb://tt0090728"], {"id": 1}])
    def test_non_string_input_gives_nothing(self, not_text: Any) -> None:
        assert parse_guid(not_text) == ParsedGuid()


class TestIdsFromGuidList:
    """The new-agent ``Guid`` array becomes one ``Ids``."""

    def test_all_three_ids_are_collected(self) -> None:
        ids = ids_from_guid_list(["imdb://tt0090728", "tmdb://6978", "tvdb://1876"])
        assert ids == Ids(imdb="tt0090728", tmdb="6978", tvdb="1876")

    def test_first_valid_id_of_a_kind_wins(self) -> None:
        assert ids_from_guid_list(["tmdb://x", "tmdb://6978", "tmdb://1"]) == Ids(tmdb="6978")

    def test_junk_entries_are_skipped(self) -> None:
        entries: list[Any] = [None, 5, "plex://movie/abc", "local://1", "imdb://tt0090728"]
        assert ids_from_guid_list(entries) == Ids(imdb="tt0090728")

    def test_show_scoped_legacy_entries_do_not_become_item_ids(self) -> None:
        assert ids_from_guid_list([f"{_L}thetvdb://73871/2/15"]) == Ids()

    def test_empty_list_gives_empty_ids(self) -> None:
        assert ids_from_guid_list([]) == Ids()


class TestNormalizeId:
    """Single-id validation used by both sources."""

    @pytest.mark.parametrize(
        ("name", "value", "expected"),
        [
            ("imdb", "tt0072684", "tt0072684"),
            ("imdb", " TT0072684 ", "tt0072684"),
            ("imdb", "0072684", None),
            ("imdb", 72684, None),
            ("tmdb", "3175", "3175"),
            ("tmdb", 3175, "3175"),
            ("tvdb", "073871", "73871"),
            ("tvdb", "0", None),
            ("tvdb", 0, None),
            ("tvdb", "", None),
            ("tvdb", True, None),
            ("anidb", "123", "123"),
            ("tmdb", "12.5", None),
            ("unknown", "1", None),
        ],
    )
    def test_normalize(self, name: str, value: object, expected: str | None) -> None:
        assert normalize_id(name, value) == expected


class TestGuidBase:
    """``guid_base`` drops what may differ between two reports of one item."""

    def test_legacy_language_query_is_dropped(self) -> None:
        assert guid_base(f" {_L}thetvdb://73871/2/15?lang=en ") == f"{_L}thetvdb://73871/2/15"

    def test_plex_guid_is_unchanged(self) -> None:
        assert guid_base("plex://episode/5de8dbdf18b6d6001db44001") == (
            "plex://episode/5de8dbdf18b6d6001db44001"
        )

    @pytest.mark.parametrize("value", [None, "", 5])
    def test_nothing_gives_empty_text(self, value: Any) -> None:
        assert guid_base(value) == ""
