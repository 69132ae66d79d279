"""Benchmark of the Anime-Lists parser, lookup and store.

Generates a full-size ``anime-list-master.xml`` (17,000 rows in the real schema) with the mix
the reference counted in the real file (``shared/reference/anime/README.md`` §2, "Size and
shape": 16,865 rows; 1,428 with a mapping-list; 634 numeric episodeoffsets; 74
``defaulttvdbseason="a"``; ``tvdbid`` empty 6,134, hentai 1,289, movie 1,178, other types ~800;
tmdbid 672, imdbid 1,634 rows), scaled to 17,000 rows. ``--file PATH`` measures a real copy
instead.

Reports, each against a reference measured in the same run:

    parse        median of 7 runs of parse_anime_list  vs  ElementTree.fromstring (DOM only),
                 interleaved
    memory       tracemalloc: peak while parsing, and retained by the result,
                 vs the same for the DOM; peak RSS of a child process that parses once,
                 vs one that only reads the bytes
    lookup       µs per play: AnimeMapping.episode / .film over 200,000 mixed plays
                 (AniDB ids present and absent; regular episodes, specials), and through
                 AnimeListStore.episode
    resolve      µs per play through Resolver.resolve (the anime step: HAMA GUID parse,
                 the lookup, the mapped item, or the UnresolvedError of a play the list
                 cannot map) over 20,000 of those plays  vs  the payload step's warm path
                 for legacy thetvdb GUIDs (the cheapest resolution there is)
    store        against the fake host: first start (download + parse + store), restart
                 (stored copy, no request), re-validation (304)

Run: ``.venv/bin/python bench/animelists.py [--file anime-list-master.xml]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import random
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import aiohttp
import structlog

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from crosswatchd.animelists import AnimeMapping, parse_anime_list  # noqa: E402
from crosswatchd.animelists_store import AnimeListStore  # noqa: E402
from crosswatchd.errors import UnresolvedError  # noqa: E402
from crosswatchd.models import Item, MediaKind  # noqa: E402
from crosswatchd.resolve import IdCache, Resolver  # noqa: E402
from tests.clocks import Clock  # noqa: E402
from tests.fakes.animelists import (  # noqa: E402
    AnimeRow,
    FakeAnimeLists,
    MappingSpec,
    anime_list_xml,
)

ROWS = 17_000
_OTHER_TYPES = ["hentai"] * 1289 + ["movie"] * 1178 + ["OVA"] * 423 + ["music video"] * 119
_OTHER_TYPES += ["tv special"] * 111 + ["web"] * 99 + ["other"] * 40 + ["ova"] * 7


def _pairs(rng: random.Random, count: int, *, zeros: float = 0.15) -> str:
    out = []
    for n in range(1, count + 1):
        if rng.random() < zeros:
            out.append(f"{n}-0")
        elif rng.random() < 0.05:
            out.append(f"{n}-{n + 1}+{n + 2}")
        else:
            out.append(f"{n}-{n + rng.randint(0, 3)}")
    return ";" + ";".join(out) + ";"


def _absolute_mappings(rng: random.Random) -> tuple[MappingSpec, ...]:
    specs = [MappingSpec(0, tvdbseason=0, pairs=_pairs(rng, rng.randint(3, 40)))]
    first = 1
    for season in range(1, rng.randint(3, 23)):
        last = first + rng.randint(11, 60)
        specs.append(MappingSpec(1, tvdbseason=season, start=first, end=last, offset=1 - first))
        first = last + 1
    return tuple(specs)


def generate(rows: int = ROWS, seed: int = 20260820) -> bytes:
    """A list with the real file's proportions (module docstring), deterministic per seed."""
    rng = random.Random(seed)
    scale = rows / 16_865
    kinds = ["empty"] * round(6134 * scale) + ["type"] * round(len(_OTHER_TYPES) * scale)
    kinds += ["absolute"] * round(74 * scale)
    kinds += ["series"] * (rows - len(kinds))
    rng.shuffle(kinds)
    mapping_rows = round(1428 * scale)
    series_idx = [i for i, k in enumerate(kinds) if k == "series"]
    with_mapping = set(rng.sample(series_idx, mapping_rows - round(74 * scale)))
    with_offset = set(rng.sample(series_idx, round(634 * scale)))
    out: list[AnimeRow] = []
    tvdb_next = 70_000
    for i, kind in enumerate(kinds):
        anidb = i + 1
        name = f"Anime Title {anidb} " + "".join(rng.choices("abcdefghijklmnop ", k=24))
        tmdbid = str(rng.randint(1, 999_999)) if rng.random() < 672 / 16_865 else ""
        imdbid = f"tt{rng.randint(100_000, 9_999_999):07d}" if rng.random() < 0.097 else ""
        if kind == "empty":
            out.append(AnimeRow(anidb, name=name, tmdbid=tmdbid, imdbid=imdbid))
            continue
        if kind == "type":
            tvdbid = rng.choice(_OTHER_TYPES)
            out.append(AnimeRow(anidb, tvdbid, "1", name=name, tmdbid=tmdbid, imdbid=imdbid))
            continue
        if rng.random() < 0.6:
            tvdb_next += rng.randint(1, 400)
        tvdb = str(tvdb_next)
        if kind == "absolute":
            row = AnimeRow(
                anidb, tvdb, "a", "", tvdb, "a", name=name, mappings=_absolute_mappings(rng)
            )
            out.append(row)
            continue
        season = str(rng.choice([0, 1, 1, 1, 1, 2, 3, 4]))
        offset = str(rng.choice([12, 13, 24, 25, 11])) if i in with_offset else ""
        mappings: tuple[MappingSpec, ...] = ()
        if i in with_mapping:
            mappings = (MappingSpec(0, tvdbseason=0, pairs=_pairs(rng, rng.randint(1, 12))),)
            if rng.random() < 0.3:
                start = rng.randint(2, 13)
                mappings += (
                    MappingSpec(
                        1, tvdbseason=int(season) + 1, start=start, end=start + 11, offset=1 - start
                    ),
                )
        studio = "Studio" if rng.random() < 273 / 16_865 else ""
        out.append(
            AnimeRow(anidb, tvdb, season, offset, tvdb, season, offset, tmdbid, imdbid, name,
                     mappings, studio=studio)
        )  # fmt: skip
    return anime_list_xml(out)


