"""Tokens in PostgreSQL (replicas): the ``tokens`` table, shared by every replica and CLI
command on the database, and each process's in-memory copy of it.

:class:`TokenTable` holds every live token of the database in memory, so
:meth:`DatabaseTokens.load` stays a dictionary lookup (providers call it per request). The copy
is kept fresh three ways: a process's own writes update it at once; every change sends a
``NOTIFY crosswatchd_tokens`` (a trigger, at commit) naming the account, which a listening
connection turns into a re-read of that row; and the whole table is read again every
``resync_s`` seconds, and after the listening connection is re-established, so a notification
lost with a connection costs at most that long. :meth:`DatabaseTokens.current` reads the row
itself: a refresh compares with what is stored *now*, never with the copy.

A save with ``replacing=`` is one ``UPDATE … WHERE`` the stored access and refresh tokens are
still the ones the refresh started from: atomic, so of two replicas refreshing the same account
(a lease that moved during a refresh) only one can ever store its answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import orjson
import structlog

from crosswatchd import sqlfiles
from crosswatchd.db import PostgresDatabase, storage_errors
from crosswatchd.errors import StaleTokenError
from crosswatchd.tokens import Token, stamped

__all__ = ["CHANNEL", "PG_MIGRATIONS", "DatabaseTokens", "TokenTable"]

log = structlog.get_logger(__name__)

#: The ``NOTIFY`` channel of token changes (payload: ``["profile", "provider"]``).
CHANNEL: Final = "crosswatchd_tokens"


@dataclass(frozen=True, slots=True)
class _Queries:
    load_all: str
    load_some: str
    save: str
    save_if: str
    revoke: str
    revoke_if: str
    copy: str


_PACKAGE: Final = "crosswatchd.tokens"
Q: Final = sqlfiles.queries(_PACKAGE, "queries.pg.sql", _Queries)
#: The ``tokens`` store's migrations (``schema_versions.store = 'tokens'``).
PG_MIGRATIONS: Final = sqlfiles.migrations(_PACKAGE, "schema.pg.sql")

Account = tuple[str, str]  # (profile, provider)


class TokenTable:
    """Every live token of the database, in memory. :meth:`start` loads it and follows
    changes until :meth:`close`; :meth:`store` hands out one account's
    :class:`DatabaseTokens`."""

    def __init__(
        self,
        db: PostgresDatabase,
        *,
        resync_s: float = 30.0,
        retry_s: float = 2.0,
        unix_s: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.resync_s = resync_s
        self.retry_s = retry_s
        self.unix_s = unix_s
        self._rows: dict[Account, Token] = {}
        self._changed: set[Account] = set()
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def store(self, provider: str, profile: str) -> DatabaseTokens:
        """The token store of *profile* on *provider*."""
        return DatabaseTokens(self, provider, profile)

    def get(self, account: Account) -> Token | None:
        return self._rows.get(account)

    def put(self, account: Account, token: Token | None) -> None:
        if token is None:
            self._rows.pop(account, None)
        else:
            self._rows[account] = token

    # -- following the database --------------------------------------------------------------

    async def reload(self) -> None:
        """Read every live token again."""
        rows = await self.db.fetch(Q.load_all)
        fresh: dict[Account, Token] = {}
        for row in rows:
            token = Token.parse(orjson.loads(row["token"]))
            if token is not None:
                fresh[(str(row["profile"]), str(row["provider"]))] = token
        self._rows = fresh

    async def reload_accounts(self, accounts: set[Account]) -> None:
        """Read the rows of *accounts* again (a revoked or deleted one leaves the copy)."""
        if not accounts:
            return
        rows = await self.db.fetch(
            Q.load_some, {"accounts": orjson.dumps(sorted(accounts)).decode()}
        )
        found: set[Account] = set()
        for row in rows:
            account = (str(row["profile"]), str(row["provider"]))
            found.add(account)
            live = row["revoked_at"] is None
            self.put(account, Token.parse(orjson.loads(row["token"])) if live else None)
        for account in accounts - found:
            self.put(account, None)

    async def start(self) -> None:
        """Load the table, then follow its changes in a task (until :meth:`close`)."""
        await self.reload()
        self._task = asyncio.create_task(self._follow(), name="tokens-follow")

    async def close(self) -> None:
        """Stop following (releases the listening connection)."""
        self._stop.set()
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            profile, provider = orjson.loads(payload)
        except (orjson.JSONDecodeError, ValueError, TypeError):
            return
        self._changed.add((str(profile), str(provider)))
        self._wake.set()

    async def _follow(self) -> None:
        """Listen on :data:`CHANNEL` on a connection of its own; re-read what changes, and
        everything every ``resync_s``. A lost connection is re-established after
        ``retry_s`` (everything is read again then)."""
        failures: tuple[type[BaseException], ...] = (*storage_errors(), TimeoutError)
        while not self._stop.is_set():
            try:
                async with self.db.pool.acquire() as conn:
                    await conn.add_listener(CHANNEL, self._notified)
                    try:
                        await self.reload()
                        await self._serve(conn)
                    finally:
                        if not conn.is_closed():
                            with contextlib.suppress(*storage_errors()):
                                await conn.remove_listener(CHANNEL, self._notified)
            except failures as exc:
                log.warning("tokens.follow_failed", error=f"{type(exc).__name__}: {exc}")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.retry_s)

    async def _serve(self, conn: Any) -> None:
        loop = asyncio.get_running_loop()
        resync_at = loop.time() + self.resync_s
        while not self._stop.is_set() and not conn.is_closed():
            # Wake at least every second to notice a closed connection.
            wait_s = max(0.0, min(1.0, resync_at - loop.time()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait_s)
            self._wake.clear()
            if self._changed:
                changed, self._changed = self._changed, set()
                await self.reload_accounts(changed)
            if loop.time() >= resync_at:
                await self.reload()
                resync_at = loop.time() + self.resync_s


class DatabaseTokens:
    """The token of one target account in the ``tokens`` table: a
    :class:`~crosswatchd.tokens.TokenStore`."""

    def __init__(self, table: TokenTable, provider: str, profile: str) -> None:
        self.provider = provider
        self.profile = profile
        self._table = table
        self._account: Account = (profile, provider)

    @property
    def where(self) -> str:
        return f"the database (tokens {self.profile}/{self.provider})"

    def _params(self, **more: Any) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "provider": self.provider,
            "now": self._table.unix_s(),
            **more,
        }

    def load(self) -> Token | None:
        return self._table.get(self._account)

    async def current(self) -> Token | None:
        await self._table.reload_accounts({self._account})
        return self.load()

    async def save(self, response: dict[str, Any], *, replacing: Token | None = None) -> Token:
        data = stamped(response)
        token = Token.parse(data)
        if token is None:
            raise ValueError("a token answer without an access token")
        text = orjson.dumps(data).decode()
        if replacing is None:
            await self._table.db.execute(Q.save, self._params(token=text))
        else:
            changed = await self._table.db.execute(
                Q.save_if,
                self._params(
                    token=text,
                    access=replacing.access_token,
                    refresh=replacing.refresh_token or "",
                ),
            )
            if not changed:
                raise StaleTokenError(self.provider, await self.current())
        self._table.put(self._account, token)
        return token

    async def revoke(self, used: Token | None = None) -> bool:
        if used is None:
            changed = await self._table.db.execute(Q.revoke, self._params())
        else:
            changed = await self._table.db.execute(
                Q.revoke_if,
                self._params(access=used.access_token, refresh=used.refresh_token or ""),
            )
        await self.current()
        return changed > 0
