"""The daemon as a process: file modes under any umask, the first-start banner, a busy port or
a held lock, slow and idle clients, the connection cap, SIGTERM with a stalled client, and
aiohttp's messages about bad requests (never the secret, never a traceback)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e_support import free_port


@dataclass
class Proc:
    proc: subprocess.Popen[bytes]
    out: Path
    err: Path
    port: int

    def output(self) -> str:
        return self.out.read_text(errors="replace") + self.err.read_text(errors="replace")

    def wait(self, timeout_s: float) -> int:
        return self.proc.wait(timeout=timeout_s)


def _config(tmp_path: Path, port: int, extra: str = "", secret: str = "") -> Path:
    data = tmp_path / "data"
    text = f'data_dir = "{data}"\n[http]\nport = {port}\nidle_timeout_s = 1.0\n' + extra
    if secret:
        text += f'\n[webhook]\nsecret = "{secret}"\n'
    text += '\n[anime]\nmapping_url = ""\n'  # never the real Anime-Lists file
    path = tmp_path / "crosswatchd.toml"
    path.write_text(text)
    return path


def start(config: Path, port: int, tag: str = "d", *, umask: int | None = None) -> Proc:
    out, err = config.parent / f"{tag}.out", config.parent / f"{tag}.err"
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("CROSSWATCHD_")}
    env["PYTHONUNBUFFERED"] = "1"

    def pre() -> None:
        if umask is not None:
            os.umask(umask)

    with out.open("wb") as o, err.open("wb") as e:
        proc = subprocess.Popen(
            [sys.executable, "-m", "crosswatchd.cli", "--config", str(config), "serve"],
            stdout=o,
            stderr=e,
            env=env,
            preexec_fn=pre,
        )
    return Proc(proc, out, err, port)


def wait_up(p: Proc, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert p.proc.poll() is None, p.output()
        try:
            with socket.create_connection(("127.0.0.1", p.port), timeout=1) as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if b"200" in sock.recv(100):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError("daemon did not come up:\n" + p.output())


@pytest.fixture
def daemons() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for p in started:
        if p.proc.poll() is None:
            p.proc.kill()
            p.proc.wait(10)


def test_files_are_the_users_alone_whatever_the_umask(tmp_path: Path, daemons: list[Proc]) -> None:
    port = free_port()
    p = start(_config(tmp_path, port), port, umask=0o022)
    daemons.append(p)
    wait_up(p)
    p.proc.send_signal(signal.SIGTERM)
    assert p.wait(15) == 0
    data = tmp_path / "data"
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    files = [f for f in data.rglob("*") if f.is_file()]
    assert {f.name for f in files} >= {"outbox.sqlite3", "webhook_secret", "crosswatchd.lock"}
    loose = {f.name: oct(stat.S_IMODE(f.stat().st_mode)) for f in files}
    assert all(mode == "0o600" for mode in loose.values()), loose


def test_first_start_prints_both_urls_with_the_secret_masked(
    tmp_path: Path, daemons: list[Proc]
) -> None:
    port = free_port()
    p = start(_config(tmp_path, port), port)
    daemons.append(p)
    wait_up(p)
    p.proc.send_signal(signal.SIGTERM)
    assert p.wait(15) == 0
    secret = (tmp_path / "data" / "webhook_secret").read_text().strip()
    text = p.output()
    assert secret not in text
    assert "/webhook/plex?token=<secret>" in text
    assert "/webhook/tautulli?token=<secret>" in text
    assert "crosswatchd webhook-url" in text


def test_a_busy_port_is_the_only_thing_said(tmp_path: Path, daemons: list[Proc]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        p = start(_config(tmp_path, port), port)
        daemons.append(p)
        assert p.wait(15) == 2
    assert p.out.read_text() == ""
    lines = [line for line in p.err.read_text().splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "http.port" in lines[0]
    assert not (tmp_path / "data" / "webhook_secret").exists()


def test_a_held_lock_names_the_pid_holding_it(tmp_path: Path, daemons: list[Proc]) -> None:
    port = free_port()
    first = start(_config(tmp_path, port), port, "a")
    daemons.append(first)
    wait_up(first)
    other = free_port()
    second_config = _config(tmp_path / "..", other)  # same data dir, another port
    second_config.write_text(_config(tmp_path, other).read_text().replace(str(port), str(other)))
    second = start(second_config, other, "b")
    daemons.append(second)
    assert second.wait(15) == 2
    assert f"pid {first.proc.pid}" in second.err.read_text()


async def _open_idle(
    port: int, first_bytes: bytes
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(first_bytes)
    await writer.drain()
    return reader, writer


async def test_a_slow_header_connection_is_closed_after_the_idle_timeout(
    tmp_path: Path, daemons: list[Proc]
) -> None:
    port = free_port()
    p = start(_config(tmp_path, port), port)
    daemons.append(p)
    wait_up(p)
    reader, writer = await _open_idle(port, b"POST /webhook/plex HTTP/1.1\r\nHost: x\r\n")
    started = time.monotonic()
    data = await asyncio.wait_for(reader.read(), 10)
    assert time.monotonic() - started < 5
    writer.close()
    assert b"202" not in data


async def test_connections_beyond_the_cap_get_503_at_once(
    tmp_path: Path, daemons: list[Proc]
) -> None:
    port = free_port()
    config = _config(tmp_path, port, "max_connections = 3\nidle_timeout_s = 30\n").read_text()
    config = config.replace("idle_timeout_s = 1.0\n", "")
    (tmp_path / "crosswatchd.toml").write_text(config)
    p = start(tmp_path / "crosswatchd.toml", port)
    daemons.append(p)
    wait_up(p)
    held = [await _open_idle(port, b"POST /webhook/plex HTTP/1.1\r\n") for _ in range(3)]
    await asyncio.sleep(0.2)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answer = await asyncio.wait_for(reader.read(), 5)
    assert answer.startswith(b"HTTP/1.1 503"), answer
    for _, w in [*held, (reader, writer)]:
        w.close()


async def test_sigterm_with_a_stalled_client_exits_0_within_seconds(
    tmp_path: Path, daemons: list[Proc]
) -> None:
    port = free_port()
    config = _config(tmp_path, port, secret="stall-secret-0123456789")
    text = config.read_text().replace("idle_timeout_s = 1.0\n", "idle_timeout_s = 120\n")
    config.write_text(text)
    p = start(config, port)
    daemons.append(p)
    wait_up(p)
    _, writer = await _open_idle(
        port,
        b"POST /webhook/plex?token=stall-secret-0123456789 HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n{",
    )
    await asyncio.sleep(0.3)
    started = time.monotonic()
    p.proc.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(p.wait, 15)
    elapsed = time.monotonic() - started
    writer.close()
    assert code == 0, p.output()
    assert elapsed < 8, elapsed


async def test_bad_request_lines_never_put_the_secret_or_a_traceback_in_the_output(
    tmp_path: Path, daemons: list[Proc]
) -> None:
    secret = "bad-lines-secret-0123456789"
    port = free_port()
    p = start(_config(tmp_path, port, secret=secret), port)
    daemons.append(p)
    wait_up(p)
    for raw in (
        f"POST /webhook/plex?token={secret}&x={'a' * 9000} HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
        f"POST /webhook/plex?token={secret}".encode() + b"\xe9 HTTP/1.1\r\nHost: x\r\n\r\n",
        f"POST /webhook/plex?token={secret} HTTP/1.1\r\nHost: x\r\n".encode()
        + b"Content-Type: application/json\r\nContent-Length: 10\r\n\r\n"
        + b'{"event":"media.play","Player":{"publicAddress":"203.0.113.9"}}',
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(raw)
        await writer.drain()
        await asyncio.wait_for(reader.read(), 5)
        writer.close()
    p.proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(p.wait, 15) == 0
    text = p.output()
    assert secret not in text
    assert "Traceback" not in text
    assert "203.0.113.9" not in text
    assert "http.bad_request" in text


def test_a_second_signal_ends_the_process_at_once(tmp_path: Path, daemons: list[Proc]) -> None:
    port = free_port()
    p = start(_config(tmp_path, port), port)
    daemons.append(p)
    wait_up(p)
    p.proc.send_signal(signal.SIGTERM)
    p.proc.send_signal(signal.SIGTERM)
    assert p.wait(10) in (0, 1)
