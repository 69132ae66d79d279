"""Benchmark: durable webhook intake vs. a bare aiohttp handler.

Sends N real Plex multipart webhooks (payload JSON + a thumb JPEG part) at concurrency C to

1. a bare aiohttp handler that parses the multipart and replies 202 (the reference), and
2. a real ``crosswatchd serve`` (parse, filter, commit to SQLite WAL with synchronous=FULL,
   fan out a delivery, reply 202),

each in its own process, and prints accepted/s and p50/p99 latency for both, with the ratios.
Targets (issue #2): throughput >= 80 % of the bare handler's, p99 <= 2x the bare handler's.

With ``--profiles 1 5`` each round also measures a daemon configured with five household
profiles (webhooks spread over five Plex accounts), to compare with the implicit one.

Run: python bench/ingest.py [-n 4000] [-c 32] [--rounds 5] [--synchronous normal|full]
     [--profiles 1 5]
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import os
import shutil
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


def _account(i: int, profiles: int) -> dict[str, object]:
    """The Plex ``Account`` of webhook *i*: the owner's own (one implicit profile), or one of
    *profiles* household members in turn."""
    if profiles <= 1:
        return {"id": 1, "title": "owner"}
    return {"id": 100 + i % profiles, "title": f"member{i % profiles}"}


def _payloads(n: int, profiles: int = 1) -> list[bytes]:
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
        body["Account"] = _account(i // 4, profiles)
        body["Metadata"]["ratingKey"] = str(1_000_000 + i)
        body["Metadata"]["Guid"] = [{"id": f"imdb://tt{20_000_000 + i}"}]
        out.append(orjson.dumps(body))
    return out


_BOUNDARY = "cwbenchboundary"

# wrk script: POST multipart webhooks built from templates in which "{{N}}" becomes a counter,
# so every request names a distinct item (ratingKey, imdb id), as in the Python client.
_WRK_LUA = r"""
local templates = {}
local counter = 0
local threads = {}
non202 = 0

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local data = io.open(args[1], "rb"):read("*all")
  local pos = 1
  for len in io.lines(args[2]) do
    local n = tonumber(len)
    table.insert(templates, data:sub(pos, pos + n - 1))
    pos = pos + n
  end
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "multipart/form-data; boundary=" .. args[3]
end

