"""Benchmark: Tautulli history import, end to end into a real outbox.

Starts the fake Tautulli in this process (``tests/fakes/tautulli.py``) with ``--rows`` generated
history rows (20 % of movies/episodes need ``get_metadata``), opens a real :class:`Outbox` on a
temporary SQLite file and runs :func:`crosswatchd.importer.run_import` for two of the three
accounts. Reports rows/s, peak RSS, get_metadata calls against the distinct rating_keys that
needed one, and outbox rows; then PASS/FAIL against the targets:

- >= 5,000 history rows/s end to end into the outbox;
- peak RSS under 200 MB (the fake's HTTP serving counts too: it runs in this process);
- at most one get_metadata per distinct rating_key.

Usage: ``python bench/import_tautulli.py [--rows 100000] [--rerun]``. Exit status 1 on FAIL.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crosswatchd.importer import format_summary, run_import
from crosswatchd.logs import configure_logging
from crosswatchd.outbox import Outbox
from crosswatchd.sources.tautulli_api import TautulliClient
from tests.fakes.tautulli import FakeTautulli, make_rows

TARGET_ROWS_PER_S = 5_000
TARGET_RSS_MB = 200
USERS = ["alice", "bob"]


def _peak_rss_mb() -> float:
    # Linux reports ru_maxrss in KiB (macOS in bytes).
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


async def _bench(rows: int, rerun: bool, verbose: bool) -> bool:
    history = make_rows(rows)
    fake = FakeTautulli(api_key="bench-key", rows=history.rows, users=["alice", "bob", "carol"])
    async with fake, aiohttp.ClientSession() as session:
        client = TautulliClient(session=session, url=fake.url, api_key="bench-key")
        with tempfile.TemporaryDirectory() as tmp:
            outbox = await Outbox.open(Path(tmp) / "outbox.db", providers=["trakt", "simkl"])
            try:
                began = time.perf_counter()
                summary = await run_import(client, outbox, users=USERS)
                elapsed = time.perf_counter() - began
                events = (await outbox.fetch_all("SELECT count(*) FROM events"))[0][0]
                deliveries = (await outbox.fetch_all("SELECT count(*) FROM deliveries"))[0][0]
                calls = Counter(fake.metadata_calls_by_key)
                rerun_enqueued = None
                if rerun:
                    again = await run_import(client, outbox, users=USERS)
                    rerun_enqueued = again.enqueued
            finally:
                await outbox.close()

    if verbose:
        print(format_summary(summary, dry_run=False))
        print()
    rate = summary.rows_seen / elapsed if elapsed else float("inf")
    rss = _peak_rss_mb()
    max_per_key = max(calls.values(), default=0)
    needed = len(set(calls) & history.needs_metadata_keys)
    show_keys = len(set(calls) - history.needs_metadata_keys)
    print(f"rows: {summary.rows_seen:,} in {elapsed:.2f} s = {rate:,.0f} rows/s")
    print(f"plays: {summary.plays:,} ({summary.unresolved_plays:,} unresolved)")
    print(
        f"get_metadata: {summary.metadata_calls:,} calls for {len(calls):,} distinct rating_keys "
        f"({needed:,} items whose rows lack ids, {show_keys:,} shows); max per key {max_per_key}"
    )
    print(f"outbox: {events:,} events, {deliveries:,} deliveries")
    if rerun_enqueued is not None:
        print(f"re-run: {rerun_enqueued:,} enqueued")
    print(f"peak RSS: {rss:.1f} MB")

    checks = [
        (rate >= TARGET_ROWS_PER_S, f"rows/s {rate:,.0f} >= {TARGET_ROWS_PER_S:,}"),
        (rss < TARGET_RSS_MB, f"peak RSS {rss:.1f} MB < {TARGET_RSS_MB} MB"),
        (max_per_key <= 1, f"get_metadata per rating_key {max_per_key} <= 1"),
        (
            summary.metadata_calls == len(calls),
            f"get_metadata calls counted {summary.metadata_calls:,} == served {len(calls):,}",
        ),
    ]
    if rerun_enqueued is not None:
        checks.append((rerun_enqueued == 0, f"re-run enqueued {rerun_enqueued} == 0"))
    for ok, text in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")
    passed = all(ok for ok, _ in checks)
    print("PASS" if passed else "FAIL")
    return passed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=100_000, help="history rows (100000)")
    parser.add_argument("--rerun", action="store_true", help="import again; expect 0 enqueued")
    parser.add_argument("--verbose", action="store_true", help="print the import summary")
    args = parser.parse_args()
    configure_logging("info" if args.verbose else "warning", json=False)
    return 0 if asyncio.run(_bench(args.rows, args.rerun, args.verbose)) else 1


if __name__ == "__main__":
    raise SystemExit(main())
