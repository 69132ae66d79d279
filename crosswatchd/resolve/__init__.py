"""Id resolution: every item matched to stable external ids through a persistent cache.

Whatever a source knows about an item (new-agent ``Guid[]`` ids, a legacy agent GUID, only a
Plex ratingKey, Tautulli's show ids, a title and year), :meth:`Resolver.resolve` finds the ids
the delivery targets need, or raises :class:`~crosswatchd.errors.UnresolvedError` naming the
step that failed and why. Every intake path goes through it.

The chain, cheapest first; it stops as soon as the goal is met. One module per step, each a
:class:`~crosswatchd.resolve.chain.Step` (a name and ``async run(work)``)::

    anime     HAMA AniDB GUIDs only, and alone: the Anime-Lists  anime.py (list: animelists.py,
              mapping to TVDB series/season/episode or a          animelists_store.py)
              TMDB/IMDb film; absolute numbers through Trakt's
              GET /shows/{id}/seasons (cached)
    payload   ids already in the item (Guid[] ids, show ids,     payload.py
              legacy GUID incl. thetvdb/HAMA)
    cache     an earlier resolution of the same item (by GUID,   recall.py (over cache.py,
              ratingKey, any external id)                          keys in keys.py)
    plex      GET /library/metadata/{ratingKey} (and the show's  plex.py
              grandparentRatingKey)
    tautulli  get_metadata(rating_key): guids +                  tautulli.py
              grandparent_guids in one call
    trakt     GET /search/{imdb|tmdb|tvdb}/{id}?type=movie|      search.py
              show|episode
    simkl     GET /search/id?imdb=|tmdb=|tvdb=|anidb=&type=      search.py
              movie|show
    title     exact title + year search on Trakt, then SIMKL    title.py
              (``resolver.title_fallback``, off by default; on
              for imported files)

:mod:`~crosswatchd.resolve.chain` runs them (:class:`Resolver`, the work they share, the
goal, single-flight); :mod:`~crosswatchd.resolve.same` decides whether the item a server keeps
under a ratingKey is the played one.

Goal: a movie has an imdb or tmdb id; an episode has its show's ids (imdb, tmdb, tvdb, trakt
or simkl) plus season and episode number. When the chain ends short of that but with something
a target can use (any id of a movie; an episode's own ids), that partial result is returned and
the provider decides. Nothing usable: :class:`UnresolvedError`.

Every answer from steps 3-7 is cached per question (positive answers for
``resolver.positive_ttl_s``, "not found" for the shorter ``negative_ttl_s``), and concurrent
questions share one request (single-flight), so each outside service is asked about an item at
most once per TTL. Transient failures (5xx, timeouts, a source that is down) are never cached:
when they are why the goal was not met, :meth:`Resolver.resolve` raises them as
:class:`~crosswatchd.errors.RetryableError` so the drainer tries again later.

Deliberate cases: specials (season 0) and year-numbered seasons (``2019``) are ordinary season
numbers; ``local://`` and ``com.plexapp.agents.none://`` (personal media) and extras
(``iva://``, Plex type ``clip``) never resolve to anything; an episode's own year is never used
as its show's year. Plex webhooks also report plays on friends' servers, whose ratingKeys name
other items on the configured server: the Plex and Tautulli steps first check that the item
under the ratingKey is the played one (same GUID, else same type/title/position) and are
skipped otherwise (``resolve.plex_other_server``); ratingKey cache handles are likewise used
only for items without a GUID or once the configured server confirmed them. Tautulli reads
the same server, so once Plex has answered about a ratingKey (this item or another one)
Tautulli is not asked about it again; only a ratingKey Plex does not know (404) or could not
be asked about goes on to Tautulli.

Cost on a cold cache: an item known by ratingKey costs one Plex lookup; an episode that needs
its show's ids one more for the show, by the server's own ``grandparentRatingKey`` and shared
by all the show's episodes (10 episodes of one show: 10 episode lookups + 1 show lookup).
"""

from __future__ import annotations

from crosswatchd.resolve.cache import CacheEntry, CacheStats, IdCache
from crosswatchd.resolve.chain import STEPS, Resolution, Resolver, Step, Work, build_resolver
from crosswatchd.resolve.tautulli import MetadataSource

__all__ = [
    "STEPS",
    "CacheEntry",
    "CacheStats",
    "IdCache",
    "MetadataSource",
    "Resolution",
    "Resolver",
    "Step",
    "Work",
    "build_resolver",
]
