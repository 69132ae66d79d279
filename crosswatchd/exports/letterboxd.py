"""Movie plays → the CSV that Letterboxd's importer takes (letterboxd.com/import).

Facts, from ``/work/shared/reference/letterboxd/README.md``:

- §1, §4: header ``Title,Year,imdbID,tmdbID,WatchedDate,Rating10,Rewatch`` (:data:`HEADER`),
  all documented import columns. A row with ``imdbID``/``tmdbID`` matches exactly, so both are
  written whenever known; title and year are only a best guess.
- §1: ``WatchedDate`` is ``YYYY-MM-DD``, the play's **local** calendar date: the UTC time is
  converted to the member's zone first, then truncated (SensBoxd #7 quoting the import page) —
  a 23:30 play in New York is that day there and the next day in Tokyo.
- §1, §3 (boxd-bridge): ``Rewatch`` is ``true`` on every play of a film after its first, counted
  over the whole history (also plays before ``--since``), else ``false``; ``Rating10`` is the
  film's 1–10 rating, **empty** when unrated ("a literal 0 would import as a real rating").
- §1: UTF-8, comma-separated, no space after a comma; a field with a comma is quoted. A double
  quote inside a field is **doubled** (RFC 4180), as in Letterboxd's own export files (§2,
  ``reviews.csv``) and as Python's ``csv`` reads it back; the import page's "backslash" rule is
  known only second-hand (§1) — with ids on the row, the title is not what matches.
- §1: **1 MB per file**: :func:`write_files` splits at :data:`MAX_FILE_BYTES` bytes into
  ``FILE``, ``FILE-2`` … (before the suffix: ``diary.csv``, ``diary-2.csv``), each with the
  header; :func:`write_stream` writes one stream and returns its size, for a note when it is
  over the limit.

Rows are one per play (the issue's rule); Letterboxd itself keeps one diary entry per film and
date (§1), so two plays of a film on one local day become one entry there.
"""

from __future__ import annotations

import csv
import io
import os
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from pathlib import Path
from typing import IO, Final

from crosswatchd.imports import FileFormatError
from crosswatchd.models import Item

__all__ = [
    "HEADER",
    "MAX_FILE_BYTES",
    "FilmPlay",
    "LetterboxdRow",
    "diary_rows",
    "film_plays",
    "leftover_parts",
    "part_path",
    "render_lines",
    "write_files",
    "write_stream",
]

HEADER: Final = ("Title", "Year", "imdbID", "tmdbID", "WatchedDate", "Rating10", "Rewatch")
#: Letterboxd refuses files over 1 MB (README §1); the issue sets the bound at 10^6 bytes.
MAX_FILE_BYTES: Final = 1_000_000

_IMDB: Final = re.compile(r"tt[0-9]+")
_TMDB: Final = re.compile(r"[0-9]+")


@dataclass(frozen=True, slots=True)
class FilmPlay:
    """One movie play to export.

    ``film_key`` identifies the film for ``Rewatch`` counting and for ``ratings`` (any stable
    string, e.g. ``"tmdb:438631"``): plays with equal keys are plays of one film. ``imdb``
    (``tt…``) and ``tmdb`` (decimal) are written when valid. ``watched_at`` must be aware.
    """

    film_key: str
    title: str
    year: int | None
    imdb: str | None
    tmdb: str | None
    watched_at: datetime

    def __post_init__(self) -> None:
        if self.watched_at.tzinfo is None:
            raise ValueError("FilmPlay.watched_at must be timezone-aware (UTC)")


@dataclass(frozen=True, slots=True)
class LetterboxdRow:
    """One CSV row: ``watched_on`` is the local date, ``rating10`` 1–10 or ``None``."""

    title: str
    year: int | None
    imdb: str | None
    tmdb: str | None
    watched_on: date
    rating10: int | None
    rewatch: bool

    def fields(self) -> tuple[str, str, str, str, str, str, str]:
        """The row's cells in :data:`HEADER` order, as written."""
        return (
            self.title,
            str(self.year) if self.year else "",
            self.imdb or "",
            self.tmdb or "",
            self.watched_on.isoformat(),
            str(self.rating10) if self.rating10 is not None else "",
            "true" if self.rewatch else "false",
        )


