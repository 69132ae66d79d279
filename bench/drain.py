"""Benchmark: draining a backlog at each target's ceiling.

Stores ``--plays`` completed plays of distinct movies in a real outbox (SQLite file), then
runs the daemon's drainers for Trakt and SIMKL side by side, with the daemon's own limiters
(``limiter_for``: 1 POST/s each, the services' documented limit), against the strict fakes in
this process (they enforce 1 POST/s themselves and block a client that sends faster). Prints,
per target, plays delivered, wall time, plays/s and the ratio to the target's ceiling:
``max_batch`` plays per POST at 1 POST/s (Trakt "Rate Limiting"; api.simkl.org "Rate
limits"). Every play must be delivered exactly once, with no 429 and no block.

Target (issue #13): each target at >= 90 % of its ceiling.

Usage: ``python bench/drain.py [--plays 10000] [--only trakt|simkl]``. Exit status 1 on FAIL.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crosswatchd.app import limiter_for
from crosswatchd.config import DeliverySettings, Settings
from crosswatchd.drain import Drainer
from crosswatchd.logs import configure_logging
from crosswatchd.models import Action, Ids, Item, MediaKind, PlayEvent, Source
from crosswatchd.outbox import Outbox
from crosswatchd.providers.base import Provider
from crosswatchd.providers.simkl import SimklProvider
from crosswatchd.providers.trakt import TraktProvider
from crosswatchd.tokens import TokenStore
from tests.fakes.catalog import Catalog
from tests.fakes.simkl import FakeSimkl
from tests.fakes.trakt import FakeTrakt

TARGET_RATIO = 0.90
T0 = datetime(2025, 6, 1, 20, 0, tzinfo=UTC)


def _movie(n: int) -> Item:
    ids = Ids(imdb=f"tt{7_000_000 + n}", tmdb=str(n + 1))
    return Item(MediaKind.MOVIE, f"Bench Movie {n}", 2000, ids=ids)


async def _drain(outbox: Outbox, provider: Provider, plays: int) -> tuple[float, int]:
    """Run one drainer until *plays* are delivered; (seconds, delivered)."""
    settings = DeliverySettings(poll_s=0.05, timeout_s=30.0)
    drainer = Drainer(outbox, provider, settings)
    stop = asyncio.Event()
    began = time.perf_counter()
    task = asyncio.create_task(drainer.run(stop))
    delivered = 0
    while delivered < plays and not task.done():
        await asyncio.sleep(0.2)
        rows = await outbox.fetch_all(
            "SELECT count(*) FROM deliveries WHERE provider = ? AND state = 'delivered'",
            (provider.name,),
        )
        delivered = int(rows[0][0])
    elapsed = time.perf_counter() - began
    stop.set()
    await task
    return elapsed, delivered


async def _bench(plays: int, only: str | None) -> bool:
    catalog = Catalog()
    for n in range(plays):
        catalog.add_movie(f"Bench Movie {n}", 2000, imdb=f"tt{7_000_000 + n}", tmdb=n + 1)
    names = [only] if only else ["trakt", "simkl"]
    settings = Settings()
    async with (
        FakeTrakt(catalog=catalog) as trakt,
        FakeSimkl(catalog=catalog) as simkl,
        aiohttp.ClientSession() as session,
    ):
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp)
            outbox = await Outbox.open(data / "outbox.sqlite3", providers=names)
            try:
                events = [
                    PlayEvent(
                        Source.PLEX,
                        Action.WATCHED,
                        "owner",
                        _movie(n),
                        T0 + timedelta(minutes=n),
                        progress_pct=100.0,
                    )
                    for n in range(plays)
                ]
                for start in range(0, plays, 1000):
                    await outbox.enqueue_many(events[start : start + 1000])
                providers: list[Provider] = []
                if "trakt" in names:
                    tokens = TokenStore(data, "trakt")
                    tokens.save(trakt.issue_token())
                    providers.append(
                        TraktProvider(
                            session=session,
                            limiter=limiter_for(settings, "trakt"),
                            tokens=tokens,
                            client_id=trakt.client_id,
                            client_secret=trakt.client_secret,
                            api_url=trakt.url,
                        )
                    )
                if "simkl" in names:
                    tokens = TokenStore(data, "simkl")
                    tokens.save({"access_token": simkl.issue_token()})
                    providers.append(
                        SimklProvider(
                            session=session,
                            limiter=limiter_for(settings, "simkl"),
                            tokens=tokens,
                            client_id=simkl.client_id,
                            api_url=simkl.url,
                        )
                    )
                results = await asyncio.gather(*(_drain(outbox, p, plays) for p in providers))
            finally:
                await outbox.close()
        ok = True
        print(f"{plays:,} plays, each target drained by its own drainer at the same time")
        for provider, (elapsed, delivered) in zip(providers, results, strict=True):
            ceiling = provider.max_batch * 1.0  # plays/s: one full batch per POST, 1 POST/s
            rate = delivered / elapsed
            ratio = rate / ceiling
            if provider.name == "trakt":
                recorded = len(trakt.history)
                limited = trakt.rate_limited
            else:
                recorded = len(simkl.history)
                limited = len(simkl.rate_limited)
                if limited:
                    print("   ", simkl.rate_limited[:3])
            passed = ratio >= TARGET_RATIO and recorded == plays and not limited
            ok &= passed
            print(
                f"  {provider.name:<6} {delivered:,} delivered in {elapsed:.1f} s ="
                f" {rate:.1f} plays/s; ceiling {ceiling:.0f} plays/s ({provider.max_batch}"
                f" per POST at 1 POST/s) -> {ratio:.0%}; recorded {recorded:,},"
                f" rate-limited {limited}  {'PASS' if passed else 'FAIL'}"
            )
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plays", type=int, default=10_000)
    parser.add_argument("--only", choices=["trakt", "simkl"])
    args = parser.parse_args()
    configure_logging("WARNING")
    return 0 if asyncio.run(_bench(args.plays, args.only)) else 1


if __name__ == "__main__":
    sys.exit(main())
