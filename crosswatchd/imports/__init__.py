"""Readers of other services' export files: Letterboxd (``letterboxd``), TV Time (``tvtime``).

Each reader turns a user's ``FILE`` (the service's export ZIP, or the one CSV in it that
matters) into frozen dataclasses of plays, streamed row by row. A file-level problem raises
:class:`FileFormatError` before any row is returned; a bad row is skipped and reported in the
reader's :class:`TableStats` with its line and reason. The submodules are imported on demand;
this package exposes only what they share.
"""

from __future__ import annotations

from crosswatchd.imports._files import (
    FileFormatError,
    SkippedRow,
    TableStats,
    parse_zone,
    system_zone,
)

__all__ = ["FileFormatError", "SkippedRow", "TableStats", "parse_zone", "system_zone"]
