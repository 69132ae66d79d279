"""Letterboxd's data export → movie plays (diary entries) and film ratings.

``FILE`` is the export ZIP (``letterboxd-<user>-YYYY-MM-DD-HH-MM-utc.zip``) or its
``diary.csv``. Facts, from ``/work/shared/reference/letterboxd/README.md``:

- §2: the ZIP holds ``diary.csv`` at its root, header
  ``Date,Name,Year,Letterboxd URI,Rating,Rewatch,Tags,Watched Date``; ``deleted/diary.csv`` and
  ``orphaned/diary.csv`` have the same name and header but hold removed entries — only the root
  one is read. Columns are read by name: ``Name``, ``Letterboxd URI`` and ``Watched Date`` are
  needed; ``Year``, ``Rating``, ``Rewatch`` and ``Date`` are read when present.
- §2: ``diary.csv`` has one row per watch, rewatches included — each row is a play of its own;
  ``watched.csv`` (each film once) is not read (movary issue #195).
- §2: ``Watched Date`` is the day watched (``Date`` the day logged), ``YYYY-MM-DD`` without a
  time or zone. §3/§4: the play is put at **12:00 local time** on that date, in the member's
  zone (``--tz``), so that no zone shows it on another day (trakt-web #2964/#3015 anchored to
  12:00 UTC for the same reason); :attr:`DiaryEntry.watched_at` is that instant in UTC.
- §2: ``Rating`` is ``0.5`` … ``5`` (``4``, not ``4.0``), empty when unrated; ×2 gives the 1–10
  scale (§3: trakt-web and crosswatch double it). ``Rewatch`` is ``Yes`` or empty.
- §2: ``Letterboxd URI`` in ``diary.csv`` is the URI of the **diary entry**
  (``https://boxd.it/4P7hnr``), unique per entry: it is the entry's idempotency key, the same
  whether the ZIP or its bare ``diary.csv`` is read. In ``ratings.csv`` it is the **film's**
  URI, so it never matches a diary row; films are identified by title and year instead.
- §2: no imdb/tmdb ids anywhere; titles carry punctuation and diacritics
  (``Red, White & Royal Blue``, ``Yí (Endless River)``), same-title films of different years
  are common (Dune 1984/2021), and TV series or episodes are logged as films too — matching
  (title + year) and reporting the misses is the resolver's job, not this reader's.

Ratings (:meth:`LetterboxdReader.ratings`): a film's 1–10 rating is that of its **latest rated
diary entry** (by ``Watched Date``, then ``Date``, then line); ``ratings.csv`` in the ZIP rates
films that have no rated diary entry. An unrated rewatch does not clear an earlier rating.

Usage::

    zone = parse_zone(tz_option, path=file)
    with open_letterboxd(file, tz=zone) as export:   # FileFormatError here, or never
        for entry in export.diary():                 # DiaryEntry, streamed
            ...
        ratings = export.ratings()                   # {film_key(title, year): FilmRating}
        for stats in export.stats:                   # rows, plays, skipped (line + reason)
            ...

or :func:`read_letterboxd` for all of it at once.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, tzinfo
from types import TracebackType
from typing import Final

from crosswatchd.imports._files import (
    FileFormatError,
    InputFile,
    RowError,
    SkippedRow,
    Table,
    TableStats,
    clean_text,
    parse_date,
)
from crosswatchd.models import Item, MediaKind

__all__ = [
    "DIARY_FILE",
    "RATINGS_FILE",
    "DiaryEntry",
    "FilmKey",
    "FilmRating",
    "LetterboxdImport",
    "LetterboxdReader",
    "film_key",
    "open_letterboxd",
    "read_letterboxd",
]

DIARY_FILE: Final = "diary.csv"
RATINGS_FILE: Final = "ratings.csv"

_DIARY_NEEDS: Final = ("Name", "Letterboxd URI", "Watched Date")
_RATINGS_NEEDS: Final = ("Name", "Rating")
#: Local time of day a diary date becomes a play (README §4: "12:00 local on Watched Date").
_PLAY_TIME: Final = time(12, 0)
_YES: Final = frozenset({"yes", "true", "1"})
_NO: Final = frozenset({"", "no", "false", "0"})

#: A film as ratings and entries are matched: (NFC, case-folded title, year or None).
FilmKey = tuple[str, int | None]


def film_key(title: str, year: int | None) -> FilmKey:
    """How a film is identified within one export: title (NFC, case-folded) and year.

    Letterboxd's diary URIs name entries, not films (README §2), so title + year is all that
    ties a diary row to a ``ratings.csv`` row. Dune (1984) and Dune (2021) differ.
    """
    return clean_text(title).casefold(), year


@dataclass(frozen=True, slots=True)
class DiaryEntry:
    """One row of ``diary.csv``: one movie play.

    ``key``: the entry's ``Letterboxd URI`` (or, for a row without one, ``letterboxd-diary:``
    + title, year, date and the row's rank among identical ones). ``line``: where the row
    starts in ``diary.csv`` (header = 1). ``title``: ``Name``, NFC. ``year``: ``Year`` or
    ``None``. ``watched_on``: ``Watched Date``; ``watched_at``: 12:00 of that date in the
    reader's zone, as an aware UTC datetime. ``logged_on``: ``Date`` (when logged) or ``None``.
    ``rewatch``: Letterboxd's own ``Rewatch`` flag. ``rating10``: this entry's ``Rating`` × 2
    (1–10) or ``None``; the film's rating is :meth:`LetterboxdReader.ratings`'.
    """

    key: str
    line: int
    title: str
    year: int | None
    watched_on: date
    watched_at: datetime
    rewatch: bool
    rating10: int | None
    logged_on: date | None = None

    @property
    def film(self) -> FilmKey:
        """:func:`film_key` of this entry's film."""
        return film_key(self.title, self.year)

    def item(self) -> Item:
        """The played movie as an :class:`~crosswatchd.models.Item`, by title and year only."""
        return Item(kind=MediaKind.MOVIE, title=self.title, year=self.year)


