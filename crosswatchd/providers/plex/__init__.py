"""The Plex watchlist (on Plex Discover) as a delivery target of watchlist changes.

:mod:`.provider` (:class:`PlexWatchlistProvider`) adds and removes items through
:class:`crosswatchd.sources.discover.DiscoverClient`, which owns the HTTP details.
"""

from __future__ import annotations

from crosswatchd.providers.plex.provider import PlexWatchlistProvider

__all__ = ["PlexWatchlistProvider"]
