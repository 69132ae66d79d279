"""systemd's notify protocol against a fake ``NOTIFY_SOCKET`` (a real datagram socket): the
daemon process says READY=1 once it accepts webhooks, pings WATCHDOG=1 at WATCHDOG_USEC/2
while healthy and stops pinging when its probe hangs, and says STOPPING=1 on SIGTERM."""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from crosswatchd.systemd import Notifier, watchdog
from tests.e2e_support import free_port


class FakeSystemd:
    """A bound AF_UNIX datagram socket collecting what is sent to it, with arrival times."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, str]] = []

    def drain(self, for_s: float = 0.0) -> list[str]:
        end = time.monotonic() + for_s
        while True:
            try:
                data = self.sock.recv(4096)
                self.messages.append((time.monotonic(), data.decode()))
            except TimeoutError:
                if time.monotonic() >= end:
                    break
        return [m for _, m in self.messages]

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def fake_systemd(tmp_path: Path) -> Iterator[FakeSystemd]:
    fake = FakeSystemd(tmp_path / "notify.sock")
    yield fake
    fake.close()


class TestNotifier:
    def test_without_notify_socket_nothing_is_sent(self) -> None:
        notifier = Notifier.from_environ({})
        assert not notifier.enabled
        assert notifier.ready() is False
        assert notifier.watchdog_interval_s is None

    def test_ready_and_stopping_reach_the_socket(self, fake_systemd: FakeSystemd) -> None:
        notifier = Notifier.from_environ({"NOTIFY_SOCKET": str(fake_systemd.path)})
        assert notifier.ready("up")
        assert notifier.stopping()
        messages = fake_systemd.drain()
        assert messages[0].splitlines() == ["READY=1", "STATUS=up"]
        assert "STOPPING=1" in messages[1].splitlines()

    def test_watchdog_interval_is_half_of_watchdog_usec(self) -> None:
        notifier = Notifier.from_environ({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "4000000"})
        assert notifier.watchdog_interval_s == 2.0

    def test_a_watchdog_meant_for_another_pid_is_not_ours(self) -> None:
        env = {"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "1"}
        assert Notifier.from_environ(env).watchdog_interval_s is None

    def test_abstract_socket_address(self) -> None:
        name = f"crosswatchd-test-{os.getpid()}"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind("\0" + name)
        sock.settimeout(2)
        try:
            assert Notifier.from_environ({"NOTIFY_SOCKET": "@" + name}).ready()
            assert sock.recv(100) == b"READY=1"
        finally:
            sock.close()


class TestWatchdog:
    async def test_pings_while_the_probe_answers_and_stops_when_it_hangs(
        self, fake_systemd: FakeSystemd
    ) -> None:
        notifier = Notifier(str(fake_systemd.path), watchdog_usec=200_000)  # ping every 0.1 s
        stop = asyncio.Event()
        hang = asyncio.Event()

        async def probe() -> None:
            if hang.is_set():
                await asyncio.sleep(3600)

        task = asyncio.create_task(watchdog(notifier, stop, probe))
        await asyncio.sleep(0.55)
        healthy = len([m for m in fake_systemd.drain() if m == "WATCHDOG=1"])
        hang.set()
        await asyncio.sleep(0.15)
        fake_systemd.drain()
        before = len(fake_systemd.messages)
        await asyncio.sleep(0.6)
        after = len(fake_systemd.drain())
        stop.set()
        await task
        assert healthy >= 4
        assert after == before  # no ping while the probe hangs


def test_the_daemon_says_ready_pings_and_says_stopping(
    tmp_path: Path, fake_systemd: FakeSystemd
) -> None:
    port = free_port()
    config = tmp_path / "c.toml"
    config.write_text(
        f'data_dir = "{tmp_path / "data"}"\n[http]\nport = {port}\n[anime]\nmapping_url = ""\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CROSSWATCHD_")}
    env.update(NOTIFY_SOCKET=str(fake_systemd.path), WATCHDOG_USEC="400000")
    log = (tmp_path / "out").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "crosswatchd.cli", "--config", str(config), "serve"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        deadline = time.monotonic() + 20
        while "READY=1" not in "".join(fake_systemd.drain(0.1)) and time.monotonic() < deadline:
            assert proc.poll() is None
        ready_at = next(t for t, m in fake_systemd.messages if m.startswith("READY=1"))
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            # Ready means ready: the port answers at once.
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert b"200" in sock.recv(100)
        fake_systemd.drain(1.0)
        pings = [t for t, m in fake_systemd.messages if m == "WATCHDOG=1" and t > ready_at]
        assert len(pings) >= 3
        assert max(b - a for a, b in itertools.pairwise(pings)) < 0.4
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        assert any("STOPPING=1" in m for m in fake_systemd.drain(0.2))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


UNIT = Path(__file__).resolve().parent.parent / "systemd" / "crosswatchd.service"


def _unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def test_the_unit_is_a_notify_service_with_watchdog_restart_and_hardening() -> None:
    unit = _unit_settings()
    assert unit["Type"] == ["notify"]
    assert int(unit["WatchdogSec"][0]) > 0
    assert unit["Restart"] == ["on-failure"]
    assert unit["StateDirectory"] == ["crosswatchd"]
    assert "User" in unit or unit.get("DynamicUser") == ["yes"]
    assert unit["EnvironmentFile"][0].lstrip("-").startswith("/etc/")
    for key in (
        "ProtectSystem",
        "ProtectHome",
        "NoNewPrivileges",
        "PrivateTmp",
        "RestrictAddressFamilies",
    ):
        assert key in unit, key
    assert unit["ProtectSystem"] == ["strict"]
    assert int(unit["TimeoutStopSec"][0]) >= 10


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    binary = Path(sys.executable).parent / "crosswatchd"
    copy = tmp_path / "crosswatchd.service"
    copy.write_text(UNIT.read_text().replace("/opt/crosswatchd/.venv/bin/crosswatchd", str(binary)))
    run = subprocess.run(
        ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60
    )
    problems = [
        line
        for line in (run.stdout + run.stderr).splitlines()
        if "crosswatchd.service" in line and "Unknown user" not in line
    ]
    assert run.returncode == 0 or not problems, run.stdout + run.stderr
    assert problems == []
