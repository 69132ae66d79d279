"""Trakt (https://trakt.tv): delivery target and id search.

One concept per module: :mod:`.http` (headers, limiter, status → error, GET retries),
:mod:`.auth` (device flow, token refresh, revocation), :mod:`.history` (the history body, its
reply and history matching, pure), :mod:`.search` (id and title search for the resolver),
:mod:`.sync` (whole-account history and ratings reads for reconcile), :mod:`.provider`
(:class:`TraktProvider`: history and scrobbles).
"""

from __future__ import annotations

from crosswatchd.providers.trakt.auth import device_auth
from crosswatchd.providers.trakt.provider import TraktProvider
from crosswatchd.providers.trakt.search import TraktSearch
from crosswatchd.providers.trakt.sync import TraktSync

__all__ = ["TraktProvider", "TraktSearch", "TraktSync", "device_auth"]
