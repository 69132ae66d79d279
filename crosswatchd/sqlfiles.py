"""Named SQL files of a store, read once from its package: ``queries.sql`` /
``queries.pg.sql`` (``-- name: NAME`` blocks) into a frozen dataclass with one ``str`` field
per statement, and ``schema.sql`` / ``schema.pg.sql`` (``-- migration: N`` blocks) into the
migrations in order. The outbox's loader (:mod:`crosswatchd.outbox.queries`) does the same
for its files; the smaller stores (replicas, roster) use these helpers::

    QUERIES = load_queries(Queries, "crosswatchd.replicas", "queries.sql")
    MIGRATIONS = load_migrations("crosswatchd.replicas", "schema.sql")

A query missing from a file, or a name the class lacks, fails at import.
"""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from importlib import resources
from typing import TypeVar

from crosswatchd.outbox.queries import named_blocks

__all__ = ["load_migrations", "load_queries"]

T = TypeVar("T")


def _read(package: str, name: str) -> str:
    return resources.files(package).joinpath(name).read_text("utf-8")


def load_queries(cls: type[T], package: str, name: str) -> T:
    """The named statements of *package*'s file *name*, as an instance of *cls* (a dataclass
    whose fields are the names). Raises ``ValueError`` unless the file names exactly them."""
    if not is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    blocks = named_blocks(_read(package, name), "name")
    expected = {f.name for f in fields(cls)}
    if set(blocks) != expected:
        missing = sorted(expected - set(blocks))
        unknown = sorted(set(blocks) - expected)
        raise ValueError(f"{package}/{name}: missing {missing}, unknown {unknown}")
    return cls(**blocks)


def load_migrations(package: str, name: str) -> tuple[str, ...]:
    """The migrations of *package*'s file *name*, version 1 first. Raises ``ValueError``
    unless they are numbered 1, 2, … in order."""
    blocks = named_blocks(_read(package, name), "migration")
    numbers = [int(n) for n in blocks]
    if numbers != list(range(1, len(numbers) + 1)):
        raise ValueError(f"{package}/{name}: migrations must be numbered 1, 2, … in order")
    return tuple(blocks.values())
