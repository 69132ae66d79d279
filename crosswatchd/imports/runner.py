"""Imported files into the outbox: ``crosswatchd import letterboxd|tvtime``.

Flow, one chunk of rows at a time (memory stays flat however long the file is)::

    reader rows ──▶ PlayRow (row key, item as read, watched_at)
        ──row key imported before? (events.import_key)──▶ "already imported", nothing written
        ──Resolver.resolve (the daemon's chain and id cache, title step on)──▶ no match?
              ──▶ "unmatched", reported with the title and the reason, never sent
        ──▶ PlayEvent(source=import, action=watched, import_key=row key)
        ──▶ outbox.enqueue_many(): fan-out per target account, THE dedupe rule
              (a play the account already has within the window: "already held")

Matching happens here, at import time, so that what does not match can be named in the
summary and in a dry run, and is never queued: Letterboxd logs series and episodes as films,
and a row that matches no movie must not become a play of something else. It goes through the
same :class:`~crosswatchd.resolve.Resolver` (and its persistent cache) as every delivery:
Letterboxd rows by exact title and year (the ``title`` step, on for imports), TV Time rows by
the TVDB ids they carry (``ep_id``, or ``s_id`` with season and number: the payload step, or
Trakt's id search for an episode id alone; never by title, as TV Time rows have no show year).
The item queued carries the ids found, so the delivery does not resolve it again and the dedupe
rule compares it with Plex and Tautulli plays of the same movie or episode.

Idempotency: a row's key (Letterboxd: the diary entry's URI; TV Time: ``key`` with
``created_at``) is stored with its event (``events.import_key``, unique per profile, written in
the same statement), and checked before anything is resolved. A second import of the file, of
its bare CSV, or with another ``--tz``, queues nothing. A row whose play every target already
had keeps its event (without deliveries), so it counts as imported too. Rows that did not match
are not recorded: a later import tries them again.

Ratings (Letterboxd): each rated film's latest rating (:meth:`LetterboxdReader.ratings`), at
12:00 on the day it was given, is queued as a rating change unless the profile's target
accounts already hold that value or a later rating of the film (:meth:`Outbox.rating_marks`):
a second import queues no rating either, and an older rating never overrides a newer one.

A dry run imports into a scratch copy of the outbox (:func:`~crosswatchd.outbox.scratch_copy`)
and throws it away: its counts are what a real run would do.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, tzinfo
from typing import Final

import structlog

from crosswatchd.errors import RetryableError, UnresolvedError
from crosswatchd.imports._files import TableStats
from crosswatchd.imports.letterboxd import DIARY_FILE, RATINGS_FILE, LetterboxdReader
from crosswatchd.imports.tvtime import EPISODES_FILE, MOVIES_FILE, TvTimeReader
from crosswatchd.models import Action, Item, MediaKind, PlayEvent, Source, format_utc, item_keys
from crosswatchd.outbox import Outbox, scratch_copy
from crosswatchd.outbox.views import RatingMark
from crosswatchd.resolve import Resolver
from crosswatchd.resolve.keys import norm_title

__all__ = [
    "CHUNK_SIZE",
    "FileImportSummary",
    "PlayRow",
    "RatingRow",
    "Unmatched",
    "format_file_summary",
    "import_letterboxd",
    "import_tvtime",
]

log = structlog.get_logger(__name__)

#: Rows per chunk: one ``imported_keys`` query and one ``enqueue_many`` statement each.
CHUNK_SIZE: Final = 500
#: Items matched at once (lookups wait for the search's rate limit anyway).
MATCH_CONCURRENCY: Final = 8
#: Plays kept in :attr:`FileImportSummary.sample`, unmatched items and skipped rows listed.
SHOW_MAX: Final = 25
#: The local time of day an imported rating is given, on its date (as diary plays are).
_RATED_AT: Final = time(12, 0)

#: ``progress(rows_read)``: called after each chunk with the rows read so far.
Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class PlayRow:
    """One play of an imported file.

    ``key``: the row's import key (``letterboxd:<diary entry URI>``,
    ``tvtime:<key>@<created_at>``); ``file`` and ``line``: where it is; ``item``: the movie or
    episode as the file names it; ``watched_at``: aware UTC; ``alternates``: other readings of
    the item, tried in turn when it does not match (a TV Time film's English slug).
    """

    key: str
    file: str
    line: int
    item: Item
    watched_at: datetime
    alternates: tuple[Item, ...] = ()


@dataclass(frozen=True, slots=True)
class RatingRow:
    """A film's rating from an imported file: 1-10, given at ``rated_at`` (aware UTC)."""

    file: str
    line: int
    item: Item
    rating: int
    rated_at: datetime


@dataclass(slots=True)
class Unmatched:
    """An item no row of which matched: its label (``Title (Year)``), why (the resolver's
    reason), how many play rows name it and where the first one is (``diary.csv line 9``)."""

    label: str
    reason: str
    rows: int
    first: str


@dataclass
class FileImportSummary:
    """What a file import read and did.

    ``tables``: one :class:`TableStats` per file read (rows, non-play rows by kind, skipped rows
    with line and reason). Play rows: ``plays`` read, of which ``queued`` created deliveries (in
    a dry run: would), ``already_imported`` had been imported before (row key), ``repeated``
    appear twice in the file, ``already_held`` are plays every target account already had
    (a Plex or Tautulli play, or another row, within the dedupe window), ``unmatched_rows``
    matched nothing (``unmatched``: per item). ``retry_later`` counts unmatched rows whose
    lookup failed for now (a search that was down). Ratings: ``ratings`` read, ``ratings_queued``,
    ``ratings_unchanged`` (the same value held), ``ratings_older`` (a later rating held),
    ``ratings_unmatched``. ``by_kind`` counts queued plays per ``movie``/``episode``;
    ``sample`` holds the first :data:`SHOW_MAX` queued plays.
    """

    service: str
    path: str
    profile: str
    dry_run: bool = False
    tables: list[TableStats] = field(default_factory=list)
    plays: int = 0
    queued: int = 0
    already_imported: int = 0
    repeated: int = 0
    already_held: int = 0
    unmatched_rows: int = 0
    retry_later: int = 0
    unmatched: dict[str, Unmatched] = field(default_factory=dict)
    by_kind: Counter[str] = field(default_factory=Counter)
    sample: list[PlayEvent] = field(default_factory=list)
    ratings: int = 0
    ratings_queued: int = 0
    ratings_unchanged: int = 0
    ratings_older: int = 0
    ratings_unmatched: int = 0
    dedupe_window_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def rows_read(self) -> int:
        """Data rows read, over every file."""
        return sum(t.rows for t in self.tables)

    @property
    def rows_skipped(self) -> int:
        """Rows skipped as bad, over every file."""
        return sum(t.skipped_count for t in self.tables)


_Match = tuple[Item | None, str, bool]  # (resolved item, reason it did not match, transient)


class _Importer:
    """One import run into *outbox* (a scratch copy for a dry run): matching, idempotency,
    counting into *summary*. ``account`` is what the events name as their source account."""

    def __init__(
        self,
        outbox: Outbox,
        resolver: Resolver,
        summary: FileImportSummary,
        *,
        account: str,
        chunk_size: int,
    ) -> None:
        self._outbox = outbox
        self._resolver = resolver
        self._summary = summary
        self._account = account
        self._chunk_size = chunk_size

    # -- matching -------------------------------------------------------------------------

    async def _match_one(self, item: Item) -> _Match:
        try:
            resolution = await self._resolver.resolve(item)
        except UnresolvedError as exc:
            return None, exc.reason, False
        except RetryableError as exc:
            return None, f"{exc} (a lookup failed for now; import again later)", True
        return resolution.item, "", False

    async def _match_with(self, item: Item, alternates: tuple[Item, ...]) -> _Match:
        found = await self._match_one(item)
        for other in alternates:
            if found[0] is not None:
                break
            again = await self._match_one(other)
            if again[0] is not None:  # the ids of the other reading, the row's own title
                found = (replace(again[0], title=item.title), "", False)
        return found

    async def _match(self, items: Iterable[tuple[Item, tuple[Item, ...]]]) -> dict[Item, _Match]:
        """Each distinct item matched (alternates tried when it does not): what the cache
        knows of them is read in one go, then a few workers take the items in turn — one
        answered from memory costs no task and no wait, one that needs a search waits for it
        while the others go on."""
        distinct = dict(items)
        await self._resolver.prefetch(distinct)
        results: dict[Item, _Match] = {}
        queue = iter(distinct.items())

        async def worker() -> None:
            for item, alternates in queue:  # a shared iterator: each item to one worker
                results[item] = await self._match_with(item, alternates)

        tasks = [
            asyncio.create_task(worker()) for _ in range(min(MATCH_CONCURRENCY, len(distinct)))
        ]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        return results

    def _unmatched(self, row: PlayRow, reason: str, transient: bool) -> None:
        summary = self._summary
        summary.unmatched_rows += 1
        summary.retry_later += transient
        label = row.item.label()
        held = summary.unmatched.get(label)
        if held is None:
            summary.unmatched[label] = Unmatched(label, reason, 1, f"{row.file} line {row.line}")
        else:
            held.rows += 1

    # -- plays ----------------------------------------------------------------------------

    async def plays(self, rows: Iterable[PlayRow], progress: Callable[[], None]) -> None:
        """Import every play of *rows*, a chunk at a time; *progress* after each chunk."""
        for chunk in _chunks(rows, self._chunk_size):
            await self._plays_chunk(chunk)
            progress()

    async def _plays_chunk(self, chunk: list[PlayRow]) -> None:
        summary = self._summary
        summary.plays += len(chunk)
        known = await self._outbox.imported_keys(summary.profile, (r.key for r in chunk))
        fresh: dict[str, PlayRow] = {}
        for row in chunk:
            if row.key in known:
                summary.already_imported += 1
            elif row.key in fresh:
                summary.repeated += 1
            else:
                fresh[row.key] = row
        if not fresh:
            return
        matches = await self._match((r.item, r.alternates) for r in fresh.values())
        events: list[PlayEvent] = []
        for row in fresh.values():
            item, reason, transient = matches[row.item]
            if item is None:
                self._unmatched(row, reason, transient)
                continue
            events.append(
                PlayEvent(
                    source=Source.IMPORT,
                    action=Action.WATCHED,
                    account=self._account,
                    item=item,
                    occurred_at=row.watched_at,
                    profile=summary.profile,
                    import_key=row.key,
                )
            )
        await self._enqueue_plays(events)

    async def _enqueue_plays(self, events: list[PlayEvent]) -> None:
        if not events:
            return
        summary = self._summary
        try:
            results = await self._outbox.enqueue_many(events, keep_duplicates=True)
        except sqlite3.IntegrityError:
            # Another import of the same rows committed between our check and our insert (the
            # statement wrote nothing): check again, and queue what is still new.
            known = await self._outbox.imported_keys(
                summary.profile, (e.import_key for e in events if e.import_key)
            )
            summary.already_imported += sum(e.import_key in known for e in events)
            events = [e for e in events if e.import_key not in known]
            results = await self._outbox.enqueue_many(events, keep_duplicates=True)
        for event, result in zip(events, results, strict=True):
            if result.duplicate:
                summary.already_held += 1
                continue
            summary.queued += 1
            summary.by_kind[event.item.kind.value] += 1
            if len(summary.sample) < SHOW_MAX:
                summary.sample.append(event)

    # -- ratings --------------------------------------------------------------------------

    async def ratings(self, rows: Sequence[RatingRow]) -> None:
        """Queue each rating the profile's target accounts do not hold yet, unless they hold
        a later one (see the module docstring)."""
        summary = self._summary
        summary.ratings += len(rows)
        if not rows:
            return
        marks = await self._outbox.rating_marks(summary.profile)
        for start in range(0, len(rows), self._chunk_size):
            await self._ratings_chunk(rows[start : start + self._chunk_size], marks)

    async def _ratings_chunk(self, rows: Sequence[RatingRow], marks: dict[str, RatingMark]) -> None:
        summary = self._summary
        matches = await self._match((r.item, ()) for r in rows)
        events: list[PlayEvent] = []
        for row in rows:
            item, reason, _ = matches[row.item]
            if item is None:
                summary.ratings_unmatched += 1
                label = row.item.label()
                if label not in summary.unmatched:
                    where = f"{row.file} line {row.line}"
                    summary.unmatched[label] = Unmatched(label, reason, 0, where)
                continue
            held = _latest(marks, item_keys(item))
            if held is not None and held.at > row.rated_at.timestamp():
                summary.ratings_older += 1
                continue
            if held is not None and held.rating == row.rating:
                summary.ratings_unchanged += 1
                continue
            events.append(
                PlayEvent(
                    source=Source.IMPORT,
                    action=Action.RATE,
                    account=self._account,
                    item=item,
                    occurred_at=row.rated_at,
                    profile=summary.profile,
                    rating=row.rating,
                )
            )
        if events:
            await self._outbox.enqueue_many(events)
        summary.ratings_queued += len(events)


def _latest(marks: dict[str, RatingMark], keys: Iterable[str]) -> RatingMark | None:
    held = [marks[k] for k in keys if k in marks]
    return max(held, key=lambda m: (m.at, m.delivery_id), default=None)


def _chunks(rows: Iterable[PlayRow], size: int) -> Iterator[list[PlayRow]]:
    chunk: list[PlayRow] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _noon(day: date | None, tz: tzinfo) -> datetime:
    """12:00 of *day* in *tz* as aware UTC (now, when the file gives no day)."""
    if day is None:
        return datetime.now(UTC)
    return datetime.combine(day, _RATED_AT, tz).astimezone(UTC)


# -- the two services ---------------------------------------------------------------------------


Body = Callable[[_Importer], Awaitable[None]]


async def _run(
    outbox: Outbox,
    resolver: Resolver,
    summary: FileImportSummary,
    *,
    account: str,
    chunk_size: int,
    body: Body,
) -> None:
    """Run *body* against *outbox*, or against a scratch copy of it for a dry run."""
    if chunk_size < 1:
        raise ValueError("chunk_size must be positive")
    summary.dedupe_window_s = outbox.dedupe_window_s
    log.info(
        "import.file.start",
        service=summary.service,
        file=summary.path,
        profile=summary.profile,
        dry_run=summary.dry_run,
    )
    if summary.dry_run:
        async with scratch_copy(outbox) as scratch:
            await body(
                _Importer(scratch, resolver, summary, account=account, chunk_size=chunk_size)
            )
    else:
        await body(_Importer(outbox, resolver, summary, account=account, chunk_size=chunk_size))
    log.info(
        "import.file.done",
        service=summary.service,
        dry_run=summary.dry_run,
        rows=summary.rows_read,
        plays=summary.plays,
        queued=summary.queued,
        already_imported=summary.already_imported,
        already_held=summary.already_held,
        unmatched=summary.unmatched_rows,
        skipped=summary.rows_skipped,
        ratings_queued=summary.ratings_queued,
    )


async def import_letterboxd(
    reader: LetterboxdReader,
    outbox: Outbox,
    resolver: Resolver,
    *,
    profile: str,
    dry_run: bool = False,
    progress: Progress | None = None,
    chunk_size: int = CHUNK_SIZE,
) -> FileImportSummary:
    """Import an opened Letterboxd export (:func:`~crosswatchd.imports.letterboxd.open_letterboxd`)
    for *profile*: every ``diary.csv`` row a movie play at 12:00 in the reader's zone, then
    the films' ratings. *resolver* should have the title step on
    (``build_resolver(title_fallback=True)``), or nothing matches. ``dry_run`` writes nothing
    (the counts are a real run's). ``progress(rows_read)`` after each chunk.

    Returns the :class:`FileImportSummary`. Raises
    :class:`~crosswatchd.imports.FileFormatError` if the file stops being readable mid-way
    (the chunks before stay queued; a re-run skips them) and what the outbox raises.
    """
    summary = FileImportSummary("Letterboxd", str(reader.path), profile, dry_run)
    if "title" not in resolver.steps:
        summary.notes.append(
            "no title search is configured (resolver.use_search is off, or neither Trakt nor"
            " SIMKL has a client id): no film can be matched"
        )

    def diary() -> Iterator[PlayRow]:
        for entry in reader.diary():
            key = f"letterboxd:{entry.key}"
            yield PlayRow(key, DIARY_FILE, entry.line, entry.item(), entry.watched_at)

    def advance() -> None:
        if progress is not None:
            progress(sum(t.rows + t.skipped_count for t in reader.stats))

    async def body(importer: _Importer) -> None:
        await importer.plays(diary(), advance)
        rated = [
            RatingRow(
                r.file,
                r.line,
                Item(MediaKind.MOVIE, title=r.title, year=r.year),
                r.rating10,
                _noon(r.rated_on, reader.tz),
            )
            for r in reader.ratings().values()
        ]
        await importer.ratings(rated)
        summary.tables = list(reader.stats)

    await _run(outbox, resolver, summary, account="letterboxd", chunk_size=chunk_size, body=body)
    return summary


async def import_tvtime(
    reader: TvTimeReader,
    outbox: Outbox,
    resolver: Resolver,
    *,
    profile: str,
    dry_run: bool = False,
    progress: Progress | None = None,
    chunk_size: int = CHUNK_SIZE,
) -> FileImportSummary:
    """Import an opened TV Time GDPR export (:func:`~crosswatchd.imports.tvtime.open_tvtime`)
    for *profile*: every ``watch-episode-``/``rewatch-episode-`` row an episode play at its
    ``created_at`` (UTC) with its TVDB ids, then the ZIP's watched films
    (``tracking-prod-records.csv``) by title and release year, their English slug tried when
    the (localized) name does not match. Otherwise as :func:`import_letterboxd`.
    """
    summary = FileImportSummary("TV Time", str(reader.path), profile, dry_run)

    def rows() -> Iterator[PlayRow]:
        for watch in reader.episodes():
            yield PlayRow(
                f"tvtime:{watch.key}", EPISODES_FILE, watch.line, watch.item(), watch.watched_at
            )
        for film in reader.movies():
            item = film.item()
            alternates: tuple[Item, ...] = ()
            if film.slug:
                slug = replace(item, title=film.slug.replace("-", " "))
                if norm_title(slug.title) != norm_title(item.title):
                    alternates = (slug,)
            yield PlayRow(
                f"tvtime:{film.key}", MOVIES_FILE, film.line, item, film.watched_at, alternates
            )

    def advance() -> None:
        if progress is not None:
            progress(sum(t.rows + t.skipped_count for t in reader.stats))

    async def body(importer: _Importer) -> None:
        await importer.plays(rows(), advance)
        summary.tables = list(reader.stats)

    await _run(outbox, resolver, summary, account="tvtime", chunk_size=chunk_size, body=body)
    return summary


# -- report -------------------------------------------------------------------------------------


def _n(value: int) -> str:
    return f"{value:,}"


def _plural(count: int, word: str) -> str:
    return f"{_n(count)} {word}{'' if count == 1 else 's'}"


def _window(seconds: float) -> str:
    if seconds and seconds % 3600 == 0:
        return f"{int(seconds // 3600)} h"
    if seconds and seconds % 60 == 0:
        return f"{int(seconds // 60)} min"
    return f"{seconds:g} s"


def _sample_line(event: PlayEvent) -> str:
    item = event.item
    ids = item.ids.as_dict() or {f"show {k}": v for k, v in item.show_ids.as_dict().items()}
    shown = " ".join(f"{k}={v}" for k, v in ids.items())
    return f"    {format_utc(event.occurred_at)}  {item.label()}  [{shown}]"


def format_file_summary(summary: FileImportSummary) -> str:
    """A multi-line report of *summary*; the last line is the one-line summary.

    Lists the unmatched items with their reasons, the skipped rows with their line and reason
    (each list at most :data:`SHOW_MAX` long, then a count of the rest), the rows that are not
    plays by kind, and in a dry run the plays that would be queued.
    """
    dry = summary.dry_run
    lines = [
        f"{summary.service} import of {summary.path} for profile {summary.profile}"
        + (" (dry run: nothing written)" if dry else "")
    ]
    per_file = ", ".join(f"{t.file} {_n(t.rows)}" for t in summary.tables)
    lines.append(
        f"  rows read:         {_n(summary.rows_read)}" + (f" ({per_file})" if per_file else "")
    )
    lines.append(f"  plays:             {_n(summary.plays)}")
    kinds = ", ".join(_plural(n, kind) for kind, n in sorted(summary.by_kind.items()))
    queued = "would be queued:" if dry else "queued:         "
    lines.append(f"  {queued}   {_n(summary.queued)}" + (f" ({kinds})" if kinds else ""))
    lines.append(f"  already imported:  {_n(summary.already_imported)}")
    lines.append(
        f"  already held:      {_n(summary.already_held)} (the same play within "
        f"{_window(summary.dedupe_window_s)}: from Plex, Tautulli or another row)"
    )
    if summary.repeated:
        lines.append(f"  repeated rows:     {_n(summary.repeated)} (the same row key twice)")
    lines.append(
        f"  unmatched:         {_n(summary.unmatched_rows)}"
        + (
            f" ({_plural(len(summary.unmatched), 'title')}; never sent, listed below)"
            if summary.unmatched
            else ""
        )
    )
    if summary.service == "Letterboxd":
        lines.append(
            f"  ratings:           {_n(summary.ratings)} read, {_n(summary.ratings_queued)}"
            f" {'would be queued' if dry else 'queued'}, {_n(summary.ratings_unchanged)}"
            f" already held, {_n(summary.ratings_older)} older than one held,"
            f" {_n(summary.ratings_unmatched)} unmatched"
        )
    lines.append(
        f"  skipped rows:      {_n(summary.rows_skipped)}"
        + (" (listed below)" if summary.rows_skipped else "")
    )
    for table in summary.tables:
        if table.non_play and table.file != RATINGS_FILE:  # ratings are counted above
            kinds = ", ".join(f"{_n(n)} {kind}" for kind, n in sorted(table.non_play.items()))
            lines.append(f"  not plays:         {table.file}: {kinds}")
    if summary.retry_later:
        lines.append(
            f"  note: {_n(summary.retry_later)} rows could not be looked up now;"
            " they are not recorded, so importing the file again tries them again"
        )
    lines.extend(f"  note: {note}" for note in summary.notes)
    if dry and summary.sample:
        more = summary.queued - len(summary.sample)
        lines.append(f"  would be queued (first {len(summary.sample)}):")
        lines.extend(_sample_line(event) for event in summary.sample)
        if more > 0:
            lines.append(f"    … and {_n(more)} more")
    if summary.unmatched:
        lines.append("  unmatched (never sent):")
        shown_items = list(summary.unmatched.values())
        for miss in shown_items[:SHOW_MAX]:
            rows = f"{_plural(miss.rows, 'row')} from" if miss.rows else "a rating only, at"
            lines.append(f"    {miss.label}: {rows} {miss.first} — {miss.reason}")
        if len(shown_items) > SHOW_MAX:
            lines.append(f"    … and {_n(len(shown_items) - SHOW_MAX)} more")
    skipped = [row for table in summary.tables for row in table.skipped]
    if skipped:
        lines.append("  skipped:")
        lines.extend(f"    {row}" for row in skipped[:SHOW_MAX])
        if summary.rows_skipped > SHOW_MAX:
            lines.append(f"    … and {_n(summary.rows_skipped - SHOW_MAX)} more")
    tail = (
        f"{_n(summary.plays)} plays, {_n(summary.already_imported)} already imported, "
        f"{_n(summary.already_held)} already held, {_n(summary.unmatched_rows)} unmatched, "
        f"{_n(summary.rows_skipped)} skipped, {_n(summary.rows_read)} rows read"
    )
    if dry:
        lines.append(f"dry run: {_n(summary.queued)} would be queued of {tail}; nothing written")
    else:
        lines.append(f"import: {_n(summary.queued)} queued of {tail}")
    return "\n".join(lines)
