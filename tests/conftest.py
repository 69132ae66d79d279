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
from tests.intake_support import intake, make_intake  # noqa: E402, F401
