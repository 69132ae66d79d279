"""Benchmark: reconcile at 100,000 plays.

Part 1, **the diff, in process** (:func:`crosswatchd.reconcile.diff.diff_plays`): 100,000
source plays (10,000 items: movies, and episodes known by their show's ids, each watched ten
times a month apart) against 100,000 target plays holding all but 1 % of them (the 1 % replaced
by other plays, so both sides have 100,000). Reported: the diff's CPU time for a target that
keeps every play (Trakt) and one that keeps one state per item (SIMKL), next to a reference
measured in the same run (the least any comparison must do: a dict of the target's keys, one
lookup per source key), and the peak RSS (``VmHWM``) of a fresh interpreter that builds both
sides and runs the diff, next to one that only builds them.

Part 2, **whole passes against the fakes** (served by a child process, so this process's peak
RSS is the passes' own; run first, before part 1 fills memory): the real :class:`Reconciler` with
the fake Plex server as the source (its history holds the 100,000 plays), the fake Trakt
holding 99 % of them and the fake SIMKL 99 % of the items. Three passes: the first (cold: a
full read of both targets, every item resolved through the Plex server once), a second one at
once (a no-op: the targets' activities have not moved since an hour before), and a third after
the missing plays were delivered (the copy brought up to date from the newest plays and the
outbox's own deliveries). Reported per pass and target: requests to the target, how it was
read, what was missing and enqueued, and the pass's wall time. Rate limits (the clients' and
the fakes') are lifted so the run measures work, not waiting; the request counts are what a
real run makes.

Targets (issue 13): diff CPU under 3 s; diff peak RSS under 250 MB; the first pass enqueues
exactly the drift; a no-op pass costs one request per target, one after deliveries at most two.

Run: ``.venv/bin/python bench/reconcile.py [--plays 100000] [--skip-passes]``. Exit 1 on FAIL.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import structlog

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from crosswatchd.app import services  # noqa: E402
from crosswatchd.config import Settings  # noqa: E402
from crosswatchd.drain import Drainer  # noqa: E402
from crosswatchd.models import Ids, Item, MediaKind, item_keys  # noqa: E402
from crosswatchd.reconcile import PassReport, make_reconciler  # noqa: E402
from crosswatchd.reconcile.diff import Watch, diff_plays  # noqa: E402
from crosswatchd.storage import Storage  # noqa: E402
from crosswatchd.tokens.files import TokenFile  # noqa: E402
from tests.fakes.catalog import Catalog  # noqa: E402
from tests.fakes.plex_server import FakePlexServer  # noqa: E402
from tests.fakes.simkl import FakeSimkl  # noqa: E402
from tests.fakes.trakt import FakeTrakt  # noqa: E402
from tests.reconcile_support import add_media  # noqa: E402

TARGET_DIFF_CPU_S = 3.0
TARGET_DIFF_RSS_MB = 250.0
WINDOW_S = 4 * 3600.0
T0 = datetime(2016, 1, 1, 20, 0, tzinfo=UTC)
PLAYS_PER_ITEM = 10
MONTH = timedelta(days=30)


# -- part 1: the diff --------------------------------------------------------------------------


def build(plays: int, seed: int = 13) -> tuple[list[Watch], list[Watch]]:
    """*plays* source plays and as many target plays, 1 % of the source's replaced."""
    rng = random.Random(seed)
    items = plays // PLAYS_PER_ITEM
    keys: list[tuple[str, ...]] = []
    for n in range(items):
        if n % 2:
            item = Item(MediaKind.MOVIE, ids=Ids(imdb=f"tt{5_000_000 + n}", tmdb=str(n)))
        else:
            item = Item(
                MediaKind.EPISODE,
                show_ids=Ids(tvdb=str(300_000 + n // 40), imdb=f"tt{4_000_000 + n // 40}"),
                season=1 + n % 40 // 20,
                number=1 + n % 20,
            )
        keys.append(tuple(item_keys(item)))
    base = T0.timestamp()
    source = [
        Watch(keys[n % items], base + (n // items) * MONTH.total_seconds() + n * 60.0)
        for n in range(plays)
    ]
    drifted = set(rng.sample(range(plays), plays // 100))
    target = [
        Watch(w.keys, w.at + 90.0)
        if n not in drifted
        else Watch((f"movie:imdb:tt9{n:07d}",), w.at)  # another item: only on the target
        for n, w in enumerate(source)
    ]
    return source, target


def reference(source: list[Watch], target: list[Watch]) -> int:
    """The floor of any comparison: index the target's keys, look each source key up."""
    index: dict[str, float] = {}
    for watch in target:
        for key in watch.keys:
            index[key] = watch.at
    return sum(1 for watch in source if not any(k in index for k in watch.keys))


def cpu(fn: Any, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        began = time.process_time()
        fn()
        best = min(best, time.process_time() - began)
    return best


def child_rss_mb(plays: int, diff: bool) -> float:
    """Peak RSS (MB, ``VmHWM``) of a fresh interpreter building both sides (and diffing)."""
    code = (
        "import sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from bench.reconcile import build\n"
        "from crosswatchd.reconcile.diff import diff_plays\n"
        f"source, target = build({plays})\n"
        + (
            f"diff_plays(source, target, window_s={WINDOW_S}, every_play=True)\n"
            f"diff_plays(source, target, window_s={WINDOW_S}, every_play=False)\n"
            if diff
            else ""
        )
        + "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0]\n"
        "print(hwm.split()[1])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return int(out.stdout.strip()) / 1024


def bench_diff(plays: int) -> list[tuple[bool, str]]:
    source, target = build(plays)
    trakt = diff_plays(source, target, window_s=WINDOW_S, every_play=True)
    simkl = diff_plays(source, target, window_s=WINDOW_S, every_play=False)
    ref_s = cpu(lambda: reference(source, target))
    trakt_s = cpu(lambda: diff_plays(source, target, window_s=WINDOW_S, every_play=True))
    simkl_s = cpu(lambda: diff_plays(source, target, window_s=WINDOW_S, every_play=False))
    built_mb, diffed_mb = child_rss_mb(plays, diff=False), child_rss_mb(plays, diff=True)
    print(f"part 1: the diff, {len(source):,} source plays vs {len(target):,} target plays")
    print(f"  reference (index + lookups)   {ref_s:6.3f} s CPU")
    print(
        f"  every play (Trakt)            {trakt_s:6.3f} s CPU  {trakt_s / ref_s:5.1f}x ref"
        f"  missing {len(trakt.missing):,}, extra {trakt.extra:,}"
    )
    print(
        f"  one state per item (SIMKL)    {simkl_s:6.3f} s CPU  {simkl_s / ref_s:5.1f}x ref"
        f"  missing {len(simkl.missing):,} items, extra {simkl.extra:,}"
    )
    print(
        f"  peak RSS: inputs alone {built_mb:.1f} MB, inputs + both diffs {diffed_mb:.1f} MB"
        f" (+{diffed_mb - built_mb:.1f})"
    )
    worst = max(trakt_s, simkl_s)
    return [
        (worst < TARGET_DIFF_CPU_S, f"diff CPU {worst:.3f} s < {TARGET_DIFF_CPU_S} s"),
        (diffed_mb < TARGET_DIFF_RSS_MB, f"diff peak RSS {diffed_mb:.1f} MB < 250 MB"),
        (len(trakt.missing) == plays // 100, f"every-play diff finds the {plays // 100:,}"),
    ]


# -- part 2: whole passes against the fakes ------------------------------------------------------


@dataclass
class Fakes:
    """Where the fakes (served by a child process) are, and what they hold."""

    trakt_url: str
    trakt_client_id: str
    trakt_client_secret: str
    trakt_token: dict[str, Any]
    simkl_url: str
    simkl_client_id: str
    simkl_token: str
    plex_url: str
    plex_token: str
    items: int
    plays: int
    trakt_plays: int
    trakt_missing: int
    simkl_missing: int


async def serve_fakes(plays: int) -> None:
    """The child: build and serve the fakes, print a :class:`Fakes` as one JSON line, answer
    each ``counts`` line on stdin with the requests served so far, stop at EOF."""
    catalog = Catalog()
    # The fakes stamp every change an hour back: the no-op pass finds the targets settled.
    trakt = FakeTrakt(catalog=catalog, get_limit=10_000_000, clock=lambda: time.time() - 3600)
    trakt.post_tolerance_s = 1.0
    simkl = FakeSimkl(
        catalog=catalog,
        get_per_s=100_000.0,
        post_per_s=1000.0,
        now=lambda: datetime.now(UTC) - timedelta(hours=1),
    )
    async with trakt, simkl, FakePlexServer(token="owner-token", owner="alex") as plex:
        items = plays // PLAYS_PER_ITEM
        movies = items * 4 // 10
        media = add_media(catalog, plex, movies=movies, shows=(items - movies) // 60, episodes=60)
        rng = random.Random(29)
        trakt_skip = set(rng.sample(range(len(media) * PLAYS_PER_ITEM), plays // 100))
        simkl_skip = set(rng.sample(range(len(media)), len(media) // 100))
        for round_ in range(PLAYS_PER_ITEM):
            for n, item in enumerate(media):
                at = T0 + MONTH * round_ + timedelta(minutes=n)
                plex.add_play(item.rating_key, viewed_at=at)
                if round_ * len(media) + n not in trakt_skip:
                    trakt.add_play(item.entry, at + timedelta(seconds=30))
                if round_ == PLAYS_PER_ITEM - 1 and n not in simkl_skip:
                    simkl.add_play(item.entry, at)
        where = Fakes(
            trakt.url,
            trakt.client_id,
            trakt.client_secret,
            trakt.issue_token(),
            simkl.url,
            simkl.client_id,
            simkl.issue_token(),
            plex.url,
            plex.token,
            len(media),
            len(media) * PLAYS_PER_ITEM,
            len(trakt.history),
            len(trakt_skip),
            len(simkl_skip),
        )
        print(orjson.dumps(asdict(where)).decode(), flush=True)
        loop = asyncio.get_running_loop()
        while await loop.run_in_executor(None, sys.stdin.readline):
            counts = {"plex_metadata": sum(plex.calls.values())}
            print(orjson.dumps(counts).decode(), flush=True)


class FakesProcess:
    """The child process serving the fakes (so this process's peak RSS is the passes')."""

    def __init__(self, plays: int) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, __file__, "--serve-fakes", "--plays", str(plays)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdout is not None and self._proc.stdin is not None
        self.where = Fakes(**orjson.loads(self._proc.stdout.readline()))

    def plex_metadata_calls(self) -> int:
        assert self._proc.stdout is not None and self._proc.stdin is not None
        self._proc.stdin.write("counts\n")
        self._proc.stdin.flush()
        return int(orjson.loads(self._proc.stdout.readline())["plex_metadata"])

    def close(self) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.close()
        self._proc.wait(timeout=30)


def settings_for(fakes: Fakes, data_dir: Path) -> Settings:
    return Settings(
        data_dir=data_dir,
        trakt={
            "client_id": fakes.trakt_client_id,
            "client_secret": fakes.trakt_client_secret,
            "api_url": fakes.trakt_url,
            "get_limit": 10_000_000,
            "post_per_s": 1000.0,
        },
        simkl={
            "client_id": fakes.simkl_client_id,
            "api_url": fakes.simkl_url,
            "get_per_s": 10_000.0,
            "post_per_s": 1000.0,
        },
        plex={"url": fakes.plex_url, "token": fakes.plex_token},
        resolver={"use_search": False},
        delivery={"timeout_s": 120.0},
        reconcile={"ratings": False, "page_size": 5000},
    )


async def one_pass(settings: Settings) -> tuple[PassReport, float]:
    storage = Storage.files(settings)
    outbox = await storage.outbox()
    try:
        async with services(storage) as svc:
            state = await storage.reconcile_state()
            try:
                began = time.perf_counter()
                report = await make_reconciler(settings, outbox, svc, state).run()
                return report, time.perf_counter() - began
            finally:
                await state.close()
    finally:
        await outbox.close()


async def deliver(settings: Settings) -> None:
    outbox = await Storage.files(settings).outbox()
    try:
        async with services(Storage.files(settings)) as svc:
            drainers = [
                Drainer(outbox, p, settings.delivery, resolve=svc.resolve, profile=a.profile)
                for a, p in svc.providers.items()
            ]
            while sum([await d.drain_plays_once() for d in drainers]):
                pass
    finally:
        await outbox.close()


def print_pass(name: str, report: PassReport, wall_s: float, resolved: int) -> None:
    """One pass's line, and a line per target."""
    print(f"  {name}: {wall_s:.1f} s wall, {resolved:,} Plex metadata requests")
    for provider, r in report.profiles["default"].items():
        print(
            f"    {provider:<6} {r.api_calls:>4} requests  read {r.read or '-':<9}"
            f" source {r.source_plays:,}  target {r.target_plays:,}  missing {r.missing:,}"
            f"  enqueued {r.enqueued:,}  extra {r.extra:,}"
            + (f"  ERROR {r.error}" if r.error else "")
        )


async def bench_passes(plays: int) -> list[tuple[bool, str]]:
    fakes = await asyncio.to_thread(FakesProcess, plays)
    where = fakes.where
    print(
        f"part 2: passes against the fakes (served by a child process): {where.plays:,} plays"
        f" of {where.items:,} items on Plex, Trakt {where.trakt_plays:,} plays,"
        f" SIMKL {where.items - where.simkl_missing:,} items"
    )
    try:
        with tempfile.TemporaryDirectory() as tmp:
            data_dir = Path(tmp) / "data"
            TokenFile(data_dir, "trakt").write(where.trakt_token)
            TokenFile(data_dir, "simkl").write({"access_token": where.simkl_token})
            settings = settings_for(where, data_dir)
            reports = []
            for name in ("first pass (cold)", "second pass (no-op)", "third pass (after delivery)"):
                if reports and len(reports) == 2:
                    began = time.perf_counter()
                    await deliver(settings)
                    print(f"  (the missing plays delivered in {time.perf_counter() - began:.1f} s)")
                calls = await asyncio.to_thread(fakes.plex_metadata_calls)
                report, wall_s = await one_pass(settings)
                resolved = await asyncio.to_thread(fakes.plex_metadata_calls) - calls
                print_pass(name, report, wall_s, resolved)
                reports.append(report)
    finally:
        fakes.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"  peak RSS of this process (the three passes, the outbox, the state file): {peak:.0f} MB"
    )
    full, noop, after = reports
    first = full.profiles["default"]
    return [
        (not any(r.errors for r in reports), "every pass read every side"),
        (
            first["trakt"].enqueued == where.trakt_missing
            and first["simkl"].enqueued == where.simkl_missing,
            f"first pass enqueues the drift ({where.trakt_missing:,} Trakt plays,"
            f" {where.simkl_missing:,} SIMKL items)",
        ),
        (
            all(r.api_calls == 1 and r.enqueued == 0 for r in noop.profiles["default"].values()),
            "no-op pass: 1 request per target, nothing enqueued",
        ),
        (
            all(
                r.api_calls <= 2 and r.missing == 0 and r.enqueued == 0
                for r in after.profiles["default"].values()
            ),
            "pass after delivery: at most 2 requests per target, nothing missing",
        ),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--plays", type=int, default=100_000, help="plays on each side (100000)")
    parser.add_argument("--skip-passes", action="store_true", help="part 1 only")
    parser.add_argument("--serve-fakes", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    if args.serve_fakes:
        asyncio.run(serve_fakes(args.plays))
        return 0
    checks: list[tuple[bool, str]] = []
    if not args.skip_passes:  # first: this process's peak RSS is then the passes' own
        checks += asyncio.run(bench_passes(args.plays))
        print()
    checks += bench_diff(args.plays)
    print()
    for ok, text in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")
    passed = all(ok for ok, _ in checks)
    print("PASS" if passed else "FAIL")
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
