"""The roster: profiles added at run time (``crosswatchd profile add|list|remove``), kept in
the database beside those of the config file, so a relay adds people without a restart.

- :mod:`.store` (:class:`ProfileStore`): the ``profiles`` table, on SQLite
  (``data_dir/profiles.sqlite3``) or in the shared PostgreSQL database;
- :mod:`.live` (:class:`LiveHousehold`): the household a running daemon routes by, reloaded
  within seconds of a change, and each profile's own webhook token (:func:`profile_token`).
"""

from __future__ import annotations

from crosswatchd.roster.live import LiveHousehold, profile_token
from crosswatchd.roster.store import FILE, MIGRATIONS, PG_MIGRATIONS, ProfileStore

__all__ = ["FILE", "MIGRATIONS", "PG_MIGRATIONS", "LiveHousehold", "ProfileStore", "profile_token"]