@dataclass(frozen=True, slots=True)
class FilmRating:
    """A film's 1–10 rating and where it came from.

    ``file`` is ``diary.csv`` (the latest rated entry, at ``line``) or ``ratings.csv``;
    ``film_uri`` is the film's ``Letterboxd URI`` from ``ratings.csv`` (``None`` from the
    diary, whose URIs are entries'). ``rated_on``: the day the rating was given, as far as the
    export tells — the entry's ``Date`` (logged), else its ``Watched Date``; ``ratings.csv``'s
    ``Date`` — or ``None``.
    """

    title: str
    year: int | None
    rating10: int
    file: str
    line: int
    film_uri: str | None = None
    rated_on: date | None = None

    @property
    def film(self) -> FilmKey:
        """:func:`film_key` of the rated film."""
        return film_key(self.title, self.year)


@dataclass(frozen=True, slots=True)
class LetterboxdImport:
    """Everything :func:`read_letterboxd` read: entries in file order, ratings, statistics."""

    entries: tuple[DiaryEntry, ...]
    ratings: Mapping[FilmKey, FilmRating]
    stats: tuple[TableStats, ...]

    @property
    def skipped(self) -> tuple[SkippedRow, ...]:
        """The named skipped rows of every file read (see :data:`MAX_NAMED_SKIPS`)."""
        return tuple(row for stats in self.stats for row in stats.skipped)


