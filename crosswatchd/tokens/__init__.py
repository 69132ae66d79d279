"""OAuth tokens, one per target account (*profile* on *provider*), behind one interface.

:class:`TokenStore` is what providers, ``auth`` and ``status`` use; where a token lives depends
on the storage (:class:`crosswatchd.storage.Storage` hands the right one out):

- SQLite mode (one household): :class:`~crosswatchd.tokens.files.TokenFile`, a 0600 file per
  account in ``data_dir/tokens/`` (``tokens/{provider}.json`` for the implicit profile,
  ``tokens/{profile}/{provider}.json`` for a household member), replaced atomically; a revoked
  token becomes ``{provider}.json.revoked``.
- PostgreSQL mode (replicas): :class:`~crosswatchd.tokens.shared.DatabaseTokens`, a row of the
  ``tokens`` table shared by every replica, so ``crosswatchd auth trakt`` run with any
  replica's config authorizes the account for all of them.

A stored token is the provider's token answer plus ``obtained_at`` (unix seconds), e.g.
Trakt's ``{"access_token", "refresh_token", "expires_in", "created_at", "scope",
"token_type"}``.

Reads (:meth:`TokenStore.load`) are synchronous and cheap (a file stat, or the process's
in-memory copy of the table, kept fresh by ``LISTEN``/``NOTIFY`` and a periodic re-read);
:meth:`TokenStore.current` reads the storage itself. Writes are awaited and durable before
they return: Trakt's refresh tokens rotate, so the new refresh token must be stored before
the new access token is used. A save or revocation may be *conditional*
(``replacing=``/``used=``): it only applies while the stored token is still the one the caller
started from, so a refresher that lost the race (a replica whose lease moved on, ``auth`` run
meanwhile) can never clobber a newer token (:class:`~crosswatchd.errors.StaleTokenError`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

from crosswatchd.errors import StaleTokenError

__all__ = ["StaleTokenError", "Token", "TokenStore", "stamped"]


@dataclass(frozen=True, slots=True)
class Token:
    """A stored token. ``expires_at`` is unix seconds, or ``None`` for tokens that never expire."""

    access_token: str
    refresh_token: str | None
    expires_at: float | None
    raw: dict[str, Any]

    @classmethod
    def parse(cls, data: object) -> Token | None:
        """The token of a stored answer (``None`` when it has no access token)."""
        if not isinstance(data, dict):
            return None
        access = data.get("access_token")
        if not isinstance(access, str) or not access:
            return None
        expires_at: float | None = None
        if data.get("expires_in") is not None:
            base = data.get("created_at") or data.get("obtained_at") or time.time()
            expires_at = float(base) + float(data["expires_in"])
        refresh = data.get("refresh_token")
        return cls(access, refresh if isinstance(refresh, str) else None, expires_at, data)

    def expires_within(self, seconds: float, now: float | None = None) -> bool:
        """True if the token expires in less than *seconds* from *now* (unix seconds)."""
        if self.expires_at is None:
            return False
        return self.expires_at - (time.time() if now is None else now) < seconds

    def same_grant(self, other: Token | None) -> bool:
        """True when *other* is this token (same access and refresh token): what a
        conditional save or revocation compares."""
        return (
            other is not None
            and other.access_token == self.access_token
            and (other.refresh_token or "") == (self.refresh_token or "")
        )

    def __repr__(self) -> str:  # never print secrets
        refresh = "yes" if self.refresh_token else "no"
        return f"Token(expires_at={self.expires_at!r}, refresh={refresh})"


def stamped(response: dict[str, Any]) -> dict[str, Any]:
    """A token answer as it is stored: a copy with ``obtained_at`` (unix seconds) added."""
    data = dict(response)
    data.setdefault("obtained_at", int(time.time()))
    return data


class TokenStore(Protocol):
    """The token of one target account (``profile`` on ``provider``)."""

    provider: str
    profile: str

    @property
    def where(self) -> str:
        """Where the token is kept, for people (a file, or the database)."""
        ...

    def load(self) -> Token | None:
        """The stored token (``None``: none, or revoked). Cheap enough to call per request."""
        ...

    async def current(self) -> Token | None:
        """The stored token read from the storage itself (refreshing :meth:`load`'s copy)."""
        ...

    async def save(self, response: dict[str, Any], *, replacing: Token | None = None) -> Token:
        """Store a token answer durably and return the stored :class:`Token`.

        With *replacing*, only while the stored token is still *replacing* (compare and
        set): otherwise nothing is written and :class:`StaleTokenError` carries the token
        stored now. Without, the answer replaces whatever is stored (a new authorization).
        """
        ...

    async def revoke(self, used: Token | None = None) -> bool:
        """The service refused the token for good: stop using it (``status`` shows the
        account not authorized, ``crosswatchd auth`` starts anew). With *used*, only while
        the stored token is still *used*. True when a token was revoked."""
        ...
