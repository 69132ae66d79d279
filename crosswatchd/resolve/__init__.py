"""Id resolution: see :mod:`crosswatchd.resolve.chain`."""

from __future__ import annotations

from crosswatchd.resolve.chain import (
    STEPS,
    CacheEntry,
    CacheStats,
    IdCache,
    MetadataSource,
    Resolution,
    Resolver,
    build_resolver,
)

__all__ = [
    "STEPS",
    "CacheEntry",
    "CacheStats",
    "IdCache",
    "MetadataSource",
    "Resolution",
    "Resolver",
    "build_resolver",
]