def film_plays(
    plays: Iterable[tuple[Item, datetime]],
    ratings: Iterable[tuple[Item, int | None]] = (),
) -> tuple[list[FilmPlay], dict[str, int]]:
    """The profile's movie plays as :class:`FilmPlay` objects, and its films' ratings keyed
    alike; pure.

    *plays*: ``(movie, watched_at)`` as the outbox holds them (the ids a delivery resolved,
    else the source's). *ratings*: ``(movie, 1-10 or None)`` oldest first; the last one of a
    film wins, ``None`` (cleared) removes it.

    Plays are of one film when their items share an imdb or tmdb id, directly or through
    another play (one known by imdb only, another by both, a third by tmdb only: one film,
    and every row gets both ids). An item with neither id is its title (NFC, case-folded) and
    year, and joins the film with ids of that title and year when there is exactly one such
    film (a play parked unresolved, beside plays that were resolved).
    """
    groups = _Films()
    held = list(plays)
    for item, _ in held:
        groups.add(item)
    groups.close()
    out = []
    for item, watched_at in held:
        key = groups.key(item)
        imdb, tmdb = groups.ids(key)
        out.append(
            FilmPlay(
                film_key=key,
                title=item.title,
                year=item.year,
                imdb=item.ids.imdb or imdb,
                tmdb=item.ids.tmdb or tmdb,
                watched_at=watched_at,
            )
        )
    rated: dict[str, int] = {}
    for item, rating in ratings:
        key = groups.key(item)
        if rating is None:
            rated.pop(key, None)
        else:
            rated[key] = rating
    return out, rated


class _Films:
    """Films as groups of id tokens (``imdb:tt…``, ``tmdb:…``), a union-find: :meth:`add`
    every item, :meth:`close`, then ask :meth:`key` and :meth:`ids`."""

    def __init__(self) -> None:
        self._parent: dict[str, str] = {}
        self._first_token: dict[tuple[str, int | None], list[str]] = {}
        self._film_ids: dict[str, tuple[str | None, str | None]] = {}
        self._title_roots: dict[tuple[str, int | None], set[str]] = {}

    @staticmethod
    def _tokens(item: Item) -> list[str]:
        ids = item.ids
        return [f"{n}:{v}" for n, v in (("imdb", ids.imdb), ("tmdb", ids.tmdb)) if v]

    @staticmethod
    def _title(item: Item) -> tuple[str, int | None]:
        return unicodedata.normalize("NFC", item.title.strip()).casefold(), item.year

    def _root(self, token: str) -> str:
        parent = self._parent.setdefault(token, token)
        while parent != token:  # path halving
            grand = self._parent[parent]
            self._parent[token] = grand
            token, parent = parent, grand
        return token

    def add(self, item: Item) -> None:
        """Note *item*'s ids: its imdb and tmdb ids are one film."""
        tokens = self._tokens(item)
        if not tokens:
            return
        first = self._root(tokens[0])
        for token in tokens[1:]:
            other = self._root(token)
            if other != first:
                self._parent[other] = first
        self._first_token.setdefault(self._title(item), []).append(tokens[0])

    def close(self) -> None:
        """Every film's ids, and the films of each title and year (after the last add)."""
        for token in self._parent:
            root = self._root(token)
            imdb, tmdb = self._film_ids.get(root, (None, None))
            name, _, value = token.partition(":")
            if name == "imdb" and imdb is None:
                imdb = value
            elif name == "tmdb" and tmdb is None:
                tmdb = value
            self._film_ids[root] = (imdb, tmdb)
        for title, tokens in self._first_token.items():
            self._title_roots[title] = {self._root(t) for t in tokens}

    def key(self, item: Item) -> str:
        """The film *item* is a play or rating of, as a stable string."""
        tokens = self._tokens(item)
        if tokens:
            return self._root(tokens[0])
        title = self._title(item)
        roots = self._title_roots.get(title, set())
        if len(roots) == 1:
            return next(iter(roots))
        return f"title:{title[0]}|{title[1] or ''}"

    def ids(self, key: str) -> tuple[str | None, str | None]:
        """An imdb and a tmdb id of film *key*, where any of its plays has them."""
        return self._film_ids.get(key, (None, None))


def diary_rows(
    plays: Iterable[FilmPlay],
    ratings: Mapping[str, int],
    tz: tzinfo,
    since: date | None = None,
) -> list[LetterboxdRow]:
    """The export's rows, oldest play first; pure.

    *plays*: **all** of the profile's movie plays (order free; equal times keep their given
    order). *ratings*: ``film_key`` → the film's latest rating, 1–10; anything else (``0``,
    11, a bool) is left out. *tz*: the member's zone (:func:`~crosswatchd.imports.parse_zone`).
    *since*: keep only plays on or after this local date — ``Rewatch`` is still counted over
    every play. Titles are NFC with line breaks turned into spaces; ids that are not
    ``tt<digits>`` (imdb) or digits (tmdb) are left empty.
    """
    ordered = sorted(plays, key=lambda play: play.watched_at)
    seen: set[str] = set()
    rows: list[LetterboxdRow] = []
    for play in ordered:
        rewatch = play.film_key in seen
        seen.add(play.film_key)
        watched_on = play.watched_at.astimezone(tz).date()
        if since is not None and watched_on < since:
            continue
        rating = ratings.get(play.film_key)
        valid = isinstance(rating, int) and not isinstance(rating, bool) and 1 <= rating <= 10
        rows.append(
            LetterboxdRow(
                title=_title(play.title),
                year=play.year if play.year and play.year > 0 else None,
                imdb=play.imdb if play.imdb and _IMDB.fullmatch(play.imdb) else None,
                tmdb=play.tmdb
                if play.tmdb and play.tmdb.isascii() and play.tmdb.isdigit()
                else None,
                watched_on=watched_on,
                rating10=rating if valid else None,
                rewatch=rewatch,
            )
        )
    return rows


