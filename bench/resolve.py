"""Benchmark of the id resolver against in-process fakes.

10,000 distinct items, each needing an outside step, spread over the chain. The fakes hold
what the real services would answer for them:

    plex      3,000 movies known only by ratingKey             (1 PMS call each)
    plex      2,000 new-agent webhook episodes (guid           (1 PMS call each for the
              plex://episode/…, own tvdb id, ratingKey,        episode, which the PMS has
              grandparentRatingKey, position): 200 shows x 10  under that ratingKey with the
                                                               same guid, + 1 per show)
    tautulli  2,000 episodes known only by ratingKey that the  (PMS 404, then 1 get_metadata
              Plex step cannot answer                          each: guid, guids,
                                                               grandparent_guids, position)
    trakt     2,000 episodes known only by their own tvdb id   (GET /search/tvdb/{id})
    simkl       500 movies known only by a tvdb id             (Trakt, then GET /search/id; no
                                                               match on either: partial result)
    title       500 movies known only by title + year          (GET /search/movie, fallback on)

A step's "items" column counts the distinct items whose chain reaches it (ratingKey-only
items reach Plex before Tautulli; tvdb-only movies reach Trakt before SIMKL).

Calls are split, per step, into item lookups and show lookups. A ratingKey from a Plex webhook
is trusted only after the server confirms it names the same item (webhooks also report plays on
friends' servers), so a Plex-resolved episode costs its own metadata plus its show's, by the
server's own grandparentRatingKey; the show's answer is shared by all its episodes. The exact
cost is therefore 1 + shows/episodes calls per episode (here 1.1; 1.029 over the whole Plex
step), and the report says so instead of folding it into one number:

    item calls / items   requests about items (anything but a show)   target <= 1
    show calls / shows   requests about the shows the step's episodes  target <= 1
                         belong to on that step's server ("-": none)
    calls/item           all requests / items (informational)
    max/resource         most requests any one ratingKey or search      must be 1
                         received

Cold pass: each distinct item once (50 at a time), real IdCache on a temp file. Then 50,000
warm resolutions (each item five times, shuffled; equal but distinct Item objects). Reports warm
lookups/s (target >= 50,000/s; no outside call allowed) and the in-memory cache reads per warm
resolution: 1 for a fully resolved item; a partial result (the SIMKL group) re-reads the
negative answers that stopped its chain, so they are asked again once those expire. Prints
PASS/FAIL per target; exits 1 on any FAIL.

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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
import structlog

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from crosswatchd.models import Ids, Item, MediaKind  # noqa: E402
from crosswatchd.providers.simkl import SimklSearch  # noqa: E402
from crosswatchd.providers.trakt import TraktSearch  # noqa: E402
from crosswatchd.ratelimit import Limiter  # noqa: E402
from crosswatchd.resolve import IdCache, Resolver  # noqa: E402
from crosswatchd.sources.plex_server import PlexServer  # noqa: E402
from crosswatchd.sources.tautulli_api import TautulliClient  # noqa: E402
from tests.fakes.catalog import Catalog  # noqa: E402
from tests.fakes.plex_server import FakePlexServer  # noqa: E402
from tests.fakes.simkl import FakeSimkl  # noqa: E402
from tests.fakes.tautulli import FakeTautulli  # noqa: E402
from tests.fakes.trakt import FakeTrakt  # noqa: E402

PLEX_TOKEN = "bench-plex-token"
DISTINCT = 10_000
WARM = 50_000
CONCURRENCY = 50
TARGET_WARM_PER_S = 50_000.0
TARGET_CALLS_PER_ITEM = 1.0
TARGET_CALLS_PER_SHOW = 1.0


#: Steps with outside calls, in chain order.
STEPS = ("plex", "tautulli", "trakt", "simkl", "title")


@dataclass(frozen=True)
class StepRow:
    """One step's cold-pass calls, split into item lookups and show lookups.

    ``items``: distinct items whose chain reaches the step; ``item_calls``: requests about an
    item (anything but a show); ``shows``: distinct shows (``World.show_keys``) the step may
    look up; ``show_calls``: requests about those shows; ``worst``: most requests any one
    resource (ratingKey, search) received.
    """

    step: str
    items: int
    item_calls: int
    shows: int
    show_calls: int
    worst: int

    @classmethod
    def split(cls, step: str, items: int, calls: Counter[Any], show_keys: set[str]) -> StepRow:
        """Split *calls* (requests per resource) into show lookups (keys in *show_keys*) and
        item lookups."""
        show_calls = sum(v for k, v in calls.items() if k in show_keys)
        return cls(
            step=step,
            items=items,
            item_calls=sum(calls.values()) - show_calls,
            shows=len(show_keys),
            show_calls=show_calls,
            worst=max(calls.values(), default=0),
        )

    @property
    def per_item(self) -> float:
        """Item lookups per distinct item reaching the step (target <= 1)."""
        return self.item_calls / self.items

    @property
    def per_show(self) -> float:
        """Show lookups per distinct show (target <= 1); 0 when the step has no shows."""
        return self.show_calls / self.shows if self.shows else float(self.show_calls)

    @property
    def total_per_item(self) -> float:
        """All calls per distinct item (informational: 1 + shows/items at most)."""
        return (self.item_calls + self.show_calls) / self.items

    @property
    def good(self) -> bool:
        """Both per-item and per-show targets met, and no resource asked twice."""
        return (
            self.per_item <= TARGET_CALLS_PER_ITEM
            and self.per_show <= TARGET_CALLS_PER_SHOW
            and self.worst <= 1
        )


def ticking() -> Any:
    """A clock that advances one second per read (keeps the fakes' rate limits quiet)."""
    counter = itertools.count()
    return lambda: float(next(counter))


@dataclass
class World:
    """The bench's items per expected step, and the show ratingKeys each server names.

    ``show_keys[step]`` are the distinct ratingKeys of the shows whose episodes reach *step*
    on that step's server (as the server's own ``grandparentRatingKey`` /
    ``grandparent_rating_key`` names them): the resources a show lookup may be about.
    """

    items: dict[str, list[Item]] = field(default_factory=dict)
    show_keys: dict[str, set[str]] = field(default_factory=dict)


def build_world(plex: FakePlexServer, tautulli: FakeTautulli, catalog: Catalog) -> World:
    """Fill the fakes as the real services would answer, and return the items per step."""
    world = World(
        items={s: [] for s in STEPS},
        show_keys={s: set() for s in STEPS},
    )
    items = world.items
    for i in range(3000):
        rk = str(100_000 + i)
        plex.add_movie(rk, f"Movie {i}", 1950 + i % 70, [f"imdb://tt{1_000_000 + i}"])
        items["plex"].append(Item(kind=MediaKind.MOVIE, rating_key=rk))
    # New-agent episodes, as a Plex webhook reports them (Guid[] ids are the episode's own,
    # guid is plex://episode/…); the PMS has every episode under its ratingKey, and its show.
    for s in range(200):
        show_rk = str(200_000 + s)
        plex.add_show(show_rk, f"Show {s}", 2000, [f"tvdb://{300_000 + s}"])
        world.show_keys["plex"].add(show_rk)
        for e in range(10):
            n = s * 10 + e
            rk, guid, own = str(210_000 + n), f"plex://episode/{n:024x}", f"tvdb://{400_000 + n}"
            plex.add_episode(rk, show_rk, 1, e + 1, [own], title=f"Show {s} E{e + 1}", guid=guid)
            items["plex"].append(
                Item(
                    kind=MediaKind.EPISODE,
                    title=f"Show {s} E{e + 1}",
                    ids=Ids(tvdb=str(400_000 + n)),
                    show_title=f"Show {s}",
                    rating_key=rk,
                    grandparent_rating_key=show_rk,
                    guid=guid,
                    season=1,
                    number=e + 1,
                )
            )
    # Episodes known only by ratingKey that the Plex step cannot answer (404 on the PMS the
    # resolver asks); Tautulli's get_metadata carries what the real one does: the episode's
    # guid and guids, its show's grandparent_guid(s), grandparent_rating_key and position.
    for i in range(2000):
        rk, show_rk = str(500_000 + i), str(700_000 + i // 10)
        tautulli.metadata[rk] = {
            "rating_key": rk,
            "media_type": "episode",
            "title": f"Tautulli Episode {i}",
            "guid": f"plex://episode/{0x7A000000 + i:024x}",
            "guids": [f"tvdb://{650_000 + i}"],
            "grandparent_title": f"Tautulli Show {i // 10}",
            "grandparent_guid": f"plex://show/{0x7B000000 + i // 10:024x}",
            "grandparent_guids": [f"tvdb://{600_000 + i // 10}"],
            "grandparent_rating_key": show_rk,
            "parent_media_index": "1",
            "media_index": str(1 + i % 10),
        }
        world.show_keys["tautulli"].add(show_rk)
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
    return world


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
        distinct = [item for group in world.items.values() for item in group]
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
                n = {step: len(group) for step, group in world.items.items()}
                reach = {
                    "plex": n["plex"] + n["tautulli"],
                    "tautulli": n["tautulli"],
                    "trakt": n["trakt"] + n["simkl"],
                    "simkl": n["simkl"],
                    "title": n["title"],
                }
                calls: dict[str, Counter[Any]] = {
                    "plex": Counter(plex.calls),
                    "tautulli": Counter(tautulli.metadata_calls_by_key),
                    "trakt": trakt_id,
                    "simkl": simkl_search,
                    "title": trakt_title,
                }
                rows = [
                    StepRow.split(step, reach[step], calls[step], world.show_keys[step])
                    for step in STEPS
                ]
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
                stats = cache.stats
                before = (stats.memory_hits, stats.disk_hits, stats.misses)
                t0 = time.perf_counter()
                for item in warm:
                    warm_steps[(await resolver.resolve(item)).step] += 1
                warm_s = time.perf_counter() - t0
                memory_reads = stats.memory_hits - before[0]
                other_reads = stats.disk_hits - before[1] + stats.misses - before[2]
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
    print(
        f"{'step':<9} {'items':>6} {'item calls':>10} {'per item':>8} {'shows':>6} "
        f"{'show calls':>10} {'per show':>8} {'calls/item':>10} {'max/resource':>12}  result"
    )
    for row in rows:
        ok &= row.good
        shows = (
            f"{row.shows:>6} {row.show_calls:>10} {row.per_show:>8.3f}"
            if row.shows
            else (f"{'-':>6} {row.show_calls:>10} {'-':>8}")
        )
        print(
            f"{row.step:<9} {row.items:>6} {row.item_calls:>10} {row.per_item:>8.3f} {shows} "
            f"{row.total_per_item:>10.3f} {row.worst:>12}  {'PASS' if row.good else 'FAIL'}"
        )
    rate = WARM / warm_s
    warm_calls = calls_after_warm - calls_before_warm
    good = rate >= TARGET_WARM_PER_S and warm_calls == 0
    ok &= good
    print(
        f"warm: {WARM} resolutions in {warm_s:.3f} s = {rate:,.0f} lookups/s "
        f"(target >= {TARGET_WARM_PER_S:,.0f}/s), outside calls {warm_calls}, "
        f"steps {dict(warm_steps)}  {'PASS' if good else 'FAIL'}"
    )
    print(
        f"warm cache: {memory_reads / WARM:.3f} in-memory reads per resolution "
        f"({memory_reads} for {WARM}; partial results re-read their negative answers), "
        f"SQLite reads and misses {other_reads}"
    )
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
