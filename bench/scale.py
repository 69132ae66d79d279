"""Benchmark: scale-out on PostgreSQL (issue 19).

1. **Intake**: N real Plex multipart webhooks at concurrency C, sent to real ``crosswatchd
   serve`` processes: one on SQLite files (the reference), one on PostgreSQL, and three
   replicas on one PostgreSQL database (the webhooks spread round-robin over them). Prints
   accepted/s, p50 and p99 latency, and the ratio PostgreSQL-1-replica / SQLite (target:
   >= 0.5 on a 2-core machine). Trakt is configured but not authorized, so no drainer works
   and the figures are intake only.
2. **Relay drain**: P profiles (config ``[[profiles]]``, one Trakt account each, their tokens
   in one token directory the replicas share) with a few plays each, stored in the database
   first; then 1, and in a second run 3, replicas deliver them to the strict fake Trakt in
   this process (1 POST/s per account; it answers 429 to anything faster). Prints wall time
   from the replicas' start to the last play recorded, plays/s, POSTs/s, the 429 count and
   whether every play is recorded exactly once.

PostgreSQL: a throwaway cluster (``tests/pgcluster.py``: Debian's binaries, as the
``postgres`` user when run as root), a fresh database per run; or ``--database-url``, an empty
database that is then filled and used by every run (so the 3-replica intake and drain runs
find the earlier runs' rows, and the 3-replica drain is skipped).

Run: python bench/scale.py [-n 3000] [-c 32] [--profiles 5000] [--plays 3] [--quick]
     [--database-url postgresql://…]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crosswatchd.cli._base import household_of
from crosswatchd.config import load_settings
from crosswatchd.logs import configure_logging
from crosswatchd.models import Action, Ids, Item, MediaKind, PlayEvent, Source
from crosswatchd.storage import Storage
from tests.fakes.catalog import Catalog
from tests.fakes.trakt import FakeTrakt
from tests.pgcluster import PgCluster, find_bin_dir

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "plex"
SECRET = "bench-secret"
THUMB = b"\xff\xd8\xff\xe0" + os.urandom(12_000)
TARGET_RATIO = 0.5
T0 = datetime(2026, 1, 10, 20, 0, tzinfo=UTC)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- intake ---------------------------------------------------------------------------------


def _payloads(n: int) -> list[bytes]:
    """n webhook bodies by the server owner: one in four a completed play, all distinct."""
    movie = orjson.loads(
        (FIXTURES / "movie_media.scrobble_plex-agent_big-trouble-in-little-china.json").read_bytes()
    )
    events = ["media.play", "media.pause", "media.resume", "media.scrobble"]
    out = []
    for i in range(n):
        body = copy.deepcopy(movie)
        body["event"] = events[i % 4]
        body["user"] = True
        body["Account"] = {"id": 1, "title": "owner"}
        body["Metadata"]["ratingKey"] = str(1_000_000 + i)
        body["Metadata"]["Guid"] = [{"id": f"imdb://tt{20_000_000 + i}"}]
        out.append(orjson.dumps(body))
    return out


def _config(
    workdir: Path,
    port: int,
    database_url: str,
    *,
    trakt: FakeTrakt | None = None,
    lease_s: float = 120.0,
    extra: str = "",
) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    trakt_section = (
        f'client_id = "{trakt.client_id}"\nclient_secret = "{trakt.client_secret}"\n'
        f'api_url = "{trakt.url}"'
        if trakt is not None
        else 'client_id = "bench"\nclient_secret = "bench"\napi_url = "http://127.0.0.1:9"'
    )
    config = workdir / "bench.toml"
    config.write_text(
        f"""data_dir = "{workdir / "data"}"
database_url = "{database_url}"
log_level = "warning"
[http]
port = {port}
[webhook]
secret = "{SECRET}"
[resolver]
use_search = false
[trakt]
{trakt_section}
[delivery]
poll_s = 0.5
lease_s = {lease_s}
{extra}"""
    )
    return config


def _serve(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "crosswatchd.cli", "--config", str(config), "serve"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _tail(log: Path) -> str:
    return log.read_text()[-2000:]


async def _wait_up(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(600):
            if proc.poll() is not None:
                raise SystemExit(f"serve on {port} exited:\n{_tail(log)}")
            try:
                async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise SystemExit(f"serve on {port} did not start")


@contextlib.asynccontextmanager
async def _replicas(configs: list[tuple[Path, int]], logdir: Path) -> AsyncIterator[None]:
    """``serve`` with each config (all at once), up when this enters; stopped on exit."""
    procs = [_serve(config, logdir / f"serve-{port}.log") for config, port in configs]
    try:
        for proc, (_, port) in zip(procs, configs, strict=True):
            await _wait_up(port, proc, logdir / f"serve-{port}.log")
        yield
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


async def _load(ports: list[int], bodies: list[bytes], concurrency: int) -> dict[str, float]:
    """POST *bodies* round-robin over *ports*; accepted/s, latency percentiles."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    queue = iter(enumerate(bodies))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def worker() -> None:
            for i, body in queue:
                url = f"http://127.0.0.1:{ports[i % len(ports)]}/webhook/plex?token={SECRET}"
                form = aiohttp.FormData()
                form.add_field("payload", body, content_type="application/json")
                form.add_field("thumb", THUMB, filename="thumb.jpg", content_type="image/jpeg")
                t0 = time.perf_counter()
                async with http.post(url, data=form) as resp:
                    await resp.read()
                    statuses[resp.status] = statuses.get(resp.status, 0) + 1
                latencies.append(time.perf_counter() - t0)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    latencies.sort()
    accepted = statuses.get(202, 0)
    return {
        "accepted": accepted,
        "other": sum(v for k, v in statuses.items() if k != 202),
        "per_s": accepted / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[max(0, int(len(latencies) * 0.99) - 1)] * 1000,
    }


