"""The package as a user installs it: ``pip install .`` (not the checkout's folder)."""

from __future__ import annotations

import os
import subprocess
import sys
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

async def main(path: Path) -> None:
    box = await Outbox.open(path, providers=["trakt"])
    await box.close()

path = Path(sys.argv[1])
asyncio.run(main(path))
print(queries.__file__)
print(sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0])
"""


@pytest.mark.timeout(300)
def test_installed_copy_opens_an_outbox_with_its_own_sql(installed: Path, tmp_path: Path) -> None:
    """The wheel carries the outbox's schema.sql and queries.sql: the installed copy loads
    them and creates a current outbox file."""
    out = _run_installed(installed, _OPEN_OUTBOX, str(tmp_path / "outbox.sqlite3"))
    where, version = out.split()
    assert Path(where).is_relative_to(installed), where
    assert version == "2"
    assert (installed / "crosswatchd" / "outbox" / "queries.sql").is_file()
    assert (installed / "crosswatchd" / "outbox" / "schema.sql").is_file()


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
