"""Benchmark: Letterboxd and TV Time exports, read and imported end to end into the outbox.

Generates, in a temporary folder, a Letterboxd ``diary.csv`` of ``--diary-rows`` rows (20,000;
titles with commas, quotes and diacritics, rewatches, ratings; also zipped with a
``ratings.csv``) and a TV Time ``tracking-prod-records-v2.csv`` of ``--tvtime-rows`` rows
(100,000; 90 % seen episodes, 5 % rewatches, 5 % show-state rows, some bulk-marked seasons; also
zipped). Then each case runs in a fresh interpreter, so that its peak RSS is its own:

- ``reference``: ``csv.DictReader`` over the same bare CSV, every row counted and dropped — the
  least any CSV reader in Python does. Ratios are against it.
- ``*-stream``: ``open_*`` (sniff, whole-file UTF-8/CRC check, header) and one pass over every
  row into dataclasses, each dropped as soon as it is counted. ``read_letterboxd`` (entries +
  ratings, all held) is measured as well.
- ``*-import``: the whole ``import letterboxd|tvtime`` of the ZIP into a fresh outbox file (two
  target accounts), with the resolver's cache warm: each film's exact title + year answer is in
  the cache file (written beforehand as the title step stores it; the resolver has no search,
  so a miss would show as unmatched), TV Time rows carry their TVDB ids. Rows read, matched,
  checked against the import ledger, enqueued with their fan-out and dedupe, ratings too. The
  child also imports the ZIP a second time (``re-import``: every row already imported).
- ``outbox-floor``: ``enqueue_many`` of the very plays (and ratings) the import queues, built
  from the file beforehand (untimed), in the import's chunks, into a fresh outbox: the
  outbox's own share of an import; the ratio import / floor is what reading, the ledger
  check and matching add.

Reported per case: rows, plays (queued, for an import), best-of-``--repeat`` seconds, rows/s,
ratio to the reference, peak RSS of the child (MB, Linux ``VmHWM``) and, in a separate run under
``tracemalloc``, the peak of Python allocations (MB) — RSS includes the interpreter (~20 MB);
tracemalloc shows what the case adds.

Usage: ``python bench/import_files.py [--diary-rows 20000] [--tvtime-rows 100000]
[--repeat 3] [--no-tracemalloc]``.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crosswatchd.imports.letterboxd import open_letterboxd, read_letterboxd
from crosswatchd.imports.runner import CHUNK_SIZE, import_letterboxd, import_tvtime
from crosswatchd.imports.tvtime import open_tvtime
from crosswatchd.logs import configure_logging
from crosswatchd.models import Action, Ids, Item, MediaKind, PlayEvent, Source
from crosswatchd.outbox import Outbox
from crosswatchd.resolve import IdCache, Resolver
from crosswatchd.resolve.keys import Keys, identity_value
from tests.file_fixtures import (
    DIARY_HEADER,
    RATINGS_HEADER,
    V2_HEADER,
    csv_text,
    diary_row,
    episode_row,
    rating_row,
    write_zip,
)

ZONE = ZoneInfo("Europe/Paris")
TITLES = [
    "Dune",
    "Red, White & Royal Blue",
    "Ocean's Eleven",
    "Yí (Endless River)",
    'The "Wizard" of Speed and Time',
    "Bande à part",
    "¡Atraco!",
    "Love, Death & Robots: Sonnie's Edge",
]


# -- generated inputs ---------------------------------------------------------------------------


def make_diary(folder: Path, rows: int) -> dict[str, Path]:
    start = datetime(2012, 1, 1, tzinfo=UTC)
    diary = []
    for i in range(rows):
        day = (start + timedelta(hours=5 * i)).date().isoformat()
        diary.append(
            diary_row(
                f"{TITLES[i % len(TITLES)]} {i // len(TITLES)}",
                1920 + i % 100,
                day,
                f"https://boxd.it/{i:07x}",
                rating=["", "0.5", "3", "4.5", "5"][i % 5],
                rewatch=i % 7 == 0,
                tags="bench, generated" if i % 3 == 0 else "",
            )
        )
    ratings = [
        rating_row(f"{TITLES[i % len(TITLES)]} {i // len(TITLES)}", 1920 + i % 100, "4", "u")
        for i in range(0, rows, 2)
    ]
    text = csv_text(DIARY_HEADER, diary)
    bare = folder / "diary.csv"
    bare.write_text(text, encoding="utf-8")
    zipped = write_zip(
        folder / "letterboxd.zip",
        {"diary.csv": text, "ratings.csv": csv_text(RATINGS_HEADER, ratings)},
    )
    return {"csv": bare, "zip": zipped}


def make_v2(folder: Path, rows: int) -> dict[str, Path]:
    start = datetime(2016, 1, 1, tzinfo=UTC)
    out: list[dict[str, object]] = []
    for i in range(rows):
        at = f"{start + timedelta(minutes=37 * i):%Y-%m-%d %H:%M:%S}"
        uuid = f"{i % 500:08x}-7a41-4c1e-9d55-2b9f3f1e8a10"
        if i % 20 == 19:
            out.append({"created_at": at, "key": f"user-series-{uuid}", "s_id": str(70000 + i)})
            continue
        prefix = "rewatch-episode-" if i % 20 == 18 else "watch-episode-"
        out.append(
            episode_row(
                at,
                f"{prefix}{uuid}-{i:012x}",
                s_id=str(70000 + i % 500),
                s_no=str(i % 7),
                ep_no=str(1 + i % 24),
                ep_id=str(300000 + i),
                series_name=f"{TITLES[i % len(TITLES)]} ({2000 + i % 25})",
                bulk_type="season" if i % 50 < 10 else "",
                is_special="true" if i % 7 == 0 else "false",
            )
        )
    text = csv_text(V2_HEADER, out)
    bare = folder / "tracking-prod-records-v2.csv"
    bare.write_text(text, encoding="utf-8")
    zipped = write_zip(folder / "gdpr.zip", {"tracking-prod-records-v2.csv": text})
    return {"csv": bare, "zip": zipped}


# -- cases (each run in a child process) --------------------------------------------------------


def _letterboxd_stream(path: Path) -> int:
    with open_letterboxd(path, tz=ZONE) as export:
        return sum(1 for _ in export.diary())


def _letterboxd_all(path: Path) -> int:
    return len(read_letterboxd(path, tz=ZONE).entries)


def _tvtime_stream(path: Path) -> int:
    with open_tvtime(path) as export:
        return sum(1 for _ in export.episodes()) + sum(1 for _ in export.movies())


def _reference(path: Path) -> int:
    with path.open(encoding="utf-8-sig", newline="") as fh:
        return sum(1 for _ in csv.DictReader(fh))


#: The warm id cache of the diary's films (written by :func:`seed_cache`), next to the inputs.
CACHE_FILE = "warm-cache.sqlite3"
TARGETS = {"default": ["trakt", "simkl"]}


async def seed_cache(path: Path, diary: Path) -> int:
    """Write the answers the title step would have stored for every film of *diary* (and of
    its ratings): the cache of a resolver that has imported these titles before."""
    cache = await IdCache.open(path, positive_ttl_s=30 * 86400, negative_ttl_s=6 * 3600)
    keys = Keys(title_fallback=True)
    films: dict[tuple[str, int | None], None] = {}
    with open_letterboxd(diary, tz=ZONE) as export:
        for entry in export.diary():
            films[(entry.title, entry.year)] = None
    try:
        for n, (title, year) in enumerate(films):
            item = Item(MediaKind.MOVIE, title, year)
            found = item.with_ids(Ids(imdb=f"tt{20_000_000 + n}", tmdb=str(900_000 + n)))
            await cache.put(list(keys.of(item, None)), identity_value(found), step="title")
    finally:
        await cache.close()
    return len(films)


class _Imported:
    queued = 0
    unmatched = 0
    again_s = 0.0
    again_queued = 0


async def _import(path: Path, service: str, stats: _Imported) -> int:
    """Import *path* into a fresh outbox with a copy of the warm cache, then again; returns the
    rows read. Time is measured by the caller around the first import only."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        warm = path.parent / CACHE_FILE
        if warm.exists():
            shutil.copy(warm, work / "cache.sqlite3")
        outbox = await Outbox.open(work / "outbox.sqlite3", targets=TARGETS)
        cache = await IdCache.open(
            work / "cache.sqlite3", positive_ttl_s=30 * 86400, negative_ttl_s=6 * 3600
        )
        resolver = Resolver(cache=cache, title_fallback=True)  # no search: misses show
        try:
            summaries = []
            for attempt in range(2):
                began = time.perf_counter()
                if service == "letterboxd":
                    with open_letterboxd(path, tz=ZONE) as reader:
                        summary = await import_letterboxd(
                            reader, outbox, resolver, profile="default"
                        )
                else:
                    with open_tvtime(path) as reader:
                        summary = await import_tvtime(reader, outbox, resolver, profile="default")
                if attempt == 1:
                    stats.again_s = time.perf_counter() - began
                summaries.append(summary)
            first, again = summaries
            stats.queued, stats.unmatched = first.queued, first.unmatched_rows
            stats.again_queued = again.queued
            return first.rows_read
        finally:
            await resolver.close()
            await cache.close()
            await outbox.close()