async def _intake(label: str, workdir: Path, url: str, replicas: int, n: int, c: int) -> float:
    configs = []
    for r in range(replicas):
        port = _free_port()
        configs.append((_config(workdir / f"r{r}", port, url), port))
    async with _replicas(configs, workdir):
        ports = [port for _, port in configs]
        await _load(ports, _payloads(200), c)  # warm-up (connections, pools, caches)
        result = await _load(ports, _payloads(n)[::-1], c)
    print(
        f"  {label:<22} {result['per_s']:>9.0f} {result['p50_ms']:>8.1f} {result['p99_ms']:>8.1f}"
        f" {int(result['other']):>8}"
    )
    return result["per_s"]


# -- relay drain ----------------------------------------------------------------------------


def _movie(n: int) -> Item:
    return Item(
        MediaKind.MOVIE,
        f"Scale Movie {n}",
        2000,
        ids=Ids(imdb=f"tt{8_100_000 + n}", tmdb=str(810_000 + n)),
    )


async def _drain(
    workdir: Path, url: str, replicas: int, profiles: int, plays: int, lease_s: float
) -> dict[str, float]:
    catalog = Catalog()
    for n in range(plays):
        catalog.add_movie(f"Scale Movie {n}", 2000, imdb=f"tt{8_100_000 + n}", tmdb=810_000 + n)
    names = [f"u{k:05d}" for k in range(profiles)]
    extra = "".join(f'[[profiles]]\nname = "{n}"\nplex_accounts = ["{n}"]\n' for n in names)
    async with FakeTrakt(catalog=catalog) as trakt:
        configs = []
        for r in range(replicas):
            port = _free_port()
            config = _config(
                workdir / f"r{r}", port, url, trakt=trakt, lease_s=lease_s, extra=extra
            )
            (workdir / f"r{r}" / "data").mkdir(mode=0o700)
            configs.append((config, port))
        # The plays, stored before any replica runs: the backlog of a relay (or of an outage).
        settings = load_settings(configs[0][0])
        storage = await Storage.open(settings)
        try:
            for name in names:  # tokens are rows of the database, for every replica
                await storage.tokens("trakt", name).save(trakt.issue_token(user=name))
            outbox = await storage.outbox(await household_of(settings))
            events = [
                PlayEvent(
                    Source.PLEX,
                    Action.WATCHED,
                    name,
                    _movie(m),
                    T0 + timedelta(hours=3 * m),
                    progress_pct=100.0,
                    profile=name,
                )
                for name in names
                for m in range(plays)
            ]
            for start in range(0, len(events), 2000):
                await outbox.enqueue_many(events[start : start + 2000])
            await outbox.close()
        finally:
            await storage.close()
        total = len(events)

        def recorded() -> int:
            return sum(len(user.history) for user in trakt.users.values())

        posts_before = sum(1 for m, p, _ in trakt.requests if m == "POST")
        began = time.perf_counter()
        async with _replicas(configs, workdir):
            while True:
                if recorded() >= total or time.perf_counter() - began > 1800:
                    break
                await asyncio.sleep(0.2)
            elapsed = time.perf_counter() - began
            await asyncio.sleep(1.0)  # a late duplicate would show by now
            final = recorded()
        posts = sum(1 for m, p, _ in trakt.requests if m == "POST") - posts_before
        once = all(
            sorted(h["movie"]["ids"]["imdb"] for h in trakt.user(n).history)
            == [f"tt{8_100_000 + m}" for m in range(plays)]
            for n in names
        )
        lost = sum(
            log.read_text().count('"drain.lease_lost"')
            for log in workdir.glob("serve-*.log")  # noqa: ASYNC240
        )
        return {
            "lost": lost,
            "plays": total,
            "recorded": final,
            "seconds": elapsed,
            "posts": posts,
            "limited": trakt.rate_limited,
            "invalid_grants": trakt.invalid_grants,
            "once": once,
        }


