"""Command line: ``crosswatchd [--config PATH] COMMAND``.

Commands: ``serve``, ``healthcheck``, ``webhook-url`` (:mod:`.daemon`); ``auth
trakt|simkl|plex`` (:mod:`.auth`); ``status [--json]`` (:mod:`.status`); ``unresolved
list|retry|dismiss`` (:mod:`.unresolved`); ``import tautulli`` (:mod:`.imports`); ``watchlist
sync`` (:mod:`.watchlist`); ``profile add|list|remove`` (:mod:`.profiles`). A bad config
or an unusable database prints one line naming the key or the file and exits with code 2;
an unreachable service prints one line and exits with code 1. Commands about one household
member take ``--profile NAME``.
"""

from __future__ import annotations

from crosswatchd.cli import auth, daemon, imports, profiles, status, unresolved, watchlist
from crosswatchd.cli._base import main

__all__ = ["auth", "daemon", "imports", "main", "profiles", "status", "unresolved", "watchlist"]
