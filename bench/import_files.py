"""Benchmark: reading Letterboxd and TV Time export files, against plain ``csv.DictReader``.

Generates, in a temporary folder, a Letterboxd ``diary.csv`` of ``--diary-rows`` rows (20,000;
titles with commas, quotes and diacritics, rewatches, ratings; also zipped with a
``ratings.csv``) and a TV Time ``tracking-prod-records-v2.csv`` of ``--tvtime-rows`` rows
(100,000; 90 % seen episodes, 5 % rewatches, 5 % show-state rows, some bulk-marked seasons; also
zipped). Then each case runs in a fresh interpreter, so that its peak RSS is its own:

- ``ours``: ``open_*`` (sniff, whole-file UTF-8/CRC check, header) and one pass over every row
  into dataclasses, each dropped as soon as it is counted — what an importer that streams into
  the outbox does. ``read_letterboxd`` (entries + ratings, all held) is measured as well.
- ``reference``: ``csv.DictReader`` over the same bare CSV, every row counted and dropped — the
  least any CSV reader in Python does. The ratio is ours/reference time.

Reported per case: rows, best-of-``--repeat`` seconds, rows/s, ratio to the reference, peak RSS
of the child (MB, Linux ``VmHWM``) and, in a separate run under ``tracemalloc``, the peak of
Python allocations (MB) — RSS includes the interpreter (~20 MB); tracemalloc shows what
reading adds.

Usage: ``python bench/import_files.py [--diary-rows 20000] [--tvtime-rows 100000]
[--repeat 3] [--no-tracemalloc]``.
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
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
from crosswatchd.imports.tvtime import open_tvtime
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


CASES: dict[str, Callable[[Path], int]] = {
    "letterboxd-stream": _letterboxd_stream,
    "letterboxd-read-all": _letterboxd_all,
    "tvtime-stream": _tvtime_stream,
    "reference-dictreader": _reference,
}


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
        print(f"generated inputs in {time.perf_counter() - began:.1f} s:")
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
        ]
        header = (
            f"{'input':<22}{'case':<22}{'rows':>9}{'plays':>9}{'seconds':>9}{'rows/s':>11}"
            f"{'× ref':>7}{'RSS MB':>8}{'traced MB':>11}"
        )
        print(header)
        print("-" * len(header))
        reference_s: dict[str, float] = {}
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
        print()
        print(
            "rows: data rows in the file; plays: rows returned as plays (TV Time: show-state "
            "rows are not plays). × ref: time over csv.DictReader on the same bare CSV. RSS: "
            "peak of a fresh child interpreter (imports included). traced: peak Python "
            "allocations under tracemalloc, one run."
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