# -- main -----------------------------------------------------------------------------------


@contextlib.contextmanager
def _postgres(given: str) -> Iterator[tuple[PgCluster | None, str]]:
    if given:
        yield None, given
        return
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise SystemExit("PostgreSQL is not installed (apt install postgresql), or --database-url")
    with PgCluster.start(bin_dir) as cluster:
        yield cluster, ""


def _database(cluster: PgCluster | None, given: str, name: str) -> str:
    return given if cluster is None else cluster.create_database(name)


async def _bench(args: argparse.Namespace) -> bool:
    ok = True
    with (
        _postgres(args.database_url) as (cluster, given),
        tempfile.TemporaryDirectory(prefix="crosswatchd-scale-") as tmp,
    ):
        work = Path(tmp)
        os.chmod(work, 0o755)
        if args.drain_only:
            return await _drains(args, cluster, given, work)
        print(
            f"intake: {args.n} Plex multipart webhooks at concurrency {args.c} per run"
            f" ({os.cpu_count()} cores; client in this process)"
        )
        print(f"  {'':<22} {'accept/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-202':>8}")
        sqlite = await _intake("SQLite, 1 process", work / "i-sqlite", "", 1, args.n, args.c)
        pg1_url = _database(cluster, given, "intake1")
        pg1 = await _intake("PostgreSQL, 1 replica", work / "i-pg1", pg1_url, 1, args.n, args.c)
        pg3_url = _database(cluster, given, "intake3") if cluster else given
        pg3 = await _intake("PostgreSQL, 3 replicas", work / "i-pg3", pg3_url, 3, args.n, args.c)
        ratio = pg1 / sqlite
        passed = ratio >= TARGET_RATIO
        ok &= passed
        print(
            f"  PostgreSQL 1 replica / SQLite = {ratio:.2f} (target >= {TARGET_RATIO})"
            f"  {'PASS' if passed else 'FAIL'};  3 replicas / 1 replica = {pg3 / pg1:.2f}"
        )
        ok &= await _drains(args, cluster, given, work)
    return ok


async def _drains(
    args: argparse.Namespace, cluster: PgCluster | None, given: str, work: Path
) -> bool:
    ok = True
    print(
        f"relay drain: {args.profiles:,} profiles x {args.plays} plays"
        f" = {args.profiles * args.plays:,} plays, one Trakt account each (fake, 1 POST/s"
        f" per account), lease_s {args.lease_s:g}"
    )
    for replicas in [int(r) for r in args.replicas.split(",")]:
        url = _database(cluster, given, f"drain{replicas}")
        if cluster is None and replicas == 3:
            print("  (3 replicas skipped: --database-url gives one database, already used)")
            break
        got = await _drain(
            work / f"d{replicas}", url, replicas, args.profiles, args.plays, args.lease_s
        )
        passed = (
            got["recorded"] == got["plays"]
            and got["once"]
            and got["limited"] == 0
            and got["invalid_grants"] == 0
        )
        ok &= bool(passed)
        print(
            f"  {replicas} replica(s): {int(got['recorded']):,}/{int(got['plays']):,} plays"
            f" recorded in {got['seconds']:.1f} s = {got['recorded'] / got['seconds']:.0f}"
            f" plays/s, {int(got['posts']):,} POSTs = {got['posts'] / got['seconds']:.0f}"
            f" requests/s; 429: {int(got['limited'])}, invalid_grant:"
            f" {int(got['invalid_grants'])}, each play once: {got['once']}"
            f"  {'PASS' if passed else 'FAIL'}; drainers stopped by a lost lease:"
            f" {int(got['lost'])}"
        )
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=3000, help="webhooks per intake run")
    parser.add_argument("-c", type=int, default=32, help="concurrent clients")
    parser.add_argument("--profiles", type=int, default=5000, help="relay drain: profiles")
    parser.add_argument("--plays", type=int, default=3, help="relay drain: plays per profile")
    parser.add_argument("--lease-s", type=float, default=10.0, help="delivery.lease_s")
    parser.add_argument("--database-url", default="", help="an empty PostgreSQL database")
    parser.add_argument("--drain-only", action="store_true", help="skip the intake runs")
    parser.add_argument("--replicas", default="1,3", help="relay drain: replica counts")
    parser.add_argument("--quick", action="store_true", help="-n 400, --profiles 200")
    args = parser.parse_args()
    if args.quick:
        args.n, args.profiles = 400, 200
    configure_logging("WARNING")
    return 0 if asyncio.run(_bench(args)) else 1


if __name__ == "__main__":
    sys.exit(main())
