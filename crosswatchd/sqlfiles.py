"""A store's SQL, kept in its package's ``.sql`` files and loaded once at import.

Every store behind the seam (:mod:`crosswatchd.db`) keeps its statements by name, one file per
dialect with the same names (``queries.sql`` for SQLite, ``queries.pg.sql`` for PostgreSQL),
and its migrations numbered, one file per dialect (``schema.sql``, ``schema.pg.sql``), as
procrastinate keeps its ``queries.sql``::

    -- name: load_one
    SELECT value FROM id_cache WHERE key = :key

    -- migration: 1
    CREATE TABLE id_cache (…);

:func:`queries` checks that a file names exactly the fields of the store's dataclass, so a
query missing from one dialect fails at import and the two cannot drift apart.
"""

from __future__ import annotations

import re
from dataclasses import fields, is_dataclass
from importlib import resources
from typing import Any, TypeVar

__all__ = ["migrations", "named_blocks", "queries", "read"]

Q = TypeVar("Q")


def named_blocks(text: str, label: str) -> dict[str, str]:
    """``{name: body}`` of the blocks of *text* that start with a ``-- LABEL: NAME`` line.

    A body runs to the next such line (comments included, surrounding blank lines removed);
    text before the first block is the file's header. Raises ``ValueError`` for a name used
    twice or an empty block.
    """
    parts = re.split(rf"^-- {re.escape(label)}: *(\S+) *$", text, flags=re.MULTILINE)
    blocks: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in blocks:
            raise ValueError(f"{label} {name!r} is defined twice")
        if not body.strip():
            raise ValueError(f"{label} {name!r} is empty")
        blocks[name] = body.strip("\n")
    return blocks


def read(package: str, name: str) -> str:
    """The text of the file *name* shipped in *package* (``"crosswatchd.outbox"``)."""
    return resources.files(package).joinpath(name).read_text("utf-8")


def queries(package: str, name: str, cls: type[Q]) -> Q:
    """The named statements of *package*'s file *name* as a *cls* (a dataclass whose fields
    are the names). Raises ``ValueError`` unless the file names exactly those fields."""
    assert is_dataclass(cls)
    blocks = named_blocks(read(package, name), "name")
    expected = {f.name for f in fields(cls)}
    if set(blocks) != expected:
        missing = sorted(expected - set(blocks))
        unknown = sorted(set(blocks) - expected)
        raise ValueError(f"{package} {name}: missing {missing}, unknown {unknown}")
    made: Any = cls(**blocks)
    return made  # type: ignore[no-any-return]


def migrations(package: str, name: str) -> tuple[str, ...]:
    """The migration scripts of *package*'s file *name*, version 1 first. Raises
    ``ValueError`` unless they are numbered 1, 2, … in order."""
    blocks = named_blocks(read(package, name), "migration")
    numbers = [int(n) for n in blocks]
    if numbers != list(range(1, len(numbers) + 1)):
        raise ValueError(f"{package} {name}: migrations must be numbered 1, 2, … in order")
    return tuple(blocks.values())
