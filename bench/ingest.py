"""Benchmark: durable webhook intake vs. a bare aiohttp handler.

Sends N real Plex multipart webhooks (payload JSON + a thumb JPEG part) at concurrency C to

1. a bare aiohttp handler that parses the multipart and replies 202 (the reference), and
2. a real ``crosswatchd serve`` (parse, filter, commit to SQLite WAL with synchronous=FULL,
   fan out a delivery, reply 202),

each in its own process, and prints accepted/s and p50/p99 latency for both, with the ratios.
Targets (issue #2): throughput >= 80 % of the bare handler's, p99 <= 2x the bare handler's.

Run: python bench/ingest.py [-n 4000] [-c 32] [--rounds 2] [--synchronous normal|full]
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "plex"
SECRET = "bench-secret"
THUMB = b"\xff\xd8\xff\xe0" + os.urandom(12_000)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _payloads(n: int) -> list[bytes]:
    """n webhook bodies: mostly live events, one in four a completed play, all distinct items."""
    movie = orjson.loads(
        (FIXTURES / "movie_media.scrobble_plex-agent_big-trouble-in-little-china.json").read_bytes()
    )
    episode = orjson.loads(
        (FIXTURES / "episode_media.pause_plex-agent_bobs-burgers_s09e15.json").read_bytes()
    )
    events = ["media.play", "media.pause", "media.resume", "media.scrobble"]
    out = []
    for i in range(n):
        body = copy.deepcopy(movie if i % 2 else episode)
        body["event"] = events[i % 4]
        body["user"] = True
        body["Metadata"]["ratingKey"] = str(1_000_000 + i)
        body["Metadata"]["Guid"] = [{"id": f"imdb://tt{20_000_000 + i}"}]
        out.append(orjson.dumps(body))
    return out


async def _wait_up(port: int, proc: subprocess.Popen[bytes]) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(300):
            if proc.poll() is not None:
                raise SystemExit(f"server on {port} exited with {proc.returncode}")
            try:
                async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise SystemExit(f"server on {port} did not start")


async def _load(port: int, bodies: list[bytes], concurrency: int) -> dict[str, float]:
    url = f"http://127.0.0.1:{port}/webhook/plex?token={SECRET}"
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    queue = iter(bodies)
    connector = aiohttp.TCPConnector(limit=concurrency)

    async with aiohttp.ClientSession(connector=connector) as http:

        async def worker() -> None:
            for body in queue:
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
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
    }


def _start_bare(port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "bare_handler.py"), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _start_daemon(port: int, workdir: Path, synchronous: str) -> subprocess.Popen[bytes]:
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "bench.toml"
    config.write_text(
        f"""
data_dir = "{workdir / "data"}"
log_level = "warning"
[http]
port = {port}
[webhook]
secret = "{SECRET}"
[trakt]
client_id = "bench"
client_secret = "bench"
api_url = "http://127.0.0.1:9"
[delivery]
sqlite_synchronous = "{synchronous}"
"""
    )
    # Trakt is configured (so every play fans out into a delivery) but not authorized, so
    # the drainer stays idle and the figures are intake only.
    return subprocess.Popen(
        [sys.executable, "-m", "crosswatchd.cli", "--config", str(config), "serve"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def _measure(
    kind: str, n: int, concurrency: int, workdir: Path, synchronous: str = "normal"
) -> dict[str, float]:
    port = _free_port()
    proc = _start_bare(port) if kind == "bare" else _start_daemon(port, workdir, synchronous)
    try:
        await _wait_up(port, proc)
        await _load(port, _payloads(200), concurrency)  # warm-up
        return await _load(port, _payloads(n), concurrency)
    finally:
        proc.terminate()
        proc.wait(timeout=20)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=4000, help="webhooks per run")
    parser.add_argument("-c", type=int, default=32, help="concurrent clients")
    parser.add_argument("--rounds", type=int, default=2, help="alternating runs of each")
    parser.add_argument(
        "--synchronous",
        choices=["normal", "full"],
        default="normal",
        help="the daemon's delivery.sqlite_synchronous",
    )
    args = parser.parse_args()
    bare_runs, daemon_runs = [], []
    with tempfile.TemporaryDirectory(prefix="crosswatchd-bench-") as tmp:
        for r in range(args.rounds):
            bare_runs.append(await _measure("bare", args.n, args.c, Path(tmp)))
            daemon_runs.append(
                await _measure("daemon", args.n, args.c, Path(tmp) / f"r{r}", args.synchronous)
            )
    bare = max(bare_runs, key=lambda m: m["per_s"])
    daemon = max(daemon_runs, key=lambda m: m["per_s"])
    print(
        f"ingest: {args.n} Plex multipart webhooks, concurrency {args.c}, best of"
        f" {args.rounds}, sqlite synchronous={args.synchronous}"
    )
    print(f"{'':10} {'accepted/s':>11} {'p50 ms':>8} {'p99 ms':>8} {'non-202':>8}")
    for name, m in (("bare", bare), ("daemon", daemon)):
        print(
            f"{name:10} {m['per_s']:>11.0f} {m['p50_ms']:>8.2f} {m['p99_ms']:>8.2f}"
            f" {int(m['other']):>8}"
        )
    throughput_ratio = daemon["per_s"] / bare["per_s"]
    p99_ratio = daemon["p99_ms"] / bare["p99_ms"]
    ok_tp = throughput_ratio >= 0.80
    ok_p99 = p99_ratio <= 2.0
    print(
        f"throughput ratio daemon/bare: {throughput_ratio:.2f} (target >= 0.80) "
        f"{'PASS' if ok_tp else 'FAIL'}"
    )
    print(
        f"p99 ratio daemon/bare:        {p99_ratio:.2f} (target <= 2.00) "
        f"{'PASS' if ok_p99 else 'FAIL'}"
    )
    return 0 if ok_tp and ok_p99 and not daemon["other"] else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
