"""What the Letterboxd and TV Time file readers (and the Letterboxd writer) share.

- :class:`FileFormatError` — a file-level problem, one line naming the file and the problem.
- :func:`parse_zone` / :func:`system_zone` — an IANA zone for ``--tz`` (default: the system's).
- :class:`InputFile` — the ``FILE`` argument, a ZIP or a bare CSV: sniffed, its members found
  at the root of the ZIP only, refused when password-protected or damaged, each table checked
  whole (UTF-8, ZIP CRC) **before** a row is handed out, then streamed row by row.
- :class:`Table` / :class:`TableStats` / :class:`SkippedRow` — one CSV read by column name,
  rows as ``(line, fields)``; what a pass over it saw and skipped.

Text rules (Letterboxd README §2: "LF line endings, UTF-8, no BOM"; files edited on Windows
gain a BOM and CRLF): UTF-8 with or without a BOM, LF or CRLF, fields as the ``csv`` module's
default dialect reads them (RFC 4180 quoting, doubled quotes inside). Columns are found by the
header's names, never by position (TV Time README §1: "Column order is not stable").

File-level problems raise :class:`FileFormatError` from :meth:`InputFile.open` /
:meth:`InputFile.table`, so a caller gets either the error or rows, never rows and then the
error: the table's bytes are read once up front to check they are UTF-8 without NUL bytes and,
for a ZIP member, that its CRC matches (``zipfile`` checks the CRC only at a member's end). A
row-level problem (a bad date, a short row) is recorded in :class:`TableStats` and the row is
skipped; the caller carries on.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import datetime as dt
import io
import os
import re
import unicodedata
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, tzinfo
from pathlib import Path
from types import TracebackType
from typing import IO, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from crosswatchd.errors import CrosswatchError

__all__ = [
    "MAX_NAMED_SKIPS",
    "FileFormatError",
    "InputFile",
    "RowError",
    "SkippedRow",
    "Table",
    "TableStats",
    "clean_text",
    "parse_date",
    "parse_zone",
    "system_zone",
]

#: Skipped rows kept with their line and reason per table pass; the rest are only counted, so a
#: file of 100,000 bad rows does not hold 100,000 reasons in memory.
MAX_NAMED_SKIPS: Final = 1_000

#: Bytes read at a time by the up-front check (and the sniff of a bare file's start); the
#: check holds one chunk and its decoded text at a time.
_CHUNK_BYTES: Final = 256 * 1024

#: A NUL byte in a file's first this many bytes means a binary file, not a CSV; later NUL
#: bytes are reported with their line by the whole-file check.
_SNIFF_BYTES: Final = 4096

_ZIP_MAGIC: Final = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
_UTF16_BOMS: Final = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
#: ``ZipInfo.flag_bits`` bit 0: the member is encrypted (PKWARE APPNOTE 4.4.4).
_ZIP_ENCRYPTED: Final = 0x1
#: Folders of a ZIP whose files are never hints: Letterboxd's removed entries, macOS metadata.
_HIDDEN: Final = frozenset({"deleted", "orphaned", "__MACOSX"})


class FileFormatError(CrosswatchError):
    """A file that cannot be read as the format it should be, said in one line.

    ``str(err)`` is ``"<path>: <message>"`` (just the message when ``path`` is ``None``, e.g. a
    bad ``--tz`` given without a file). The CLI prints it and exits 2. Raised for file-level
    problems only — not a ZIP or CSV, the expected CSV missing from a ZIP, a password-protected
    or damaged ZIP, a CSV without a needed column, text that is not UTF-8, an unknown time
    zone, an output file that cannot be written; bad rows are skipped and reported instead.
    """

    def __init__(self, path: str | os.PathLike[str] | None, message: str) -> None:
        self.path = os.fspath(path) if path is not None else None
        self.message = message
        super().__init__(f"{self.path}: {message}" if self.path is not None else message)


# -- time zones ---------------------------------------------------------------------------------


def parse_zone(name: str | None, *, path: str | os.PathLike[str] | None = None) -> tzinfo:
    """The IANA zone *name* (``--tz``), or the system's zone when *name* is ``None`` or empty.

    A named zone is always a :class:`~zoneinfo.ZoneInfo`; the default is one too, except on a
    system without any zone database, where it is :data:`datetime.UTC`.

    Raises :class:`FileFormatError` (naming *path*, the file being read or written) for a name
    that is not a zone, or when this system has no IANA time zone database at all (slim
    container images: install the OS ``tzdata`` package or the ``tzdata`` wheel).
    """
    if name is None or not name.strip():
        return system_zone()
    text = name.strip()
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        pass
    if not available_timezones():
        message = (
            f"--tz {text!r}: this system has no IANA time zone database "
            "(install the tzdata package)"
        )
    else:
        message = (
            f"--tz {text!r} is not a time zone; use an IANA name such as "
            "Europe/Paris or America/New_York"
        )
    raise FileFormatError(path, message)


def system_zone(
    environ: Mapping[str, str] | None = None,
    localtime: Path = Path("/etc/localtime"),
    timezone_file: Path = Path("/etc/timezone"),
) -> tzinfo:
    """The system's zone as a :class:`~zoneinfo.ZoneInfo`; UTC when it cannot be found.

    Looked up as the C library does, first match wins: ``$TZ`` (an IANA name, optionally with a
    leading ``:``, or a path to a zone file); the zone ``/etc/localtime`` links to
    (``…/zoneinfo/Europe/Paris``); the name in ``/etc/timezone`` (Debian); the contents of
    ``/etc/localtime`` (key ``"localtime"``); ``ZoneInfo("UTC")``; :data:`datetime.UTC` (no
    zone database at all). ``datetime.astimezone()`` would give only a fixed
    offset, which is wrong across a DST change — hence this. Arguments are for tests.
    """
    env = os.environ if environ is None else environ
    candidates: list[str] = []
    tz_env = env.get("TZ", "").lstrip(":").strip()
    if tz_env:
        candidates.append(tz_env)
    try:
        target = str(localtime.resolve(strict=True))
    except OSError:
        target = ""
    if "zoneinfo/" in target:
        candidates.append(target.rsplit("zoneinfo/", 1)[1])
    with contextlib.suppress(OSError, UnicodeDecodeError):
        candidates.append(timezone_file.read_text(encoding="utf-8").strip())
    for candidate in candidates:
        zone = _zone_or_none(candidate)
        if zone is not None:
            return zone
    try:
        with localtime.open("rb") as fh:
            return ZoneInfo.from_file(fh, key="localtime")
    except (OSError, ValueError):
        return _zone_or_none("UTC") or UTC


def _zone_or_none(name: str) -> ZoneInfo | None:
    if not name:
        return None
    try:
        if name.startswith("/"):
            with open(name, "rb") as fh:
                return ZoneInfo.from_file(fh, key=name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


# -- values in a row ---------------------------------------------------------------------------


class RowError(ValueError):
    """A row cannot be used; ``str(err)`` is the reason shown with its line number."""


_ISO_DATE: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def parse_date(text: str, column: str) -> dt.date:
    """A ``YYYY-MM-DD`` calendar date; :class:`RowError` naming *column* otherwise."""
    value = text.strip()
    if not value:
        raise RowError(f"no {column}")
    if _ISO_DATE.fullmatch(value):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    raise RowError(f"bad {column} {value!r} (expected YYYY-MM-DD)")


def clean_text(text: str) -> str:
    """*text* stripped, in Unicode NFC: a decomposed ``à`` (``a`` + U+0300) equals ``à``."""
    value = text.strip()
    return value if value.isascii() else unicodedata.normalize("NFC", value)


# -- skipped rows and pass statistics -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SkippedRow:
    """A row that was not read: ``file`` (``diary.csv``), 1-based ``line`` where it starts, why."""

    file: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file} line {self.line}: {self.reason}"


@dataclass(slots=True)
class TableStats:
    """What one pass over a table saw.

    ``rows``: data rows read (blank lines excluded); ``plays``: rows that became a play;
    ``non_play``: rows that are not plays by design, per kind (``user-series``,
    ``tracking-stats``…); ``skipped_count``: rows skipped as bad, the first
    :data:`MAX_NAMED_SKIPS` of them in ``skipped`` with their line and reason.
    """

    file: str
    rows: int = 0
    plays: int = 0
    non_play: Counter[str] = field(default_factory=Counter)
    skipped_count: int = 0
    skipped: list[SkippedRow] = field(default_factory=list)

    def skip(self, line: int, reason: str) -> None:
        """Count a bad row (and name it, while fewer than :data:`MAX_NAMED_SKIPS` are)."""
        self.skipped_count += 1
        if len(self.skipped) < MAX_NAMED_SKIPS:
            self.skipped.append(SkippedRow(self.file, line, reason))


# -- the FILE argument --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Table:
    """One CSV to read: the ``FILE`` it is in, its ``name`` there, its header's column indexes.

    ``name`` is the ZIP member's name (``diary.csv``) or, for a bare CSV, the file's own name;
    ``where`` prefixes messages about it (``"diary.csv: "`` in a ZIP, ``""`` for a bare file).
    ``columns`` maps each header name (stripped) to its index, first occurrence winning.
    ``lines``: physical lines of the file, header included (counted by the up-front check; a
    quoted field may span lines, so :attr:`rows_estimate` is an upper bound, for progress).
    """

    path: Path
    name: str
    where: str
    header: tuple[str, ...]
    columns: Mapping[str, int]
    _opener: Callable[[], IO[bytes]]
    lines: int = 0

    @property
    def rows_estimate(self) -> int:
        """Data rows at most: the lines after the header."""
        return max(0, self.lines - 1)

    def rows(self, stats: TableStats) -> Iterator[tuple[int, list[str]]]:
        """``(line, fields)`` of each data row, streamed; ``len(fields) == len(header)``.

        ``line`` is the 1-based physical line where the row starts (the header is line 1).
        Blank lines are dropped silently. A row with fewer fields than the header, or more
        fields that are not empty, or one the ``csv`` module cannot parse, is skipped into
        *stats*; every other row increments ``stats.rows``. Raises :class:`FileFormatError` if
        the file stops being readable mid-way (changed or damaged since it was checked).
        """
        width = len(self.header)
        with self._text() as text:
            reader = csv.reader(text)
            try:
                next(reader)  # the header, checked by InputFile.table
                while True:
                    start = reader.line_num + 1
                    try:
                        fields = next(reader)
                    except StopIteration:
                        return
                    except csv.Error as err:
                        stats.skip(start, f"not a CSV row ({err})")
                        continue
                    if not fields:
                        continue
                    count = len(fields)
                    if count != width:
                        if count < width:
                            stats.skip(start, f"{count} fields where the header has {width}")
                            continue
                        if any(fields[width:]):
                            stats.skip(start, f"{count} fields where the header has {width}")
                            continue
                        del fields[width:]
                    stats.rows += 1
                    yield start, fields
            except (UnicodeDecodeError, zipfile.BadZipFile, zlib.error, EOFError, OSError) as err:
                raise FileFormatError(
                    self.path, f"{self.where}stopped being readable while read ({err})"
                ) from err

    def _text(self) -> io.TextIOWrapper:
        return io.TextIOWrapper(self._opener(), encoding="utf-8-sig", newline="")


class InputFile:
    """The ``FILE`` argument of an import: a ZIP, or a bare CSV; a context manager.

    ``InputFile.open(path)`` sniffs the file (raising :class:`FileFormatError` for a missing,
    empty, binary, UTF-16 or damaged file); ``is_zip`` tells which it is. Then
    :meth:`table` checks one CSV — a member at the **root** of the ZIP (Letterboxd README §2:
    ``deleted/`` and ``orphaned/`` hold the same file names and must not be read), or the bare
    file itself — and returns it as a :class:`Table`. Close it (or use ``with``) to close the
    ZIP.
    """

    def __init__(self, path: Path, archive: zipfile.ZipFile | None) -> None:
        self.path = path
        self._zip = archive

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> InputFile:
        """Open *path*; raises :class:`FileFormatError` unless it is a ZIP or a text file."""
        file = Path(path)
        try:
            with file.open("rb") as fh:
                head = fh.read(_CHUNK_BYTES)
        except IsADirectoryError:
            raise FileFormatError(file, "is a folder; give the export ZIP or its CSV") from None
        except FileNotFoundError:
            raise FileFormatError(file, "no such file") from None
        except OSError as err:
            raise FileFormatError(file, f"cannot be read ({err.strerror or err})") from err
        if not head:
            raise FileFormatError(file, "is empty")
        if head.startswith(_ZIP_MAGIC) or zipfile.is_zipfile(file):
            try:
                archive = zipfile.ZipFile(file)
            except (zipfile.BadZipFile, OSError, ValueError) as err:
                raise FileFormatError(file, f"is a damaged or incomplete ZIP ({err})") from err
            return cls(file, archive)
        if head.startswith(_UTF16_BOMS):
            raise FileFormatError(file, "is UTF-16 text; save it as UTF-8 (CSV UTF-8)")
        if b"\0" in head[:_SNIFF_BYTES]:
            raise FileFormatError(file, "is neither a ZIP nor a CSV file (binary data)")
        return cls(file, None)

    @property
    def is_zip(self) -> bool:
        """True when ``FILE`` is a ZIP archive."""
        return self._zip is not None

    def find(self, name: str) -> str | None:
        """*name* if the ZIP has it at its root, else ``None``; also ``None`` for a bare CSV."""
        if self._zip is None:
            return None
        try:
            self._zip.getinfo(name)
        except KeyError:
            return None
        return name

    def nested(self, name: str) -> list[str]:
        """Members called *name* inside folders, except ``deleted/``/``orphaned/`` (for hints)."""
        if self._zip is None:
            return []
        found = []
        for member in self._zip.namelist():
            folders, _, base = member.rpartition("/")
            if base == name and folders and not _HIDDEN.intersection(folders.split("/")):
                found.append(member)
        return found

    def table(
        self,
        member: str | None,
        required: Sequence[str],
        hint: Callable[[frozenset[str]], str | None] | None = None,
    ) -> Table:
        """The CSV *member* of the ZIP (``None``: the bare file), checked whole.

        Raises :class:`FileFormatError` when the member is password-protected ("extract it
        first"), compressed in a way ``zipfile`` cannot read, damaged (CRC), not UTF-8 text,
        contains NUL bytes, has no header row, or lacks a column in *required*: the message
        names the missing columns, then what *hint* says of the header's names (e.g. "this is
        ratings.csv; give diary.csv"), else the names found.
        """
        name, opener = self._opener(member)
        where = f"{name}: " if self.is_zip else ""
        lines = self._check_bytes(where, opener)
        with io.TextIOWrapper(opener(), encoding="utf-8-sig", newline="") as text:
            try:
                header_row = next(csv.reader(text), None)
            except csv.Error as err:
                raise FileFormatError(self.path, f"{where}unreadable header ({err})") from err
        if not header_row or not any(h.strip() for h in header_row):
            raise FileFormatError(self.path, f"{where}no header row")
        header = tuple(h.strip() for h in header_row)
        columns: dict[str, int] = {}
        for index, title in enumerate(header):
            columns.setdefault(title, index)
        missing = [c for c in required if c not in columns]
        if missing:
            plural = "s" if len(missing) > 1 else ""
            said = hint(frozenset(columns)) if hint else None
            if said is None:
                shown = ", ".join(h for h in header if h)
                said = f"the header has: {shown[:120]}{'…' if len(shown) > 120 else ''}"
            raise FileFormatError(
                self.path, f"{where}no {', '.join(repr(c) for c in missing)} column{plural}; {said}"
            )
        return Table(self.path, name, where, header, columns, opener, lines)

    def close(self) -> None:
        """Close the ZIP (nothing to do for a bare CSV)."""
        if self._zip is not None:
            self._zip.close()

    def __enter__(self) -> InputFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- internals ------------------------------------------------------------------------------

    def _opener(self, member: str | None) -> tuple[str, Callable[[], IO[bytes]]]:
        if self._zip is None or member is None:
            if self._zip is not None:
                raise ValueError("a ZIP needs a member name")
            file = self.path
            return file.name, lambda: file.open("rb")
        archive = self._zip
        try:
            info = archive.getinfo(member)
        except KeyError:
            raise FileFormatError(self.path, f"has no {member} at the top of the ZIP") from None
        if info.flag_bits & _ZIP_ENCRYPTED:
            raise FileFormatError(
                self.path, f"the ZIP is password-protected; extract it first and give {member}"
            )

        def opener() -> IO[bytes]:
            return archive.open(info)

        return member, opener

    def _check_bytes(self, where: str, opener: Callable[[], IO[bytes]]) -> int:
        """Read the table once: UTF-8 (BOM allowed), no NUL byte, ZIP CRC and compression.

        *where* prefixes messages: ``"diary.csv: "`` for a ZIP member, ``""`` for a bare file.
        Returns the number of physical lines (a last line without its LF counts too).
        """
        decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="strict")
        lines_before = 0
        open_line = False
        try:
            with opener() as raw:
                while chunk := raw.read(_CHUNK_BYTES):
                    open_line = not chunk.endswith(b"\n")
                    if b"\0" in chunk:
                        line = lines_before + chunk[: chunk.index(b"\0")].count(b"\n") + 1
                        raise FileFormatError(
                            self.path,
                            f"{where}is not a CSV file (binary data at line {line})",
                        )
                    try:
                        decoder.decode(chunk)
                    except UnicodeDecodeError as err:
                        line = lines_before + chunk[: max(err.start, 0)].count(b"\n") + 1
                        raise FileFormatError(
                            self.path,
                            f"{where}is not UTF-8 text (line {line}); save it as UTF-8",
                        ) from err
                    lines_before += chunk.count(b"\n")
                try:
                    decoder.decode(b"", final=True)
                except UnicodeDecodeError as err:
                    raise FileFormatError(
                        self.path, f"{where}is not UTF-8 text (it ends mid-character)"
                    ) from err
                return lines_before + open_line
        except NotImplementedError as err:
            raise FileFormatError(
                self.path, f"{where}compressed in a way Python cannot read; extract it first"
            ) from err
        except RuntimeError as err:  # zipfile: "File … is encrypted, password required"
            raise FileFormatError(
                self.path, "the ZIP is password-protected; extract it first"
            ) from err
        except (zipfile.BadZipFile, zlib.error, EOFError) as err:
            raise FileFormatError(self.path, f"{where}damaged in the ZIP ({err})") from err
        except OSError as err:
            raise FileFormatError(self.path, f"cannot be read ({err.strerror or err})") from err
