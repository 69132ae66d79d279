"""TV Time's GDPR export → episode plays (and movie plays), streamed.

``FILE`` is the GDPR ZIP or its ``tracking-prod-records-v2.csv``. Facts, from
``/work/shared/reference/tvtime/README.md`` §1 (and §4, the rule for crosswatchd):

- Episodes come from ``tracking-prod-records-v2.csv`` at the ZIP's root, read by column name:
  the order differs between exports, and an account without history has a slim header with no
  episode column at all (trakt-web #2798). ``key`` and ``created_at`` are needed.
- Row kinds by ``key``: ``watch-episode-<series uuid>-<episode uuid>`` is a seen episode,
  ``rewatch-episode-…`` a rewatch with its own row and ``created_at`` — both are plays
  (:class:`EpisodeWatch`, ``rewatch`` telling which); ``user-series-<uuid>`` (show state) and
  ``tracking-stats`` (totals) are not plays and are only counted
  (:attr:`TableStats.non_play`).
- ``created_at`` is ``YYYY-MM-DD HH:MM:SS`` without a zone marker, and is **UTC** (a v1 row's
  ``created_at`` equals its ``watch-date-<unix seconds>``); it is the play's time.
- Ids are **TVDB**: ``ep_id`` the episode's, ``s_id`` the series'; ``s_no``/``ep_no`` the
  numbers, some exports carrying them as ``season_number``/``episode_number`` (and the episode
  id as ``episode_id``) instead — read as fallbacks. Specials are season ``0`` with
  ``is_special`` true. ``bulk_type`` is ``season`` when a whole season was marked at once (those
  rows share one ``created_at``). ``series_name`` may carry a year ("Bodyguard (2018)"): it is
  kept for display only; matching is by id, never by title.
- Movies (ZIP only): ``tracking-prod-records.csv`` (v1) rows with ``type=watch`` and
  ``entity_type=movie`` (:class:`MovieWatch`), at ``watch_date_range_key``
  (``watch-date-<unix seconds>``), named by ``movie_name`` (localized) and the English slug in
  ``alpha_range_key`` (``watch-alpha-<slug>``), the year from ``release_date`` (``0000-…`` and
  ``0001-01-01`` mean none). They carry no ids: matching is by title and year.

Idempotency key: an episode row's ``key`` + ``@`` + its ``created_at`` (UTC,
``YYYY-MM-DD HH:MM:SS``); a movie row's ``type-uuid-n`` (else ``uuid``) + ``@`` + its time.

Usage::

    with open_tvtime(file) as export:          # FileFormatError here, or never
        for watch in export.episodes():        # EpisodeWatch, streamed
            ...
        for watch in export.movies():          # MovieWatch (none without the v1 file)
            ...
        export.stats                           # rows, plays, non-play kinds, skipped rows
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Final

from crosswatchd.imports._files import (
    FileFormatError,
    InputFile,
    RowError,
    Table,
    TableStats,
    clean_text,
)
from crosswatchd.models import Ids, Item, MediaKind

__all__ = [
    "EPISODES_FILE",
    "MOVIES_FILE",
    "EpisodeWatch",
    "MovieWatch",
    "TvTimeReader",
    "open_tvtime",
]

EPISODES_FILE: Final = "tracking-prod-records-v2.csv"
MOVIES_FILE: Final = "tracking-prod-records.csv"

_EPISODES_NEED: Final = ("key", "created_at")
_MOVIES_NEED: Final = ("type", "entity_type", "created_at")
_WATCH: Final = "watch-episode-"
_REWATCH: Final = "rewatch-episode-"
_WATCH_DATE: Final = "watch-date-"
_TRUE: Final = frozenset({"true", "1", "yes", "t"})
_FALSE: Final = frozenset({"", "false", "0", "no", "f"})
#: Times before this are placeholders (Go's zero time ``0001-01-01``), not watch times.
_EARLIEST: Final = datetime(1971, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class EpisodeWatch:
    """One ``watch-episode-`` or ``rewatch-episode-`` row of the v2 file: an episode play.

    ``key``: the row's ``key`` + ``@`` + ``created_at`` (see the module docstring). ``line``:
    where the row starts (header = 1). ``watched_at``: ``created_at`` as an aware UTC datetime.
    ``tvdb_episode_id`` (``ep_id``) and ``tvdb_series_id`` (``s_id``): decimal strings or
    ``None``; at least the episode id, or the series id with ``season`` and ``number``, is set.
    ``season``: ``s_no`` (``0`` for a special); ``number``: ``ep_no``. ``series_name``: for
    display only. ``rewatch``: a ``rewatch-episode-`` row. ``special``: ``is_special`` or
    season 0. ``bulk_type``: ``"season"`` when marked with its whole season, else ``None``.
    """

    key: str
    line: int
    watched_at: datetime
    tvdb_episode_id: str | None
    tvdb_series_id: str | None
    season: int | None
    number: int | None
    series_name: str
    rewatch: bool
    special: bool = False
    bulk_type: str | None = None

    def item(self) -> Item:
        """The episode as an :class:`~crosswatchd.models.Item`: TVDB ids, show name, numbers."""
        return Item(
            kind=MediaKind.EPISODE,
            ids=Ids(tvdb=self.tvdb_episode_id),
            show_title=self.series_name or None,
            show_ids=Ids(tvdb=self.tvdb_series_id),
            season=self.season,
            number=self.number,
        )


@dataclass(frozen=True, slots=True)
class MovieWatch:
    """One ``type=watch``, ``entity_type=movie`` row of the v1 file: a movie play.

    ``key``: ``type-uuid-n`` (else ``uuid``) + ``@`` + the time. ``watched_at``: from
    ``watch_date_range_key`` (``created_at`` when that is empty), aware UTC. ``title``:
    ``movie_name`` (NFC; the slug with spaces when empty). ``slug``: the English title slug from
    ``alpha_range_key`` (``what-happened-to-monday``) or ``None``. ``year``: of
    ``release_date``, ``None`` when empty, ``0000-…``, ``0001-01-01`` or unreadable.
    """

    key: str
    line: int
    watched_at: datetime
    title: str
    year: int | None
    slug: str | None = None

    def item(self) -> Item:
        """The movie as an :class:`~crosswatchd.models.Item`, by title and year only."""
        return Item(kind=MediaKind.MOVIE, title=self.title, year=self.year)


class TvTimeReader:
    """An opened TV Time export; see the module docstring. Use :func:`open_tvtime`.

    ``path``: the ``FILE``. ``has_movies``: the ZIP has ``tracking-prod-records.csv``.
    ``stats``: one :class:`TableStats` per file read, from its latest pass. Each call of
    :meth:`episodes`/:meth:`movies` is a fresh pass; neither holds rows in memory.
    """

    def __init__(self, source: InputFile, episodes: Table, movies: Table | None) -> None:
        self.path = source.path
        self._source = source
        self._episodes = episodes
        self._movies = movies
        self._stats: dict[str, TableStats] = {}

    @property
    def has_movies(self) -> bool:
        """True when the ZIP carries the v1 file with the movie plays."""
        return self._movies is not None

    @property
    def stats(self) -> tuple[TableStats, ...]:
        """What the latest pass over each file saw."""
        return tuple(self._stats.values())

    @property
    def rows_estimate(self) -> int:
        """The data rows of the files :meth:`episodes` and :meth:`movies` read, at most (their
        lines after the header), known before they are read: the total of a progress bar."""
        movies = self._movies.rows_estimate if self._movies is not None else 0
        return self._episodes.rows_estimate + movies

    def episodes(self) -> Iterator[EpisodeWatch]:
        """Every episode play of the v2 file, in file order, streamed.

        Non-play rows are counted by kind (``user-series``, ``tracking-stats``, ``other``). A
        play row is skipped and named when its ``created_at`` is missing or not a time, an id
        or number is not a whole number, or it has neither an episode id nor a series id with
        season and episode numbers (e.g. a slim header without episode columns).
        """
        table = self._episodes
        stats = self._stats[table.name] = TableStats(table.name)
        col = table.columns
        i_key, i_created = col["key"], col["created_at"]
        i_ep = _first(col, "ep_id", "episode_id")
        i_show = col.get("s_id")
        i_season, i_season2 = col.get("s_no"), col.get("season_number")
        i_number, i_number2 = col.get("ep_no"), col.get("episode_number")
        i_special, i_bulk, i_name = (
            col.get("is_special"),
            col.get("bulk_type"),
            col.get("series_name"),
        )
        for line, row in table.rows(stats):
            key = row[i_key].strip()
            if key.startswith(_WATCH):
                rewatch = False
            elif key.startswith(_REWATCH):
                rewatch = True
            else:
                if not key:
                    stats.skip(line, "no key")
                else:
                    stats.non_play[_kind(key)] += 1
                continue
            try:
                stamp = row[i_created].strip()
                watched_at = _utc(stamp, "created_at")
                episode_id = _tvdb(row, i_ep, "ep_id")
                show_id = _tvdb(row, i_show, "s_id")
                season = _number(row, i_season, "s_no")
                if season is None:
                    season = _number(row, i_season2, "season_number")
                number = _number(row, i_number, "ep_no")
                if number is None:
                    number = _number(row, i_number2, "episode_number")
                special = _flag(row, i_special, "is_special")
                if episode_id is None and (show_id is None or season is None or number is None):
                    raise RowError(
                        "no TVDB episode id (ep_id), nor series id (s_id) with season and "
                        "episode numbers"
                    )
            except RowError as err:
                stats.skip(line, str(err))
                continue
            if special:
                season = 0
            bulk = row[i_bulk].strip() if i_bulk is not None else ""
            stats.plays += 1
            yield EpisodeWatch(
                key=f"{key}@{_stamp(stamp, watched_at)}",
                line=line,
                watched_at=watched_at,
                tvdb_episode_id=episode_id,
                tvdb_series_id=show_id,
                season=season,
                number=number,
                series_name=clean_text(row[i_name]) if i_name is not None else "",
                rewatch=rewatch,
                special=special or season == 0,
                bulk_type=bulk or None,
            )

    def movies(self) -> Iterator[MovieWatch]:
        """Every movie play of the v1 file (``type=watch``, ``entity_type=movie``), streamed.

        Nothing when the ZIP has no v1 file (or ``FILE`` is the bare v2 CSV). Other rows are
        counted by ``type`` and ``entity_type`` (``towatch movie``, ``watch episode``…); v1
        episode rows are never plays here (the v2 file has them). A movie row is skipped and
        named when it has no title, or its time is missing or unreadable.
        """
        table = self._movies
        if table is None:
            return
        stats = self._stats[table.name] = TableStats(table.name)
        col = table.columns
        i_type, i_entity, i_created = col["type"], col["entity_type"], col["created_at"]
        i_name, i_alpha = col.get("movie_name"), col.get("alpha_range_key")
        i_release, i_when = col.get("release_date"), col.get("watch_date_range_key")
        i_id, i_uuid = col.get("type-uuid-n"), col.get("uuid")
        for line, row in table.rows(stats):
            kind, entity = row[i_type].strip(), row[i_entity].strip()
            if kind != "watch" or entity != "movie":
                stats.non_play[f"{kind or '?'} {entity or '?'}"] += 1
                continue
            slug = _slug(row[i_alpha]) if i_alpha is not None else None
            title = clean_text(row[i_name]) if i_name is not None else ""
            try:
                if not title:
                    if not slug:
                        raise RowError("no movie_name")
                    title = slug.replace("-", " ")
                when = row[i_when].strip() if i_when is not None else ""
                watched_at = _unix(when) if when else _utc(row[i_created], "created_at")
            except RowError as err:
                stats.skip(line, str(err))
                continue
            ident = (row[i_id].strip() if i_id is not None else "") or (
                row[i_uuid].strip() if i_uuid is not None else ""
            )
            if not ident:
                ident = f"tvtime-movie:{slug or title}"
            stats.plays += 1
            yield MovieWatch(
                key=f"{ident}@{watched_at:%Y-%m-%d %H:%M:%S}",
                line=line,
                watched_at=watched_at,
                title=title,
                year=_release_year(row[i_release]) if i_release is not None else None,
                slug=slug,
            )

    def close(self) -> None:
        """Close the ZIP."""
        self._source.close()

    def __enter__(self) -> TvTimeReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def open_tvtime(path: str | os.PathLike[str]) -> TvTimeReader:
    """Open a TV Time GDPR ZIP or its ``tracking-prod-records-v2.csv`` for reading.

    Raises :class:`~crosswatchd.imports.FileFormatError` (one line: the file and the problem)
    when *path* is not a ZIP or CSV, the ZIP has no ``tracking-prod-records-v2.csv`` at its
    root or is password-protected or damaged, or a file it needs is not UTF-8 or lacks
    ``key``/``created_at`` (the v1 file: ``type``/``entity_type``/``created_at``).
    """
    source = InputFile.open(path)
    try:
        if source.is_zip:
            if source.find(EPISODES_FILE) is None:
                raise FileFormatError(source.path, _no_episodes_message(source))
            episodes = source.table(EPISODES_FILE, _EPISODES_NEED, _episodes_hint)
            movies = (
                source.table(MOVIES_FILE, _MOVIES_NEED)
                if source.find(MOVIES_FILE) is not None
                else None
            )
        else:
            episodes = source.table(None, _EPISODES_NEED, _episodes_hint)
            movies = None
    except BaseException:
        source.close()
        raise
    return TvTimeReader(source, episodes, movies)


# -- values ---------------------------------------------------------------------------------------


def _first(columns: Mapping[str, int], *names: str) -> int | None:
    """Index of the first of *names* in the header, else ``None``."""
    for name in names:
        if name in columns:
            return columns[name]
    return None


def _kind(key: str) -> str:
    """The non-play row kind of *key*, for counting."""
    if key == "tracking-stats":
        return key
    if key.startswith("user-series-"):
        return "user-series"
    return "other"


def _utc(text: str, column: str) -> datetime:
    """``YYYY-MM-DD HH:MM:SS`` (UTC, no marker; an ISO offset is honoured) → aware UTC."""
    value = text.strip()
    if not value:
        raise RowError(f"no {column}")
    try:
        if len(value) < 16:
            raise ValueError(value)
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise RowError(f"bad {column} {value!r} (expected YYYY-MM-DD HH:MM:SS)") from None
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    if moment < _EARLIEST:
        raise RowError(f"{column} {value!r} is a placeholder, not a watch time")
    return moment


def _stamp(text: str, moment: datetime) -> str:
    """*moment* as ``YYYY-MM-DD HH:MM:SS`` UTC: *text* itself when already so (the usual)."""
    if len(text) == 19 and text[10] == " " and moment.microsecond == 0:
        return text
    return f"{moment:%Y-%m-%d %H:%M:%S}"


def _unix(text: str) -> datetime:
    """``watch-date-<unix seconds>`` → aware UTC."""
    digits = text.removeprefix(_WATCH_DATE)
    if not (digits.isascii() and digits.isdigit()):
        raise RowError(f"bad watch_date_range_key {text!r} (expected watch-date-<seconds>)")
    try:
        moment = datetime.fromtimestamp(int(digits), UTC)
    except (OverflowError, OSError, ValueError):
        raise RowError(f"bad watch_date_range_key {text!r} (out of range)") from None
    if moment < _EARLIEST:
        raise RowError(f"watch_date_range_key {text!r} is a placeholder, not a watch time")
    return moment


def _tvdb(row: list[str], index: int | None, column: str) -> str | None:
    """A TVDB id as a decimal string; empty or ``0`` → ``None``."""
    if index is None:
        return None
    value = row[index].strip()
    if not value:
        return None
    if value.isascii() and value.isdigit():
        number = int(value)
        return str(number) if number else None
    raise RowError(f"bad {column} {value!r} (expected a TVDB id)")


def _number(row: list[str], index: int | None, column: str) -> int | None:
    if index is None:
        return None
    value = row[index].strip()
    if not value:
        return None
    if value.isascii() and value.isdigit():
        return int(value)
    raise RowError(f"bad {column} {value!r} (expected a whole number)")


def _flag(row: list[str], index: int | None, column: str) -> bool:
    if index is None:
        return False
    value = row[index].strip().casefold()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise RowError(f"bad {column} {row[index].strip()!r} (expected true or false)")


def _slug(text: str) -> str | None:
    """``watch-alpha-what-happened-to-monday`` → ``what-happened-to-monday``."""
    value = text.strip()
    _, sep, slug = value.partition("-alpha-")
    return (slug if sep else value) or None


def _release_year(text: str) -> int | None:
    """Year of ``release_date``; ``None`` for empty, ``0000-…``, ``0001-01-01``, unreadable."""
    head = text.strip()[:4]
    if len(head) == 4 and head.isascii() and head.isdigit() and int(head) > 1:
        return int(head)
    return None


def _no_episodes_message(source: InputFile) -> str:
    nested = source.nested(EPISODES_FILE)
    if nested:
        return (
            f"has no {EPISODES_FILE} at the top of the ZIP (there is {nested[0]}); "
            "give the ZIP that TV Time sent, or that CSV"
        )
    if source.find("seen_episode.csv") is not None:
        return (
            f"has no {EPISODES_FILE}: it is a TV Time export from before mid-2024 "
            "(seen_episode.csv), which is not supported"
        )
    if source.find("diary.csv") is not None:
        return "is a Letterboxd export, not TV Time's; use `import letterboxd`"
    return f"has no {EPISODES_FILE}; is it TV Time's GDPR data export?"


def _episodes_hint(columns: frozenset[str]) -> str | None:
    """What a CSV without the v2 columns probably is (README §1, §2 headers)."""
    if {"type", "entity_type"} <= columns:
        return f"this is {MOVIES_FILE} (v1); give {EPISODES_FILE} or the GDPR ZIP"
    if "series_tvdb_id" in columns or "is_watched" in columns:
        return (
            "this is a file of the 'TV Time Out' browser extension, not of the GDPR export; "
            f"give {EPISODES_FILE} or the GDPR ZIP"
        )
    if "Watched Date" in columns or "Letterboxd URI" in columns:
        return "this is a Letterboxd file; use `import letterboxd`"
    return None
