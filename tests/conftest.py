"""Suite-wide guards."""

from __future__ import annotations

import os
import sys
import threading

import pytest


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """End the process even if a failed test left an aiosqlite connection open.

    aiosqlite runs each connection in a non-daemon thread; a test that fails before closing
    its outbox would otherwise keep the interpreter alive after the summary, and CI would wait
    for its time limit instead of reporting the failure.
    """
    leaked = [t for t in threading.enumerate() if "_connection_worker_thread" in t.name]
    if leaked:
        print(f"\nconftest: {len(leaked)} aiosqlite connection(s) left open", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        status = getattr(config, "_crosswatchd_exitstatus", 1)
        os._exit(int(status))


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    session.config._crosswatchd_exitstatus = exitstatus  # type: ignore[attr-defined]


# The intake fixtures (``make_intake``, ``intake``) for every test module that posts webhooks.
# -- PostgreSQL ------------------------------------------------------------------------------
# A throwaway cluster for the whole session (tests/pgcluster.py), a fresh database per test.
from collections.abc import Iterator  # noqa: E402

from tests.intake_support import intake, make_intake  # noqa: E402, F401
from tests.pgcluster import PgCluster, find_bin_dir, require_postgres  # noqa: E402


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """The session's PostgreSQL cluster (skipped without Debian's postgresql, unless
    CROSSWATCHD_REQUIRE_POSTGRES=1 makes that a failure)."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        message = "PostgreSQL is not installed (apt install postgresql; .ci/run does)"
        if require_postgres():
            pytest.fail(message)
        pytest.skip(message)
    with PgCluster.start(bin_dir) as cluster:
        yield cluster


@pytest.fixture
def pg_url(pg_cluster: PgCluster) -> Iterator[str]:
    """The URL of an empty database of its own, dropped after the test. (A plain fixture, so
    an async fixture may ask for it with ``request.getfixturevalue``.)"""
    url = pg_cluster.create_database()
    yield url
    pg_cluster.drop_database(url.rsplit("/", 1)[-1])