def _paired_medians(
    first: Callable[[], object], second: Callable[[], object], runs: int = 7
) -> tuple[float, float]:
    """Median seconds of each, the runs interleaved so machine noise hits both alike."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(runs):
        for fn, out in ((first, times[0]), (second, times[1])):
            gc.collect()
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def _traced(fn: Callable[[], object]) -> tuple[float, float, object]:
    """(peak MB while running, MB still held by the result, result)."""
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        result = fn()
        gc.collect()
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return (peak - base) / 1e6, (current - base) / 1e6, result


def _child_rss_mb(path: Path, mode: str) -> float:
    """Peak RSS (MB, ``VmHWM``) of a fresh interpreter that reads *path* and does *mode*.

    ``VmHWM`` rather than ``ru_maxrss``: Linux carries the parent's ``ru_maxrss`` over
    ``fork`` + ``exec``, so a child would report this (large) process's peak."""
    code = (
        "import sys, xml.etree.ElementTree as ET\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from crosswatchd.animelists import parse_anime_list\n"
        f"data = open({str(path)!r}, 'rb').read()\n"
        f"keep = {{'parse': parse_anime_list, 'dom': ET.fromstring, 'read': len}}[{mode!r}](data)\n"
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0]\n"
        "print(hwm.split()[1])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return int(out.stdout.strip()) / 1024  # kB


def _plays(mapping: AnimeMapping, count: int, seed: int = 7) -> list[tuple[str, int, int]]:
    rng = random.Random(seed)
    ids = list(mapping)
    plays = []
    for _ in range(count):
        anidb = rng.choice(ids) if rng.random() < 0.95 else str(rng.randint(900_000, 999_999))
        season = 0 if rng.random() < 0.1 else 1
        plays.append((anidb, season, rng.randint(1, 60)))
    return plays


def _per_play_us(fn: Callable[[str, int, int], object], plays: list[tuple[str, int, int]]) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for anidb, season, episode in plays:
            fn(anidb, season, episode)
        best = min(best, time.perf_counter() - start)
    return best / len(plays) * 1e6


async def _store_figures(data: bytes, plays: list[tuple[str, int, int]]) -> dict[str, float]:
    clock = Clock(1_790_000_000.0)
    with tempfile.TemporaryDirectory() as tmp:
        async with FakeAnimeLists(data) as fake, aiohttp.ClientSession() as session:

            def store() -> AnimeListStore:
                return AnimeListStore(
                    session=session, directory=Path(tmp), url=fake.url, unix_s=clock
                )

            start = time.perf_counter()
            await store().ensure()
            first = time.perf_counter() - start
            start = time.perf_counter()
            restarted = store()
            await restarted.ensure()
            restart = time.perf_counter() - start
            clock.advance(86_400)
            start = time.perf_counter()
            await restarted.ensure()
            revalidate = time.perf_counter() - start
            resolve_us, payload_us, parked = await _resolve_figures(
                restarted, plays[:20_000], Path(tmp)
            )
            return {
                "resolve_us": resolve_us,
                "payload_us": payload_us,
                "parked": parked,
                "lookup_us": _per_play_us(restarted.episode, plays),
                "first_ms": first * 1e3,
                "restart_ms": restart * 1e3,
                "revalidate_ms": revalidate * 1e3,
                "requests": fake.requests_count,
                "downloads": fake.full_responses,
            }