function request()
  counter = counter + 1
  local body = templates[(counter % #templates) + 1]:gsub("{{N}}", tostring(counter))
  return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
  if status ~= 202 then
    non202 = non202 + 1
  end
end

function done(summary, latency, requests)
  local bad = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout
  for _, t in ipairs(threads) do
    bad = bad + t:get("non202")
  end
  io.write(string.format("CWBENCH %d %d %d %d %d\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), bad))
end
"""


def _wrk_templates(profiles: int = 1) -> list[bytes]:
    """Multipart bodies (payload JSON + a thumb part) with ``{{N}}`` where the item varies."""
    movie = orjson.loads(
        (FIXTURES / "movie_media.scrobble_plex-agent_big-trouble-in-little-china.json").read_bytes()
    )
    episode = orjson.loads(
        (FIXTURES / "episode_media.pause_plex-agent_bobs-burgers_s09e15.json").read_bytes()
    )
    thumb = bytes(b for b in THUMB if b not in b"{-\r\n") or b"jpeg"
    out = []
    cycle = ["media.play", "media.pause", "media.resume", "media.scrobble"] * 2
    for i, event in enumerate(cycle * max(1, profiles)):
        body = copy.deepcopy(movie if i % 2 else episode)
        body["event"] = event
        body["user"] = True
        body["Account"] = _account(i // len(cycle), profiles)
        body["Metadata"]["ratingKey"] = "9{{N}}"
        body["Metadata"]["Guid"] = [{"id": "imdb://tt1000{{N}}"}]
        out.append(
            b"".join(
                [
                    f"--{_BOUNDARY}\r\n".encode(),
                    b'Content-Disposition: form-data; name="payload"\r\n',
                    b"Content-Type: application/json\r\n\r\n",
                    orjson.dumps(body),
                    f"\r\n--{_BOUNDARY}\r\n".encode(),
                    b'Content-Disposition: form-data; name="thumb"; filename="thumb.jpg"\r\n',
                    b"Content-Type: image/jpeg\r\n\r\n",
                    thumb,
                    f"\r\n--{_BOUNDARY}--\r\n".encode(),
                ]
            )
        )
    return out


def _wrk_load(
    port: int, concurrency: int, seconds: float, workdir: Path, profiles: int = 1
) -> dict[str, float]:
    """One wrk run (a single C thread, so the load generator leaves the servers the CPU)."""
    workdir.mkdir(parents=True, exist_ok=True)
    templates = _wrk_templates(profiles)
    (workdir / "bodies.bin").write_bytes(b"".join(templates))
    (workdir / "lengths.txt").write_text("".join(f"{len(t)}\n" for t in templates))
    (workdir / "bench.lua").write_text(_WRK_LUA)
    url = f"http://127.0.0.1:{port}/webhook/plex?token={SECRET}"
    command = [
        "wrk", "-t1", f"-c{concurrency}", f"-d{seconds:g}s", "--timeout", "10s",
        "-s", str(workdir / "bench.lua"), url, "--",
        str(workdir / "bodies.bin"), str(workdir / "lengths.txt"), _BOUNDARY,
    ]  # fmt: skip
    out = subprocess.run(
        command, capture_output=True, text=True, check=True, timeout=seconds + 60
    ).stdout
    line = next(part for part in out.splitlines() if part.startswith("CWBENCH"))
    requests, duration_us, p50_us, p99_us, bad = (int(v) for v in line.split()[1:])
    return {
        "accepted": requests - bad,
        "other": bad,
        "per_s": (requests - bad) / (duration_us / 1e6),
        "p50_ms": p50_us / 1000,
        "p99_ms": p99_us / 1000,
    }


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


def _start_daemon(
    port: int, workdir: Path, synchronous: str, profiles: int = 1
) -> subprocess.Popen[bytes]:
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "bench.toml"
    members = (
        "".join(
            f'[[profiles]]\nname = "member{k}"\nplex_accounts = ["member{k}"]\n'
            for k in range(profiles)
        )
        if profiles > 1
        else ""
    )
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
[anime]
mapping_url = ""
{members}"""
    )
    # Trakt is configured (so every play fans out into a delivery) but not authorized, so
    # the drainer stays idle and the figures are intake only.
    return subprocess.Popen(
        [sys.executable, "-m", "crosswatchd.cli", "--config", str(config), "serve"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process *pid* so far (Linux ``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _measure(
    kind: str,
    n: int,
    concurrency: int,
    workdir: Path,
    synchronous: str = "normal",
    wrk_seconds: float | None = None,
    profiles: int = 1,
) -> dict[str, float]:
    port = _free_port()
    proc = (
        _start_bare(port) if kind == "bare" else _start_daemon(port, workdir, synchronous, profiles)
    )
    try:
        await _wait_up(port, proc)
        await _load(port, _payloads(200, profiles), concurrency)  # warm-up
        cpu_before = _cpu_s(proc.pid)
        if wrk_seconds:
            result = await asyncio.to_thread(
                _wrk_load, port, concurrency, wrk_seconds, workdir / f"wrk-{kind}", profiles
            )
        else:
            result = await _load(port, _payloads(n, profiles), concurrency)
        # CPU per webhook (all the server's threads): steadier than wall throughput on a
        # machine whose speed varies from one run to the next.
        result["cpu_ms"] = 1000 * (_cpu_s(proc.pid) - cpu_before) / max(1.0, result["accepted"])
        return result
    finally:
        proc.terminate()
        proc.wait(timeout=20)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=4000, help="webhooks per run")
    parser.add_argument("-c", type=int, default=32, help="concurrent clients")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of bare, then daemon")
    parser.add_argument(
        "--client",
        choices=["auto", "wrk", "python"],
        default="auto",
        help="load generator: wrk (C, leaves the servers the CPU; apt install wrk) or the"
        " Python aiohttp client (uses a core of its own); auto = wrk if installed",
    )
    parser.add_argument("--seconds", type=float, default=8.0, help="wrk run length")
    parser.add_argument(
        "--profiles",
        type=int,
        nargs="+",
        default=[1],
        help="household sizes to measure the daemon with, each every round (e.g. 1 5)",
    )
    parser.add_argument(
        "--synchronous",
        choices=["normal", "full"],
        default="normal",
        help="the daemon's delivery.sqlite_synchronous",
    )
    args = parser.parse_args()
    use_wrk = args.client == "wrk" or (args.client == "auto" and shutil.which("wrk"))
    if args.client == "wrk" and not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt install wrk)")
    wrk_seconds = args.seconds if use_wrk else None
    load = (
        f"wrk -t1 -c{args.c} for {args.seconds:g} s per run"
        if use_wrk
        else f"Python client, {args.n} webhooks at concurrency {args.c} per run"
    )
    print(
        f"ingest: Plex multipart webhooks, {load}; {args.rounds} rounds (bare, then daemon),"
        f" sqlite synchronous={args.synchronous}"
    )
    print(
        f"{'round':>5} {'':7} {'accepted/s':>11} {'p50 ms':>8} {'p99 ms':>8} {'non-202':>8}"
        f" {'cpu ms/req':>11} {'tput ratio':>11} {'p99 ratio':>10} {'cpu ratio':>10}"
    )
    ratios: dict[int, dict[str, list[float]]] = {
        k: {"tput": [], "p99": [], "cpu": []} for k in args.profiles
    }
    failures = 0
    with tempfile.TemporaryDirectory(prefix="crosswatchd-bench-") as tmp:
        for r in range(args.rounds):
            bare = await _measure(
                "bare", args.n, args.c, Path(tmp) / f"b{r}", wrk_seconds=wrk_seconds
            )
            print(
                f"{r + 1:>5} {'bare':7} {bare['per_s']:>11.0f} {bare['p50_ms']:>8.2f}"
                f" {bare['p99_ms']:>8.2f} {int(bare['other']):>8} {bare['cpu_ms']:>11.3f}"
            )
            for k in args.profiles:
                daemon = await _measure(
                    "daemon",
                    args.n,
                    args.c,
                    Path(tmp) / f"r{r}-p{k}",
                    args.synchronous,
                    wrk_seconds=wrk_seconds,
                    profiles=k,
                )
                failures += int(daemon["other"])
                mine = ratios[k]
                mine["tput"].append(daemon["per_s"] / bare["per_s"])
                mine["p99"].append(daemon["p99_ms"] / bare["p99_ms"])
                mine["cpu"].append(daemon["cpu_ms"] / bare["cpu_ms"])
                label = "daemon" if k == 1 else f"d {k}p"
                print(
                    f"{r + 1:>5} {label:7} {daemon['per_s']:>11.0f} {daemon['p50_ms']:>8.2f}"
                    f" {daemon['p99_ms']:>8.2f} {int(daemon['other']):>8}"
                    f" {daemon['cpu_ms']:>11.3f} {mine['tput'][-1]:>11.2f}"
                    f" {mine['p99'][-1]:>10.2f} {mine['cpu'][-1]:>10.2f}"
                )
    # Each round measures all back to back, so a round's ratio sees the same machine load;
    # the median of the rounds resists one disturbed round.
    ok_tp = ok_p99 = True
    for k, mine in ratios.items():
        who = "daemon" if k == 1 else f"daemon with {k} profiles"
        throughput_ratio = statistics.median(mine["tput"])
        p99_ratio = statistics.median(mine["p99"])
        ok_tp = ok_tp and throughput_ratio >= 0.80
        ok_p99 = ok_p99 and p99_ratio <= 2.0
        print(
            f"{who}: throughput ratio to bare (median of rounds) {throughput_ratio:.2f}"
            f" (target >= 0.80) {'PASS' if throughput_ratio >= 0.80 else 'FAIL'};"
            f" p99 ratio {p99_ratio:.2f} (target <= 2.00)"
            f" {'PASS' if p99_ratio <= 2.0 else 'FAIL'};"
            f" CPU per webhook ratio {statistics.median(mine['cpu']):.2f}"
        )
    return 0 if ok_tp and ok_p99 and not failures else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
