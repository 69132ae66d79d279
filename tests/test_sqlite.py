"""Opening SQLite files and migrating them by ``PRAGMA user_version`` (crosswatchd.sqlite),
shared by the outbox and the id cache."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from crosswatchd.errors import StorageError
from crosswatchd.resolve import IdCache
from crosswatchd.sqlite import SchemaTooNewError, connect, split_script

V1 = "CREATE TABLE a (x INTEGER);\nINSERT INTO a VALUES (1);"
V2 = "ALTER TABLE a ADD COLUMN y TEXT; -- a trailing comment\nUPDATE a SET y = 'two';"


def version_and_tables(path: Path) -> tuple[int, list[str]]:
    with sqlite3.connect(path) as db:
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        names = [r[0] for r in db.execute("SELECT name FROM sqlite_master ORDER BY name")]
    return version, names


class TestConnect:
    async def test_a_new_file_gets_every_migration_wal_and_the_pragmas(
        self, tmp_path: Path
    ) -> None:
        """A new file (its folder created too) ends at version len(migrations), in WAL mode,
        with the busy timeout and the extra pragmas set."""
        path = tmp_path / "sub" / "db.sqlite3"
        conn = await connect(path, migrations=(V1, V2), what="test", pragmas=["foreign_keys=ON"])
        try:
            pragmas = {}
            for name in ("user_version", "journal_mode", "busy_timeout", "foreign_keys"):
                async with conn.execute(f"PRAGMA {name}") as cur:
                    row = await cur.fetchone()
                    assert row is not None
                    pragmas[name] = row[0]
            async with conn.execute("SELECT x, y FROM a") as cur:
                rows = [tuple(r) for r in await cur.fetchall()]
        finally:
            await conn.close()
        assert pragmas == {
            "user_version": 2,
            "journal_mode": "wal",
            "busy_timeout": 5000,
            "foreign_keys": 1,
        }
        assert rows == [(1, "two")]

    async def test_only_the_missing_migrations_run(self, tmp_path: Path) -> None:
        """A file at version 1 gets migration 2 only (migration 1 would insert a second row)."""
        path = tmp_path / "db.sqlite3"
        await (await connect(path, migrations=(V1,), what="test")).close()

        conn = await connect(path, migrations=(V1, V2), what="test")
        try:
            async with conn.execute("SELECT x, y FROM a") as cur:
                assert [tuple(r) for r in await cur.fetchall()] == [(1, "two")]
        finally:
            await conn.close()
        assert version_and_tables(path) == (2, ["a"])

    async def test_a_failing_migration_leaves_the_file_at_its_old_version(
        self, tmp_path: Path
    ) -> None:
        """Every missing migration runs in one transaction: an error undoes all of them."""
        path = tmp_path / "db.sqlite3"
        with pytest.raises(StorageError, match=r"no such column"):
            await connect(path, migrations=(V1, "CREATE TABLE b (z);\nSELECT nope;"), what="t")

        assert version_and_tables(path) == (0, [])

    async def test_a_file_newer_than_the_code_is_refused_untouched(self, tmp_path: Path) -> None:
        """A file whose user_version exceeds the known migrations raises SchemaTooNewError
        (a StorageError) naming the file and both versions, and is left as it was."""
        path = tmp_path / "db.sqlite3"
        with sqlite3.connect(path) as db:
            db.execute("PRAGMA user_version = 3")

        with pytest.raises(SchemaTooNewError, match=r"test schema version 3 .* newer .*\(2\)"):
            await connect(path, migrations=(V1, V2), what="test")

        assert version_and_tables(path) == (3, [])

    async def test_two_processes_opening_a_new_file_at_once_migrate_it_once(
        self, tmp_path: Path
    ) -> None:
        """The version is read again under the write lock, so the second opener finds the
        file migrated instead of running the scripts twice."""
        path = tmp_path / "db.sqlite3"
        conns = await asyncio.gather(*(connect(path, migrations=(V1,), what="t") for _ in range(4)))
        for conn in conns:
            await conn.close()
        with sqlite3.connect(path) as db:
            assert db.execute("SELECT count(*) FROM a").fetchone() == (1,)

    async def test_synchronous_must_be_normal_or_full(self, tmp_path: Path) -> None:
        with pytest.raises(ValueError, match="synchronous"):
            await connect(tmp_path / "db.sqlite3", migrations=(V1,), what="t", synchronous="off")
        assert not (tmp_path / "db.sqlite3").exists()


class TestIdCacheMigrations:
    async def test_the_id_cache_refuses_a_newer_file(self, tmp_path: Path) -> None:
        """The id cache opens through the same helper, so a newer file is refused too."""
        path = tmp_path / "cache.sqlite3"
        with sqlite3.connect(path) as db:
            db.execute("PRAGMA user_version = 99")
        with pytest.raises(SchemaTooNewError, match="id cache schema version 99"):
            await IdCache.open(path, positive_ttl_s=60, negative_ttl_s=60)

    async def test_the_id_cache_keeps_its_rows_across_reopening(self, tmp_path: Path) -> None:
        """Reopening a migrated cache file runs no migration and keeps what was stored."""
        path = tmp_path / "cache.sqlite3"
        cache = await IdCache.open(path, positive_ttl_s=60, negative_ttl_s=60)
        await cache.put(["k"], {"imdb": "tt1"}, step="plex")
        await cache.close()

        again = await IdCache.open(path, positive_ttl_s=60, negative_ttl_s=60)
        try:
            entry = await again.get("k")
        finally:
            await again.close()
        assert entry is not None
        assert entry.value == {"imdb": "tt1"}
        assert version_and_tables(path)[0] == 1


class TestSplitScript:
    def test_semicolons_in_strings_comments_and_trigger_bodies_do_not_split(self) -> None:
        script = """
        -- a comment; with a semicolon
        CREATE TABLE t (x TEXT DEFAULT ';');
        CREATE TRIGGER t_after AFTER INSERT ON t
        BEGIN
            INSERT INTO t (x) SELECT 'a;b' WHERE 0;
            DELETE FROM t WHERE 0;
        END;
        -- trailing comment
        """
        statements = split_script(script)
        assert len(statements) == 2
        assert statements[0].endswith("DEFAULT ';');")
        assert statements[1].startswith("CREATE TRIGGER") and statements[1].endswith("END;")

    def test_an_unfinished_statement_is_an_error(self) -> None:
        with pytest.raises(ValueError, match="incomplete"):
            split_script("CREATE TABLE t (x);\nCREATE TABLE u (y)")
