"""Writers of files for other services: Letterboxd's import CSV (``letterboxd``).

The submodules are imported on demand; file problems raise
:class:`crosswatchd.imports.FileFormatError`, shared with the readers.
"""

from __future__ import annotations

__all__: list[str] = []
