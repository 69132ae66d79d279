"""Step 2, ``cache``: an earlier resolution of the same item, by any of its handles.

The item's keys (:meth:`~crosswatchd.resolve.keys.Keys.of`: its GUID, per-server ratingKey,
typed ids, show ids with position …) are tried most specific first; the first positive
answer's identity is merged in (:func:`~crosswatchd.resolve.keys.with_identity`). Memory is
asked before SQLite, so a warm item costs no query at all; :meth:`RecallStep.in_memory` is the
part of the step that needs nothing else (the resolver's warm path).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from crosswatchd.resolve.keys import Keys, with_identity

if TYPE_CHECKING:
    from crosswatchd.models import Item
    from crosswatchd.resolve.cache import CacheEntry, IdCache
    from crosswatchd.resolve.chain import Work
    from crosswatchd.sources.guids import ParsedGuid

__all__ = ["RecallStep"]


class RecallStep:
    """The ``cache`` step (see the module docstring), over *cache* with the key scheme *keys*."""

    name = "cache"

    def __init__(self, cache: IdCache, keys: Keys) -> None:
        self._cache = cache
        self._keys = keys

    def in_memory(self, item: Item, parsed: ParsedGuid | None) -> CacheEntry | None:
        """The entry :meth:`run` would take for *item* (GUID parse *parsed*), when memory alone
        can tell: ``None`` when none of its keys holds an identity in memory, or when a key
        before the first that does is not in memory (SQLite must be asked)."""
        cache = self._cache
        for key in self._keys.of(item, parsed):
            entry = cache.peek(key)
            if entry is None:
                return None
            if entry.value is not None:
                return entry
        return None

    @staticmethod
    def take(work: Work, entry: CacheEntry) -> None:
        """Merge the identity of the positive *entry* into *work*."""
        work.item = with_identity(work.item, entry)
        work.step = "cache"
        work.recalled = True

    async def run(self, work: Work) -> None:
        """Merge the first cached identity of *work*'s item (unless one is merged already);
        record the item as known."""
        if not work.recalled:
            cache = self._cache
            for key in self._keys.of(work.item, work.parsed):
                entry = cache.peek(key) or await cache.get(key)
                if entry is not None and entry.value is not None:
                    self.take(work, entry)
                    break
        work.known = work.item