async def _resolve_figures(
    store: AnimeListStore, plays: list[tuple[str, int, int]], tmp: Path
) -> tuple[float, float, float]:
    """(µs per AniDB play through the resolver, µs per legacy-GUID play through it, share of
    AniDB plays the list cannot map)."""
    hama = [
        Item(
            MediaKind.EPISODE,
            show_title="Anime",
            season=season,
            number=episode,
            guid=f"com.plexapp.agents.hama://anidb-{anidb}/{season}/{episode}?lang=en",
        )
        for anidb, season, episode in plays
    ]
    legacy = [
        Item(
            MediaKind.EPISODE,
            show_title="Show",
            season=season,
            number=episode,
            guid=f"com.plexapp.agents.thetvdb://{70_000 + int(anidb) % 5000}/{season}/{episode}",
        )
        for anidb, season, episode in plays
    ]
    cache = await IdCache.open(tmp / "cache.sqlite3", positive_ttl_s=1e6, negative_ttl_s=60)
    try:
        resolver = Resolver(cache=cache, anime=store)

        async def run(items: list[Item]) -> tuple[float, int]:
            best, parked = float("inf"), 0
            for _ in range(3):
                parked = 0
                start = time.perf_counter()
                for item in items:
                    try:
                        await resolver.resolve(item)
                    except UnresolvedError:
                        parked += 1
                best = min(best, time.perf_counter() - start)
            return best / len(items) * 1e6, parked

        anime_us, parked = await run(hama)
        payload_us, _ = await run(legacy)
    finally:
        await cache.close()
    return anime_us, payload_us, parked / len(hama)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--file", type=Path, help="a real anime-list-master.xml instead")
    parser.add_argument("--rows", type=int, default=ROWS)
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))

    data = args.file.read_bytes() if args.file else generate(args.rows)
    source = str(args.file) if args.file else f"generated ({args.rows:,} rows)"
    mapping = parse_anime_list(data)
    print(f"list: {source}, {len(data):,} bytes, {len(mapping):,} rows")

    parse_s, dom_s = _paired_medians(lambda: parse_anime_list(data), lambda: ET.fromstring(data))
    print(
        f"parse:  {parse_s * 1e3:7.1f} ms median of 7   "
        f"(ElementTree.fromstring {dom_s * 1e3:.1f} ms; ratio {parse_s / dom_s:.2f}x)"
    )

    peak, kept, _ = _traced(lambda: parse_anime_list(data))
    dom_peak, dom_kept, _ = _traced(lambda: ET.fromstring(data))
    print(
        f"memory: parse peak {peak:6.1f} MB, retained {kept:5.1f} MB   "
        f"(DOM peak {dom_peak:.1f} MB, retained {dom_kept:.1f} MB; "
        f"retained ratio {kept / dom_kept:.2f}x)"
    )
    with tempfile.NamedTemporaryFile(suffix=".xml") as handle:
        handle.write(data)
        handle.flush()
        path = Path(handle.name)
        read_rss = _child_rss_mb(path, "read")
        parse_rss = _child_rss_mb(path, "parse")
        dom_rss = _child_rss_mb(path, "dom")
    print(
        f"        peak RSS of a child: read only {read_rss:.1f} MB, parse {parse_rss:.1f} MB "
        f"(+{parse_rss - read_rss:.1f}), DOM {dom_rss:.1f} MB (+{dom_rss - read_rss:.1f})"
    )

    plays = _plays(mapping, 200_000)
    episode_us = _per_play_us(mapping.episode, plays)
    film_us = _per_play_us(lambda a, _s, _e: mapping.film(a), plays)

    figures = asyncio.run(_store_figures(data, plays))
    print(
        f"store:  first start {figures['first_ms']:.0f} ms (download + parse + store), "
        f"restart {figures['restart_ms']:.0f} ms (stored copy), "
        f"re-validation {figures['revalidate_ms']:.1f} ms (304); "
        f"{figures['requests']:.0f} requests, {figures['downloads']:.0f} download"
    )
    print(
        f"lookup: episode {episode_us:.2f} µs/play, film {film_us:.2f} µs/play, "
        f"AnimeListStore.episode {figures['lookup_us']:.2f} µs/play ({len(plays):,} plays)"
    )
    print(
        f"resolve: {figures['resolve_us']:.1f} µs/play through the anime step "
        f"({figures['parked']:.0%} parked by the list)  vs  payload warm path "
        f"{figures['payload_us']:.1f} µs/play; ratio "
        f"{figures['resolve_us'] / figures['payload_us']:.2f}x (20,000 plays)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