class LetterboxdReader:
    """An opened Letterboxd export; see the module docstring. Use :func:`open_letterboxd`.

    ``path``: the ``FILE``; ``tz``: the member's zone; ``has_ratings_file``: the ZIP has a
    ``ratings.csv`` (a bare ``diary.csv`` never has). ``stats``: one :class:`TableStats` per
    file read, from its latest pass. Each :meth:`diary` call is a fresh pass over the file.
    """

    def __init__(self, source: InputFile, diary: Table, ratings: Table | None, tz: tzinfo) -> None:
        self.path = source.path
        self.tz = tz
        self._source = source
        self._diary = diary
        self._ratings = ratings
        self._stats: dict[str, TableStats] = {}

    @property
    def has_ratings_file(self) -> bool:
        """True when the ZIP carries ``ratings.csv``."""
        return self._ratings is not None

    @property
    def stats(self) -> tuple[TableStats, ...]:
        """What the latest pass over each file saw (rows, plays, skipped rows)."""
        return tuple(self._stats.values())

    @property
    def rows_estimate(self) -> int:
        """``diary.csv``'s data rows, at most (its lines after the header), known before
        :meth:`diary` reads it: the total of a progress bar."""
        return self._diary.rows_estimate

    def diary(self) -> Iterator[DiaryEntry]:
        """Every usable ``diary.csv`` row as a :class:`DiaryEntry`, in file order, streamed.

        A row with no ``Name``, a missing or bad ``Watched Date``, a bad ``Year``, ``Rating``
        (not 0.5–5 in halves), ``Rewatch`` (not ``Yes``/empty) or ``Date`` is skipped and named
        in :attr:`stats`.
        """
        table = self._diary
        stats = self._stats[table.name] = TableStats(table.name)
        col = table.columns
        i_name, i_uri, i_watched = col["Name"], col["Letterboxd URI"], col["Watched Date"]
        i_year, i_rating = col.get("Year"), col.get("Rating")
        i_rewatch, i_logged = col.get("Rewatch"), col.get("Date")
        tz = self.tz
        unkeyed: Counter[str] = Counter()
        for line, row in table.rows(stats):
            try:
                title = clean_text(row[i_name])
                if not title:
                    raise RowError("no Name")
                watched_on = parse_date(row[i_watched], "Watched Date")
                year = _year(row[i_year]) if i_year is not None else None
                rating10 = _rating10(row[i_rating]) if i_rating is not None else None
                rewatch = _rewatch(row[i_rewatch]) if i_rewatch is not None else False
                logged = row[i_logged].strip() if i_logged is not None else ""
                logged_on = parse_date(logged, "Date") if logged else None
            except RowError as err:
                stats.skip(line, str(err))
                continue
            key = row[i_uri].strip()
            if not key:
                base = f"letterboxd-diary:{title}|{year or ''}|{watched_on.isoformat()}"
                unkeyed[base] += 1
                key = f"{base}|{unkeyed[base]}"
            stats.plays += 1
            yield DiaryEntry(
                key=key,
                line=line,
                title=title,
                year=year,
                watched_on=watched_on,
                watched_at=datetime.combine(watched_on, _PLAY_TIME, tz).astimezone(UTC),
                rewatch=rewatch,
                rating10=rating10,
                logged_on=logged_on,
            )

    def ratings(self) -> dict[FilmKey, FilmRating]:
        """Each rated film's 1–10 rating: its latest rated diary entry, else ``ratings.csv``.

        Makes a fresh pass over ``diary.csv`` (its :attr:`stats` are replaced by identical
        ones) and one over ``ratings.csv`` when the ZIP has it; a ``ratings.csv`` row without
        ``Name`` or with a bad ``Year``, ``Rating`` or ``Date`` is skipped and named.
        """
        return self._rate(self.diary())

    def _rate(self, entries: Iterable[DiaryEntry]) -> dict[FilmKey, FilmRating]:
        latest: dict[FilmKey, DiaryEntry] = {}
        for entry in entries:
            if entry.rating10 is None:
                continue
            film = entry.film
            held = latest.get(film)
            if held is None or _recency(entry) >= _recency(held):
                latest[film] = entry
        out = {
            film: FilmRating(
                e.title,
                e.year,
                e.rating10,
                self._diary.name,
                e.line,
                rated_on=e.logged_on or e.watched_on,
            )
            for film, e in latest.items()
            if e.rating10 is not None
        }
        if self._ratings is not None:
            for rating in self._ratings_file(self._ratings):
                out.setdefault(rating.film, rating)
        return out

    def _ratings_file(self, table: Table) -> Iterator[FilmRating]:
        stats = self._stats[table.name] = TableStats(table.name)
        col = table.columns
        i_name, i_rating = col["Name"], col["Rating"]
        i_year, i_uri = col.get("Year"), col.get("Letterboxd URI")
        i_date = col.get("Date")
        for line, row in table.rows(stats):
            try:
                title = clean_text(row[i_name])
                if not title:
                    raise RowError("no Name")
                year = _year(row[i_year]) if i_year is not None else None
                rating10 = _rating10(row[i_rating])
                if rating10 is None:
                    raise RowError("no Rating")
                rated = row[i_date].strip() if i_date is not None else ""
                rated_on = parse_date(rated, "Date") if rated else None
            except RowError as err:
                stats.skip(line, str(err))
                continue
            stats.non_play["rating"] += 1
            uri = row[i_uri].strip() if i_uri is not None else ""
            yield FilmRating(title, year, rating10, table.name, line, uri or None, rated_on)

    def close(self) -> None:
        """Close the ZIP."""
        self._source.close()

    def __enter__(self) -> LetterboxdReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def open_letterboxd(path: str | os.PathLike[str], *, tz: tzinfo) -> LetterboxdReader:
    """Open a Letterboxd export ZIP or ``diary.csv`` for reading; plays are at 12:00 in *tz*.

    Raises :class:`~crosswatchd.imports.FileFormatError` (one line: the file and the problem)
    when *path* is not a ZIP or CSV, the ZIP has no ``diary.csv`` at its root or is
    password-protected or damaged, ``diary.csv`` (or the ZIP's ``ratings.csv``) is not UTF-8
    or lacks a needed column. Nothing is read row by row until :meth:`~LetterboxdReader.diary`.
    """
    source = InputFile.open(path)
    try:
        if source.is_zip:
            if source.find(DIARY_FILE) is None:
                raise FileFormatError(source.path, _no_diary_message(source))
            diary = source.table(DIARY_FILE, _DIARY_NEEDS, _diary_hint)
            ratings = (
                source.table(RATINGS_FILE, _RATINGS_NEEDS)
                if source.find(RATINGS_FILE) is not None
                else None
            )
        else:
            diary = source.table(None, _DIARY_NEEDS, _diary_hint)
            ratings = None
    except BaseException:
        source.close()
        raise
    return LetterboxdReader(source, diary, ratings, tz)


