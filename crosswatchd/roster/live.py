"""The household of a running daemon: the config file's profiles and the roster's, reloaded
when the roster changes, and the webhook token of each profile's own URL.

The supervisor calls :meth:`LiveHousehold.refresh` every few seconds: one read of the roster's
revision, and a reload only when it moved. Listeners (the outbox's targets, the supervisor's
accounts) are told of each new household. A roster profile that clashes with the config file
(another replica's config may differ) is logged and the household kept as it was.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable

import structlog

from crosswatchd.config import Settings
from crosswatchd.errors import ConfigError
from crosswatchd.profiles import Household, Profile
from crosswatchd.roster.store import ProfileStore

__all__ = ["LiveHousehold", "profile_token"]

log = structlog.get_logger(__name__)

#: An unknown token reloads the roster at most this often (a profile added seconds ago on
#: another replica is found at once; a flood of wrong tokens costs one read a second).
_UNKNOWN_RELOAD_S = 1.0


def profile_token(secret: str, name: str) -> str:
    """The webhook token of config-file profile *name*: derived from the webhook *secret*
    (HMAC-SHA256), so it needs no storage and changes with the secret."""
    digest = hmac.new(secret.encode(), f"crosswatchd profile {name}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()).decode().rstrip("=")[:32]


def _key(token: str) -> bytes:
    # Looked up by a digest: the dict's timing says nothing about the token itself.
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


class LiveHousehold:
    """The current :class:`Household` (``current``) and each profile's webhook token.

    *store* is the roster (None: the config file's profiles only); *secret* the webhook
    secret the config profiles' tokens derive from; ``monotonic_s`` a monotonic clock.
    """

    def __init__(
        self,
        settings: Settings,
        secret: str,
        *,
        store: ProfileStore | None,
        household: Household,
        revision: int = 0,
        monotonic_s: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._secret = secret
        self._store = store
        self._revision = revision
        self._monotonic_s = monotonic_s
        self._reloaded_at = monotonic_s()
        self.listeners: list[Callable[[Household], None]] = []
        self.current = household
        self._tokens = self._token_map(household)

    @classmethod
    async def load(
        cls, settings: Settings, secret: str, store: ProfileStore | None
    ) -> LiveHousehold:
        """The household now. Raises :class:`ConfigError` for a profile in the config file
        and in the roster, and what the store raises."""
        base = Household.from_settings(settings)
        if store is None:
            return cls(settings, secret, store=None, household=base)
        revision = await store.revision()
        household = base.with_stored(await store.profiles(), settings.providers())
        return cls(settings, secret, store=store, household=household, revision=revision)

    def token_of(self, profile: Profile) -> str:
        """The token of *profile*'s own webhook URL."""
        return profile.webhook_token or profile_token(self._secret, profile.name)

    def _token_map(self, household: Household) -> dict[bytes, str]:
        return {_key(self.token_of(p)): p.name for p in household.profiles}

    async def refresh(self, *, force: bool = False) -> bool:
        """Reload the household if the roster changed (or *force*); True when it changed.
        Raises what the store raises; a clash with the config file is logged and ignored."""
        if self._store is None:
            return False
        revision = await self._store.revision()
        self._reloaded_at = self._monotonic_s()
        if revision == self._revision and not force:
            return False
        stored = await self._store.profiles()
        base = Household.from_settings(self._settings)
        try:
            household = base.with_stored(stored, self._settings.providers())
        except ConfigError as exc:
            log.error("profiles.conflict", error=str(exc), hint="the roster change is ignored")
            self._revision = revision
            return False
        self._revision = revision
        if household == self.current:
            return False
        before = set(self.current.names())
        self.current = household
        self._tokens = self._token_map(household)
        after = set(household.names())
        log.info(
            "profiles.changed",
            added=sorted(after - before),
            removed=sorted(before - after),
            profiles=len(after),
        )
        for listener in self.listeners:
            listener(household)
        return True

    async def for_token(self, token: str) -> Profile | None:
        """The profile whose own webhook URL has *token*, or None. An unknown token reloads
        the roster first (at most once a second): a profile just added on another replica is
        found at once."""
        name = self._tokens.get(_key(token))
        if name is None and self._monotonic_s() - self._reloaded_at >= _UNKNOWN_RELOAD_S:
            await self.refresh()
            name = self._tokens.get(_key(token))
        return None if name is None else self.current.get(name)
