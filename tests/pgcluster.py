"""A throwaway PostgreSQL cluster for tests and benchmarks: Debian's ``postgresql`` binaries,
``initdb`` and ``pg_ctl`` as an unprivileged user, a free port on 127.0.0.1, removed afterwards.

PostgreSQL refuses to run as root: when the tests run as root the cluster runs as the
``postgres`` system user the Debian package creates (through ``runuser``), in a directory it
owns. Nothing is installed here: ``.ci/run`` installs the package when it is missing. Without
the binaries, :func:`find_bin_dir` returns ``None``; the fixtures then skip, unless
``CROSSWATCHD_REQUIRE_POSTGRES=1`` (set by ``.ci/run``) makes that a failure.

Usage::

    with PgCluster.start() as cluster:
        url = cluster.create_database("t1")   # postgresql://crosswatchd@127.0.0.1:PORT/t1
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

__all__ = ["PgCluster", "find_bin_dir", "require_postgres"]

SUPERUSER = "crosswatchd"


def find_bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` holding ``initdb``, or ``None``."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if found:
        return found[-1].parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


# Read once and taken out of the environment: every ``CROSSWATCHD_*`` variable is a setting
# to the config loader (an unknown one is an error), in this process and in the daemons the
# tests start.
_REQUIRE_POSTGRES = os.environ.pop("CROSSWATCHD_REQUIRE_POSTGRES", "") == "1"


def require_postgres() -> bool:
    """True when a missing PostgreSQL must fail the tests instead of skipping them."""
    return _REQUIRE_POSTGRES


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PgCluster:
    """One running cluster; :meth:`stop` removes it. Create with :meth:`start`."""

    def __init__(self, bin_dir: Path, root: Path, port: int, run_as: str | None) -> None:
        self.bin_dir = bin_dir
        self.root = root
        self.port = port
        self._run_as = run_as
        self.data = root / "data"

    def _cmd(self, tool: str, *args: str) -> list[str]:
        cmd = [str(self.bin_dir / tool), *args]
        if self._run_as is not None:
            cmd = ["runuser", "-u", self._run_as, "--", *cmd]
        return cmd

    def _run(self, tool: str, *args: str) -> None:
        proc = subprocess.run(self._cmd(tool, *args), capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{tool} failed ({proc.returncode}): {proc.stderr or proc.stdout}")

    @classmethod
    @contextlib.contextmanager
    def start(cls, bin_dir: Path | None = None) -> Iterator[PgCluster]:
        """A new cluster, running until the block ends (then stopped and deleted)."""
        found = bin_dir or find_bin_dir()
        if found is None:
            raise FileNotFoundError("PostgreSQL's initdb was not found (apt install postgresql)")
        run_as = "postgres" if os.geteuid() == 0 else None
        root = Path(tempfile.mkdtemp(prefix="crosswatchd-pg-"))
        if run_as is not None:
            user = pwd.getpwnam(run_as)
            os.chown(root, user.pw_uid, user.pw_gid)
        cluster = cls(found, root, _free_port(), run_as)
        try:
            cluster._run(
                "initdb", "-D", str(cluster.data), "-U", SUPERUSER, "-A", "trust", "--no-sync",
                "-E", "UTF8", "--locale", "C",
            )  # fmt: skip
            options = (
                f"-p {cluster.port} -k {root} -c listen_addresses=127.0.0.1"
                " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
                " -c max_connections=200"
            )
            cluster._run(
                "pg_ctl", "-D", str(cluster.data), "-o", options, "-l", str(root / "log"),
                "-w", "start",
            )  # fmt: skip
            yield cluster
        finally:
            with contextlib.suppress(Exception):
                cluster._run("pg_ctl", "-D", str(cluster.data), "-m", "immediate", "-w", "stop")
            shutil.rmtree(root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        """A ``postgresql://`` URL of *database* (no password: the cluster trusts loopback)."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database (a fresh name by default) and return its URL."""
        name = name or f"t_{uuid.uuid4().hex[:12]}"
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER, name)
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop database *name*, disconnecting whoever is still in it."""
        self._run(
            "dropdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER, "--force",
            "--if-exists", name,
        )  # fmt: skip

    def restart(self) -> None:
        """Stop the server (fast: connections are cut) and start it again on the same port."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "restart")

    def stop_server(self) -> None:
        """Stop the server, keeping the cluster (``start_server`` brings it back)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def start_server(self) -> None:
        """Start a server stopped by :meth:`stop_server`."""
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            " -c max_connections=200"
        )
        self._run(
            "pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "log"), "-w",
            "start",
        )  # fmt: skip
