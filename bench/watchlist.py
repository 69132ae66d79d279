"""Benchmark of a watchlist pass over lists of 5,000 items per side with 1 % changed.

The fakes of Plex Discover, Trakt and SIMKL run in a child process (so their memory and CPU
are not the pass's), seeded with the same 5,000 films on Plex's watchlist, Trakt's watchlist
and SIMKL's Plan to Watch. The pass runs here with the daemon's real parts (outbox, state
file, providers, Discover client), in mode two-way (every side read and planned). Figures:

    cold      the first pass: no stored state, no cached ids (5,000 metadata calls)
    no-op     a pass with nothing new (target: one GET per target + the Plex pages)
    1 %       each side changed by 1 % (25 additions, 25 removals on each of the three):
              time, requests per service, changes queued (expected: every addition and
              removal reaches the two other sides, 300 changes), peak memory of the pass
              (tracemalloc) and the process's peak RSS. Its Plex requests are the pages, one
              metadata call per new Plex item, and for each target addition one ``matches``
              call plus one metadata call to check the candidate's ids
    1 %, default limits   the same with the shipped rate limits (Discover 10 GET/s, SIMKL
              10 GET/s, Trakt 1000 GET / 5 min): what a person waits

Reference, measured in the same run: the bare reads of the three whole lists (every page,
JSON decoded, plain aiohttp; what a client without activity checks would do every pass). The
no-op pass's time as a ratio of it shows what identity, planning, the outbox and the state
cost on top of reading; the 1 % pass's ratio also includes its extra Plex lookups.

Run: ``.venv/bin/python bench/watchlist.py`` (about half a minute). Exits 1 when a pass
queues other changes than expected or the no-op pass makes more requests than allowed.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing as mp
import resource
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from crosswatchd.app import open_outbox, services
from crosswatchd.config import Settings
from crosswatchd.logs import configure_logging
from crosswatchd.profiles import Household
from crosswatchd.tokens import TokenStore
from crosswatchd.watchlist.passes import PassResult, WatchlistSync
from crosswatchd.watchlist.state import WatchlistState

ITEMS = 5_000
CHANGED = ITEMS // 100  # per side: half added, half removed
CID, SECRET, PLEX_TOKEN = "cid", "csecret", "plex-account-token"
#: CPU seconds of each pass, in order.
_CPU: list[float] = []


def _imdb(n: int) -> str:
    return f"tt{5_000_000 + n}"


# -- the child: the fakes ---------------------------------------------------------------------


def _serve(conn: Connection) -> None:
    """Run the three fakes, seeded; answer commands from the parent until ``stop``."""
    from tests.fakes.catalog import Catalog
    from tests.fakes.discover import FakeDiscover
    from tests.fakes.simkl import FakeSimkl
    from tests.fakes.trakt import FakeTrakt

    logging.disable(logging.CRITICAL)

    async def main() -> None:
        catalog = Catalog()
        for n in range(ITEMS * 2):
            catalog.add_movie(f"Film {n}", 1950 + n % 70, imdb=_imdb(n), tmdb=700_000 + n)
        clock = [time.time()]
        async with (
            FakeDiscover(catalog=catalog, token=PLEX_TOKEN, clock=lambda: clock[0]) as plex,
            FakeTrakt(
                client_id=CID,
                client_secret=SECRET,
                catalog=catalog,
                post_tolerance_s=1.0,
                clock=lambda: clock[0],
            ) as trakt,
            FakeSimkl(
                client_id=CID,
                catalog=catalog,
                get_per_s=10_000,
                post_per_s=10_000,
                now=lambda: datetime.fromtimestamp(clock[0], UTC),
            ) as simkl,
        ):
            trakt.list_max_limit = 250
            # The fake's key of a catalogue film (FakeDiscover._from_catalog).
            keys = {
                _imdb(n): f"{0x5D7768000000000000000000 + int(m['ids']['trakt']):024x}"
                for n, m in enumerate(catalog.movies)
            }
            for n in range(ITEMS):
                plex.add_to_watchlist(keys[_imdb(n)], at=1_600_000_000 + n)
                trakt.watchlist_add("movie", {"imdb": _imdb(n)})
                simkl.put_in_list("movie", {"imdb": _imdb(n)}, "plantowatch")
            conn.send(
                {
                    "urls": {"plex": plex.url, "trakt": trakt.url, "simkl": simkl.url},
                    "tokens": {"trakt": trakt.issue_token(), "simkl": simkl.issue_token()},
                }
            )
            fresh = iter(range(ITEMS, ITEMS * 2))
            gone = iter(range(ITEMS))
            while True:
                command = await asyncio.to_thread(conn.recv)
                if command == "stop":
                    return
                if command == "counts":
                    conn.send((len(plex.requests), len(trakt.requests), len(simkl.requests)))
                elif command == "change":
                    clock[0] += 5  # later than the last read, as a person's change is
                    half = CHANGED // 2
                    for _ in range(half):  # Plex
                        plex.add_to_watchlist(keys[_imdb(next(fresh))])
                        plex.remove_from_watchlist(keys[_imdb(next(gone))])
                    for _ in range(half):  # Trakt
                        trakt.watchlist_add("movie", {"imdb": _imdb(next(fresh))})
                        trakt.watchlist_remove("movie", {"imdb": _imdb(next(gone))})
                    for _ in range(half):  # SIMKL
                        simkl.put_in_list("movie", {"imdb": _imdb(next(fresh))}, "plantowatch")
                        simkl.leave_lists("movie", {"imdb": _imdb(next(gone))})
                    conn.send("changed")

    asyncio.run(main())


# -- the parent: the passes -------------------------------------------------------------------


def _settings(data_dir: Path, urls: dict[str, str], *, default_limits: bool) -> Settings:
    fast: dict[str, Any] = {} if default_limits else {"discover_get_per_s": 10_000.0}
    return Settings(
        data_dir=data_dir,
        plex={"token": PLEX_TOKEN, "discover_url": urls["plex"], **fast},
        trakt={
            "client_id": CID,
            "client_secret": SECRET,
            "api_url": urls["trakt"],
            **({} if default_limits else {"get_limit": 1_000_000}),
        },
        simkl={
            "client_id": CID,
            "api_url": urls["simkl"],
            **({} if default_limits else {"get_per_s": 10_000.0}),
        },
        watchlist={"mode": "two-way", "interval_s": 0},
        resolver={"use_search": False},
    )


async def _pass(settings: Settings) -> tuple[PassResult, float]:
    """One pass; returns its result and its wall time (the CPU time goes to ``_CPU``)."""
    outbox = await open_outbox(settings)
    state = await WatchlistState.open(settings.data_dir)
    try:
        async with services(settings) as svc:
            sync = WatchlistSync(
                settings=settings,
                outbox=outbox,
                state=state,
                session=svc.session,
                providers=svc.providers,
            )
            (profile,) = Household.from_settings(settings).profiles
            started, cpu = time.perf_counter(), time.process_time()
            result = await sync.run(profile)
            _CPU.append(time.process_time() - cpu)
            return result, time.perf_counter() - started
    finally:
        await state.close()
        await outbox.close()


async def _bare_reads(urls: dict[str, str], tokens: dict[str, Any]) -> float:
    """The reference: every page of the three lists, JSON decoded, nothing else."""
    started = time.perf_counter()
    async with aiohttp.ClientSession() as http:
        plex_headers = {"X-Plex-Token": PLEX_TOKEN, "Accept": "application/json"}
        for start in range(0, ITEMS, 100):
            query = {"X-Plex-Container-Start": str(start), "X-Plex-Container-Size": "100"}
            async with http.get(
                urls["plex"] + "/library/sections/watchlist/all", params=query, headers=plex_headers
            ) as r:
                await r.json()
        trakt_headers = {
            "trakt-api-key": CID,
            "trakt-api-version": "2",
            "Authorization": f"Bearer {tokens['trakt']['access_token']}",
        }
        for page in range(1, ITEMS // 250 + 2):
            async with http.get(
                urls["trakt"] + "/sync/watchlist/all",
                params={"page": str(page), "limit": "250"},
                headers=trakt_headers,
            ) as r:
                await r.json()
        simkl_query = {"client_id": CID, "app-name": "bench", "app-version": "1"}
        async with http.get(
            urls["simkl"] + "/sync/all-items/movies/plantowatch",
            params=simkl_query,
            headers={"Authorization": f"Bearer {tokens['simkl']}"},
        ) as r:
            await r.json()
    return time.perf_counter() - started


def _requests(conn: Connection, before: tuple[int, int, int]) -> tuple[int, int, int]:
    conn.send("counts")
    now: tuple[int, int, int] = conn.recv()
    return (now[0] - before[0], now[1] - before[1], now[2] - before[2])


def _line(label: str, seconds: float, requests: tuple[int, int, int], extra: str = "") -> str:
    plex, trakt, simkl = requests
    cpu = f" (cpu {_CPU[-1]:5.2f} s)" if _CPU and label != "reference: bare reads" else " " * 15
    return (
        f"{label:<24} {seconds:7.2f} s{cpu}   requests plex {plex:5d}  trakt {trakt:3d}"
        f"  simkl {simkl:3d}{extra}"
    )


def _queued(result: PassResult) -> int:
    return sum(
        int(side.get("added", 0)) + int(side.get("removed", 0)) for side in result.sides.values()
    )


def main() -> int:
    configure_logging("error", json=False, stream=sys.stderr)
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_serve, args=(child,), daemon=True)
    proc.start()
    setup = parent.recv()
    urls: dict[str, str] = setup["urls"]
    tokens: dict[str, Any] = setup["tokens"]
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        fast = _settings(data, urls, default_limits=False)
        TokenStore(data, "trakt").save(tokens["trakt"])
        TokenStore(data, "simkl").save({"access_token": tokens["simkl"]})
        print(f"lists of {ITEMS} films on each side; a change is {CHANGED} films per side")

        counts = _requests(parent, (0, 0, 0))
        result, seconds = asyncio.run(_pass(fast))
        print(_line("cold (no state, no ids)", seconds, _requests(parent, counts)))
        ok &= result.ok and _queued(result) == 0

        counts = _requests(parent, (0, 0, 0))
        result, seconds = asyncio.run(_pass(fast))
        noop = _requests(parent, counts)
        ok &= result.ok and _queued(result) == 0 and noop == (ITEMS // 100, 1, 1)
        reference = asyncio.run(_bare_reads(urls, tokens))
        print(_line("no-op", seconds, noop, f"   {seconds / reference:.2f}x the bare reads"))
        print(_line("reference: bare reads", reference, (ITEMS // 100, ITEMS // 250 + 1, 1)))

        parent.send("change")
        parent.recv()
        counts = _requests(parent, (0, 0, 0))
        result, seconds = asyncio.run(_pass(fast))
        queued = _queued(result)
        print(
            _line(
                "1 % changed",
                seconds,
                _requests(parent, counts),
                f"   queued {queued}   {seconds / reference:.2f}x the bare reads",
            )
        )
        ok &= result.ok and queued == 6 * CHANGED

        parent.send("change")
        parent.recv()
        tracemalloc.start()
        result, seconds = asyncio.run(_pass(fast))
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"{'1 % changed, memory':<24} peak {peak / 2**20:.1f} MiB allocated by the pass"
            f" (tracemalloc); process peak RSS {rss_mb:.0f} MB"
        )
        ok &= result.ok

        parent.send("change")
        parent.recv()
        counts = _requests(parent, (0, 0, 0))
        result, seconds = asyncio.run(_pass(_settings(data, urls, default_limits=True)))
        print(_line("1 %, default limits", seconds, _requests(parent, counts)))
        ok &= result.ok
    parent.send("stop")
    proc.join(timeout=10)
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