def read_letterboxd(path: str | os.PathLike[str], *, tz: tzinfo) -> LetterboxdImport:
    """:func:`open_letterboxd`, then every diary entry, the ratings and the statistics.

    Holds all entries in memory (a diary of 20,000 entries is a few MB); raises as
    :func:`open_letterboxd` does, and then returns everything or nothing.
    """
    with open_letterboxd(path, tz=tz) as export:
        entries = tuple(export.diary())
        ratings = export._rate(entries)
        return LetterboxdImport(entries, ratings, export.stats)


# -- values ---------------------------------------------------------------------------------------


def _recency(entry: DiaryEntry) -> tuple[date, date, int]:
    return entry.watched_on, entry.logged_on or date.min, entry.line


def _year(text: str) -> int | None:
    value = text.strip()
    if not value:
        return None
    if value.isascii() and value.isdigit() and 1 <= len(value) <= 4 and int(value) > 0:
        return int(value)
    raise RowError(f"bad Year {value!r}")


def _rating10(text: str) -> int | None:
    """``Rating`` 0.5–5 in halves → 1–10; empty → ``None`` (README §2, §3)."""
    value = text.strip()
    if not value:
        return None
    try:
        doubled = float(value) * 2
    except ValueError:
        doubled = -1.0
    if doubled.is_integer() and 1 <= doubled <= 10:
        return int(doubled)
    raise RowError(f"bad Rating {value!r} (expected 0.5 to 5 in steps of 0.5)")


def _rewatch(text: str) -> bool:
    value = text.strip().casefold()
    if value in _YES:
        return True
    if value in _NO:
        return False
    raise RowError(f"bad Rewatch {text.strip()!r} (expected Yes or empty)")


def _no_diary_message(source: InputFile) -> str:
    nested = source.nested(DIARY_FILE)
    if nested:
        return (
            f"has no {DIARY_FILE} at the top of the ZIP (there is {nested[0]}); "
            "give the ZIP that Letterboxd sent, or that diary.csv"
        )
    if source.find("tracking-prod-records-v2.csv") is not None:
        return "is a TV Time export, not Letterboxd's; use `import tvtime`"
    return f"has no {DIARY_FILE}; is it Letterboxd's data export (Settings → Data)?"


def _diary_hint(columns: frozenset[str]) -> str | None:
    """What a CSV without the diary's columns probably is (README §1, §2 headers)."""
    if {"Name", "Letterboxd URI", "Rating"} <= columns and "Watched Date" not in columns:
        return "this looks like Letterboxd's ratings.csv; give diary.csv or the export ZIP"
    if {"Name", "Letterboxd URI"} <= columns and "Watched Date" not in columns:
        return "this looks like Letterboxd's watched.csv or watchlist.csv; give diary.csv"
    if "WatchedDate" in columns or "Title" in columns:
        return "this is a CSV for importing into Letterboxd, not its diary.csv"
    if {"key", "created_at"} <= columns:
        return "this is a TV Time file; use `import tvtime`"
    return None