def _floor_events(path: Path, service: str) -> list[PlayEvent]:
    """The events an import of *path* queues, built straight from the file (ids as the warm
    cache gives them; TV Time's as read), ratings included."""
    events: list[PlayEvent] = []
    if service == "tvtime":
        with open_tvtime(path) as reader:
            for watch in reader.episodes():
                events.append(
                    PlayEvent(
                        Source.IMPORT,
                        Action.WATCHED,
                        "tvtime",
                        watch.item(),
                        watch.watched_at,
                        import_key=f"tvtime:{watch.key}",
                    )
                )
        return events
    films: dict[tuple[str, int | None], int] = {}

    def ids(title: str, year: int | None) -> Ids:  # as seed_cache numbers the films
        n = films.setdefault((title, year), len(films))
        return Ids(imdb=f"tt{20_000_000 + n}", tmdb=str(900_000 + n))

    with open_letterboxd(path, tz=ZONE) as reader:
        for entry in reader.diary():
            item = Item(MediaKind.MOVIE, entry.title, entry.year, ids=ids(entry.title, entry.year))
            events.append(
                PlayEvent(
                    Source.IMPORT,
                    Action.WATCHED,
                    "letterboxd",
                    item,
                    entry.watched_at,
                    import_key=f"letterboxd:{entry.key}",
                )
            )
        noon = datetime(2024, 1, 1, 12, tzinfo=UTC)
        for rating in reader.ratings().values():
            item = Item(
                MediaKind.MOVIE, rating.title, rating.year, ids=ids(rating.title, rating.year)
            )
            events.append(
                PlayEvent(
                    Source.IMPORT, Action.RATE, "letterboxd", item, noon, rating=rating.rating10
                )
            )
    return events


