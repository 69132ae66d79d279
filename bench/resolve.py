"""Benchmark of the id resolver against in-process fakes.

10,000 distinct items, each needing an outside step, spread over the chain:

    plex      3,000 movies known only by ratingKey             (1 PMS call each)
    plex      2,000 new-agent episodes (own ids + grandparent) (1 PMS call per show: 200 shows)
    tautulli  2,000 episodes known only by ratingKey, not on   (PMS 404, then get_metadata
              the PMS                                          with the show's guids)
    trakt     2,000 episodes known only by their own tvdb id   (GET /search/tvdb/{id})
    simkl       500 movies known only by a tvdb id             (Trakt, then GET /search/id; no
                                                               match on either: partial result)
    title       500 movies known only by title + year          (GET /search/movie, fallback on)

A step's "items" column counts the distinct items whose chain reaches it.

Cold pass: each distinct item once (50 at a time), real IdCache on a temp file. Then 50,000
warm resolutions (each item five times, shuffled). Reports warm lookups/s (target >= 50,000/s)
and, per step, outside calls per distinct item on the cold pass (target <= 1) and the most
calls any single outside resource received (must be 1). Prints PASS/FAIL per target; exits 1 on
any FAIL.

Run: ``.venv/bin/python bench/resolve.py``. The fakes' own rate limits are run on a clock that
advances one second per request, so they never throttle; the limiters passed to the search
clients are generous. The numbers measure the resolver and cache, not the fakes' limits.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import sys
import tempfile
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import structlog

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.fakes.catalog import Catalog  # noqa: E402
from tests.fakes.plex_server import FakePlexServer  # noqa: E402
from tests.fakes.simkl import FakeSimkl  # noqa: E402
from tests.fakes.tautulli import FakeTautulli  # noqa: E402
from tests.fakes.trakt import FakeTrakt  # noqa: E402

from crosswatchd.models import Ids, Item, MediaKind  # noqa: E402
from crosswatchd.ratelimit import Limiter  # noqa: E402
from crosswatchd.resolve import IdCache, Resolver, SimklSearch, TraktSearch  # noqa: E402
from crosswatchd.sources.plex_server import PlexServer  # noqa: E402
from crosswatchd.sources.tautulli_api import TautulliClient  # noqa: E402

PLEX_TOKEN = "bench-plex-token"
DISTINCT = 10_000
WARM = 50_000
CONCURRENCY = 50
TARGET_WARM_PER_S = 50_000.0
TARGET_CALLS_PER_ITEM = 1.0


def ticking() -> Any:
    """A clock that advances one second per read (keeps the fakes' rate limits quiet)."""
    counter = itertools.count()
    return lambda: float(next(counter))


def build_world(
    plex: FakePlexServer, tautulli: FakeTautulli, catalog: Catalog
) -> dict[str, list[Item]]:
    """Fill the fakes and return the items per expected step."""
    items: dict[str, list[Item]] = {s: [] for s in ("plex", "tautulli", "trakt", "simkl", "title")}
    for i in range(3000):
        rk = str(100_000 + i)
        plex.add_movie(rk, f"Movie {i}", 1950 + i % 70, [f"imdb://tt{1_000_000 + i}"])
        items["plex"].append(Item(kind=MediaKind.MOVIE, rating_key=rk))
    for s in range(200):
        show_rk = str(200_000 + s)
        plex.add_show(show_rk, f"Show {s}", 2000, [f"tvdb://{300_000 + s}"])
        for e in range(10):
            items["plex"].append(
                Item(
                    kind=MediaKind.EPISODE,
                    ids=Ids(tvdb=str(400_000 + s * 10 + e)),
                    rating_key=str(210_000 + s * 10 + e),
                    grandparent_rating_key=show_rk,
                    guid=f"plex://episode/{s * 10 + e:024x}",
                    season=1,
                    number=e + 1,
                )
            )
    for i in range(2000):
        rk = str(500_000 + i)
        tautulli.metadata[rk] = {
            "media_type": "episode",
            "guids": [],
            "grandparent_guids": [f"tvdb://{600_000 + i // 10}"],
            "grandparent_rating_key": str(700_000 + i // 10),
            "parent_media_index": str(1 + i % 3),
            "media_index": str(1 + i % 10),
        }
        items["tautulli"].append(Item(kind=MediaKind.EPISODE, rating_key=rk))
    for s in range(100):
        show = catalog.add_show(f"Trakt Show {s}", 2010, tvdb=800_000 + s)
        for e in range(20):
            tvdb = 900_000 + s * 20 + e
            catalog.add_episode(show, 1, e + 1, tvdb=tvdb)
            items["trakt"].append(Item(kind=MediaKind.EPISODE, ids=Ids(tvdb=str(tvdb))))
    for i in range(500):
        items["simkl"].append(Item(kind=MediaKind.MOVIE, ids=Ids(tvdb=str(1_100_000 + i))))
    for i in range(500):
        title, year = f"Title Movie {i}", 1960 + i % 60
        catalog.add_movie(title, year, imdb=f"tt{3_000_000 + i}")
        items["title"].append(Item(kind=MediaKind.MOVIE, title=title, year=year))
    return items


async def main() -> int:
    # The daemon's production logging drops debug lines before formatting them; do the same.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    catalog = Catalog()
    async with (
        FakePlexServer(token=PLEX_TOKEN) as plex,
        FakeTautulli(api_key="key") as tautulli,
        FakeTrakt(client_id="cid", catalog=catalog, monotonic=ticking()) as trakt,
        FakeSimkl(client_id="cid", catalog=catalog, clock=ticking()) as simkl,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONCURRENCY)) as session,
    ):
        world = build_world(plex, tautulli, catalog)
        distinct = [item for group in world.values() for item in group]
        assert len(distinct) == DISTINCT, len(distinct)
        with tempfile.TemporaryDirectory() as tmp:
            cache = await IdCache.open(
                Path(tmp) / "cache.sqlite3", positive_ttl_s=30 * 86400, negative_ttl_s=6 * 3600
            )

            def limiter() -> Limiter:
                return Limiter.per_second(post_per_s=1, get_per_s=1e6, get_capacity=1e6)

            resolver = Resolver(
                cache=cache,
                plex=PlexServer(session=session, url=plex.url, token=PLEX_TOKEN),
                tautulli=TautulliClient(session=session, url=tautulli.url, api_key="key"),
                trakt_search=TraktSearch(
                    session=session, limiter=limiter(), client_id="cid", api_url=trakt.url
                ),
                simkl_search=SimklSearch(
                    session=session, limiter=limiter(), client_id="cid", api_url=simkl.url
                ),
                title_fallback=True,
            )
            try:
                # ---- cold ------------------------------------------------------------------
                order = distinct[:]
                random.Random(1).shuffle(order)
                sem = asyncio.Semaphore(CONCURRENCY)
                steps: Counter[str] = Counter()

                async def one(item: Item) -> None:
                    async with sem:
                        steps[(await resolver.resolve(item)).step] += 1

                t0 = time.perf_counter()
                await asyncio.gather(*(one(item) for item in order))
                cold_s = time.perf_counter() - t0

                trakt_id = Counter(r[1] for r in trakt.requests if r[1].startswith("/search/tvdb"))
                trakt_title = Counter(
                    (r[2].get("query"), r[2].get("years"))
                    for r in trakt.requests
                    if r[1] == "/search/movie"
                )
                simkl_search = Counter(
                    r["query"].get("tvdb") for r in simkl.requests if r["path"] == "/search/id"
                )
                # Distinct items whose chain reaches each step (cheapest first): items known
                # only by ratingKey reach Plex before Tautulli; tvdb-only movies reach Trakt
                # before SIMKL.
                n = {step: len(group) for step, group in world.items()}
                per_step = {
                    "plex": (n["plex"] + n["tautulli"], plex.calls),
                    "tautulli": (n["tautulli"], tautulli.metadata_calls_by_key),
                    "trakt": (n["trakt"] + n["simkl"], trakt_id),
                    "simkl": (n["simkl"], simkl_search),
                    "title": (n["title"], trakt_title),
                }
                calls_before_warm = (
                    len(plex.requests)
                    + len(tautulli.requests)
                    + len(trakt.requests)
                    + len(simkl.requests)
                )

                # ---- warm ------------------------------------------------------------------
                # Equal but distinct objects, as a source builds a new Item per event.
                warm = [replace(distinct[i % DISTINCT]) for i in range(WARM)]
                random.Random(2).shuffle(warm)
                warm_steps: Counter[str] = Counter()
                t0 = time.perf_counter()
                for item in warm:
                    warm_steps[(await resolver.resolve(item)).step] += 1
                warm_s = time.perf_counter() - t0
                calls_after_warm = (
                    len(plex.requests)
                    + len(tautulli.requests)
                    + len(trakt.requests)
                    + len(simkl.requests)
                )
            finally:
                await resolver.close()
                await cache.close()

    ok = True
    print(f"cold: {DISTINCT} distinct items in {cold_s:.2f} s; steps reported {dict(steps)}")
    print(f"{'step':<9} {'items':>6} {'calls':>6} {'calls/item':>10} {'max/resource':>12}  result")
    for step, (n_items, counter) in per_step.items():
        calls = sum(counter.values())
        per_item = calls / n_items
        worst = max(counter.values(), default=0)
        good = per_item <= TARGET_CALLS_PER_ITEM and worst <= 1
        ok &= good
        verdict = "PASS" if good else "FAIL"
        print(f"{step:<9} {n_items:>6} {calls:>6} {per_item:>10.3f} {worst:>12}  {verdict}")
    rate = WARM / warm_s
    warm_calls = calls_after_warm - calls_before_warm
    good = rate >= TARGET_WARM_PER_S and warm_calls == 0
    ok &= good
    print(
        f"warm: {WARM} resolutions in {warm_s:.3f} s = {rate:,.0f} lookups/s "
        f"(target >= {TARGET_WARM_PER_S:,.0f}/s), outside calls {warm_calls}, "
        f"steps {dict(warm_steps)}  {'PASS' if good else 'FAIL'}"
    )
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