def render_lines(rows: Iterable[LetterboxdRow]) -> Iterator[str]:
    """The CSV text, one line at a time: the header, then each row; every line ends in LF."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for cells in _with_header(rows):
        writer.writerow(cells)
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()


def write_stream(rows: Iterable[LetterboxdRow], stream: IO[bytes]) -> int:
    """Write the whole CSV (header first) to a binary *stream* as UTF-8; return its bytes.

    Give ``sys.stdout.buffer`` for standard output (UTF-8 whatever the locale). A result above
    :data:`MAX_FILE_BYTES` means Letterboxd will refuse the file as one upload.
    """
    size = 0
    for line in render_lines(rows):
        data = line.encode("utf-8")
        stream.write(data)
        size += len(data)
    return size


def write_files(
    rows: Iterable[LetterboxdRow],
    output: str | os.PathLike[str],
    *,
    max_bytes: int = MAX_FILE_BYTES,
) -> list[Path]:
    """Write the CSV to *output*, split into files of at most *max_bytes* bytes each.

    Every file starts with the header and holds whole rows; the first is *output* itself, the
    next ones :func:`part_path` (``diary-2.csv``, ``diary-3.csv`` …). No rows: one file with
    the header. Each file is written beside its target and renamed into place; parts left by
    an earlier, longer export are not touched (:func:`leftover_parts` finds them). Returns the
    paths written, in order. Raises :class:`~crosswatchd.imports.FileFormatError` naming the
    file that cannot be written.
    """
    target = Path(output)
    parts = _split(render_lines(rows), max_bytes)
    written: list[Path] = []
    for number, chunk in enumerate(parts, start=1):
        path = part_path(target, number)
        temporary = path.with_name(f".{path.name}.tmp")
        try:
            with temporary.open("wb") as fh:
                fh.write(chunk)
            os.replace(temporary, path)
        except OSError as err:
            temporary.unlink(missing_ok=True)
            raise FileFormatError(path, f"cannot be written ({err.strerror or err})") from err
        written.append(path)
    return written


def part_path(output: Path, number: int) -> Path:
    """File *number* (1-based) of a split export: *output*, then ``-2``, ``-3`` … before the
    last suffix (``diary.csv`` → ``diary-2.csv``; ``diary`` → ``diary-2``)."""
    if number == 1:
        return output
    return output.with_name(f"{output.stem}-{number}{output.suffix}")


def leftover_parts(output: str | os.PathLike[str], written: int) -> list[Path]:
    """Parts of an earlier, longer export beside *output* that a run writing *written* files
    left in place: ``part_path(output, written + 1)``, ``+ 2`` … while they exist. The CLI can
    name them, so that they are not uploaded with the new files."""
    target = Path(output)
    found: list[Path] = []
    number = written + 1
    while (path := part_path(target, number)).exists():
        found.append(path)
        number += 1
    return found


# -- internals ----------------------------------------------------------------------------------


def _with_header(rows: Iterable[LetterboxdRow]) -> Iterator[Sequence[str]]:
    yield HEADER
    for row in rows:
        yield row.fields()


def _split(lines: Iterator[str], max_bytes: int) -> list[bytes]:
    """Group the encoded lines (header first) into files of at most *max_bytes* each."""
    header = next(lines).encode("utf-8")
    room = max_bytes - len(header)
    parts: list[bytes] = []
    current: list[bytes] = []
    used = 0
    for line in lines:
        data = line.encode("utf-8")
        if len(data) > room:
            raise ValueError(f"a row of {len(data)} bytes does not fit in {max_bytes} bytes")
        if current and used + len(data) > room:
            parts.append(header + b"".join(current))
            current, used = [], 0
        current.append(data)
        used += len(data)
    if current or not parts:
        parts.append(header + b"".join(current))
    return parts


def _title(text: str) -> str:
    value = text.replace("\r\n", " ").replace("\r", " ").replace("\n", " ").strip()
    return value if value.isascii() else unicodedata.normalize("NFC", value)