async def _floor(events: list[PlayEvent]) -> None:
    """``enqueue_many`` of *events* in the import's chunks, plays and ratings apart, into a
    fresh outbox with the same targets."""
    plays = [e for e in events if e.action is Action.WATCHED]
    ratings = [e for e in events if e.action is Action.RATE]
    with tempfile.TemporaryDirectory() as tmp:
        outbox = await Outbox.open(Path(tmp) / "outbox.sqlite3", targets=TARGETS)
        try:
            for batch in (plays, ratings):
                for offset in range(0, len(batch), CHUNK_SIZE):
                    await outbox.enqueue_many(
                        batch[offset : offset + CHUNK_SIZE], keep_duplicates=True
                    )
        finally:
            await outbox.close()


CASES: dict[str, Callable[[Path], int]] = {
    "letterboxd-stream": _letterboxd_stream,
    "letterboxd-read-all": _letterboxd_all,
    "tvtime-stream": _tvtime_stream,
    "reference-dictreader": _reference,
}
#: Import cases: what they report besides the rows.
IMPORTS = ("letterboxd-import", "tvtime-import")


def _peak_rss_mb() -> float:
    """This process's peak RSS. Linux: ``VmHWM`` — ``ru_maxrss`` would carry the parent's peak
    over fork + exec, and the parent holds the generated files' text."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def child(case: str, path: Path, repeat: int, traced: bool) -> dict[str, float]:
    """Run *case* on *path*: best time of *repeat* runs, or one traced run; JSON to stdout."""
    if case in IMPORTS or case.startswith("outbox-floor"):
        return _child_import(case, path, repeat, traced)
    run = CASES[case]
    if traced:
        tracemalloc.start()
        count = run(path)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return {"plays": count, "traced_mb": peak / 1e6}
    best = float("inf")
    count = 0
    for _ in range(repeat):
        began = time.perf_counter()
        count = run(path)
        best = min(best, time.perf_counter() - began)
    return {"plays": count, "seconds": best, "rss_mb": _peak_rss_mb()}


def _child_import(case: str, path: Path, repeat: int, traced: bool) -> dict[str, float]:
    """An import case (or the outbox floor, ``outbox-floor-<plays>``), as :func:`child`."""
    configure_logging("error", json=False, stream=sys.stderr)
    stats = _Imported()

    floor: list[PlayEvent] = []
    if case.startswith("outbox-floor"):  # built before the clock starts
        floor = _floor_events(path, case.rsplit("-", 1)[1])

    def once() -> int:
        if floor:
            asyncio.run(_floor(floor))
            stats.queued = sum(e.action is Action.WATCHED for e in floor)
            return len(floor)
        return asyncio.run(_import(path, case.split("-")[0], stats))

    if traced:
        tracemalloc.start()
        once()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return {"plays": stats.queued, "traced_mb": peak / 1e6}
    best = float("inf")
    rows = 0
    for _ in range(repeat):
        began = time.perf_counter()
        rows = once()
        # The second import inside the run is timed apart (again_s), not in this figure.
        best = min(best, time.perf_counter() - began - stats.again_s)
    return {
        "plays": stats.queued,
        "rows": rows,
        "seconds": best,
        "rss_mb": _peak_rss_mb(),
        "unmatched": stats.unmatched,
        "again_s": stats.again_s,
        "again_queued": stats.again_queued,
    }


def in_child(case: str, path: Path, repeat: int, traced: bool) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", case, str(path), "--repeat", str(repeat)]
    if traced:
        command.append("--traced")
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    result: dict[str, float] = json.loads(done.stdout)
    return result


def data_rows(path: Path) -> int:
    return _reference(path)


# -- main ---------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--diary-rows", type=int, default=20_000)
    parser.add_argument("--tvtime-rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-tracemalloc", action="store_true")
    parser.add_argument("--child", nargs=2, metavar=("CASE", "PATH"), help=argparse.SUPPRESS)
    parser.add_argument("--traced", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        case, path = args.child
        print(json.dumps(child(case, Path(path), args.repeat, args.traced)))
        return 0

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        began = time.perf_counter()
        diary = make_diary(folder, args.diary_rows)
        v2 = make_v2(folder, args.tvtime_rows)
        films = asyncio.run(seed_cache(folder / CACHE_FILE, diary["csv"]))
        print(
            f"generated inputs (and a warm cache of {films:,} films) in "
            f"{time.perf_counter() - began:.1f} s:"
        )
        for label, paths in (("diary", diary), ("tvtime v2", v2)):
            for kind, path in paths.items():
                print(f"  {label} {kind}: {path.name}, {path.stat().st_size / 1e6:.2f} MB")
        print()
        plan = [
            ("Letterboxd diary.csv", "reference-dictreader", diary["csv"], None),
            ("Letterboxd diary.csv", "letterboxd-stream", diary["csv"], "reference"),
            ("Letterboxd ZIP", "letterboxd-stream", diary["zip"], "reference"),
            ("Letterboxd ZIP", "letterboxd-read-all", diary["zip"], "reference"),
            ("TV Time v2 CSV", "reference-dictreader", v2["csv"], None),
            ("TV Time v2 CSV", "tvtime-stream", v2["csv"], "reference"),
            ("TV Time GDPR ZIP", "tvtime-stream", v2["zip"], "reference"),
            ("Letterboxd ZIP", "letterboxd-import", diary["zip"], "reference"),
            ("TV Time GDPR ZIP", "tvtime-import", v2["zip"], "reference"),
        ]
        header = (
            f"{'input':<22}{'case':<22}{'rows':>9}{'plays':>9}{'seconds':>9}{'rows/s':>11}"
            f"{'× ref':>7}{'RSS MB':>8}{'traced MB':>11}"
        )
        print(header)
        print("-" * len(header))
        reference_s: dict[str, float] = {}
        imports: dict[str, dict[str, float]] = {}
        for label, case, path, _ in plan:
            rows = data_rows(diary["csv"] if "Letterboxd" in label else v2["csv"])
            timed = in_child(case, path, args.repeat, traced=False)
            traced = (
                in_child(case, path, 1, traced=True)["traced_mb"]
                if not args.no_tracemalloc
                else float("nan")
            )
            family = "diary" if "Letterboxd" in label else "v2"
            if case == "reference-dictreader":
                reference_s[family] = timed["seconds"]
            ratio = timed["seconds"] / reference_s[family]
            print(
                f"{label:<22}{case:<22}{rows:>9,}{int(timed['plays']):>9,}"
                f"{timed['seconds']:>9.3f}{rows / timed['seconds']:>11,.0f}{ratio:>7.2f}"
                f"{timed['rss_mb']:>8.1f}{traced:>11.2f}"
            )
            if case in IMPORTS:
                imports[case] = timed
        print()
        for case, timed in imports.items():
            service = case.split("-")[0]
            source = diary["zip"] if service == "letterboxd" else v2["zip"]
            floor = in_child(f"outbox-floor-{service}", source, args.repeat, False)
            rows = int(timed["rows"])
            print(
                f"{case}: {rows:,} rows in {timed['seconds']:.2f} s = "
                f"{rows / timed['seconds']:,.0f} rows/s, {int(timed['plays']):,} plays queued, "
                f"{int(timed['unmatched']):,} unmatched, peak RSS {timed['rss_mb']:.0f} MB; "
                f"outbox floor (enqueue_many of the same events) {floor['seconds']:.2f} s, "
                f"import = {timed['seconds'] / floor['seconds']:.2f}x floor; re-import "
                f"{timed['again_s']:.2f} s ({rows / timed['again_s']:,.0f} rows/s), "
                f"{int(timed['again_queued'])} queued"
            )
        print()
        print(
            "rows: data rows in the file (an import also reads ratings.csv); plays: rows "
            "returned as plays (TV Time: show-state rows are not plays), for an import the plays "
            "queued. × ref: time over csv.DictReader on the same bare CSV. RSS: peak of a fresh "
            "child interpreter (imports included). traced: peak Python allocations under "
            "tracemalloc, one run."
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
