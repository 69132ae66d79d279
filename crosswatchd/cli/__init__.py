"""Command line: ``crosswatchd [--config PATH] COMMAND``.

Commands: ``serve``, ``healthcheck``, ``webhook-url`` (:mod:`.daemon`); ``auth
trakt|simkl|plex`` (:mod:`.auth`); ``status [--json]`` (:mod:`.status`); ``unresolved
list|retry|dismiss`` (:mod:`.unresolved`); ``import tautulli|letterboxd|tvtime``
(:mod:`.imports`); ``export letterboxd`` (:mod:`.exports`); ``watchlist sync``
(:mod:`.watchlist`); ``reconcile`` (:mod:`.reconcile`); ``profile add|list|remove``
(:mod:`.profiles`); ``migrate --to URL`` (:mod:`.migrate`: a SQLite data dir into
PostgreSQL). A bad config, an unusable database or a file that cannot be read or written
prints one line naming the key or the file and exits with code 2; an unreachable service
prints one line and exits with code 1. Commands about one household member take
``--profile NAME``.
"""

from __future__ import annotations

from crosswatchd.cli import (
    auth,
    daemon,
    exports,
    imports,
    migrate,
    profiles,
    reconcile,
    status,
    unresolved,
    watchlist,
)
from crosswatchd.cli._base import main

__all__ = [
    "auth",
    "daemon",
    "exports",
    "imports",
    "main",
    "migrate",
    "profiles",
    "reconcile",
    "status",
    "unresolved",
    "watchlist",
]
