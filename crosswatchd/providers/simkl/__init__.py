"""SIMKL (https://simkl.com): delivery target and id search.

One concept per module: :mod:`.http` (identification, limiter, status → error, GET retries),
:mod:`.auth` (PIN flow, the stored token), :mod:`.history` (the history body, its reply,
``date_from`` and all-items matching, pure), :mod:`.search` (id search for the resolver),
:mod:`.sync` (whole-account watched items and ratings for reconcile), :mod:`.provider`
(:class:`SimklProvider`: history and scrobbles).
"""

from __future__ import annotations

from crosswatchd.providers.simkl.auth import pin_auth
from crosswatchd.providers.simkl.provider import MAX_BATCH, SimklProvider
from crosswatchd.providers.simkl.search import SimklSearch
from crosswatchd.providers.simkl.sync import SimklSync

__all__ = ["MAX_BATCH", "SimklProvider", "SimklSearch", "SimklSync", "pin_auth"]
