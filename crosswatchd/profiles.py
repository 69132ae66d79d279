"""Households: whose play is it, and which target accounts does it go to.

A *profile* is one person of the household. Each has the source accounts that are theirs
(Plex ``Account.title`` or ``Account.id``, Tautulli usernames) and the providers they keep a
record on. A *target account* is one profile's account on one provider (``alex`` on Trakt):
the unit every delivery, dedupe check, rate limit, token and backoff belongs to.

Without ``[[profiles]]`` there is one implicit profile, ``default``, made of
``plex.accounts`` and ``tautulli.users``, with the rule the daemon always had: an empty
``plex.accounts`` accepts only the webhook owner's own plays (``"user": true``).

Profiles are also added at run time (``crosswatchd profile add``, kept in the roster:
:mod:`crosswatchd.roster`); :meth:`Household.load` gives the household of the config file
and the roster together (a name in both is a :class:`~crosswatchd.errors.ConfigError`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from crosswatchd.config import Settings
from crosswatchd.errors import ConfigError
from crosswatchd.models import DEFAULT_PROFILE

__all__ = [
    "DEFAULT_PROFILE",
    "Household",
    "Profile",
    "ProfileSource",
    "StoredProfile",
    "TargetAccount",
]


@dataclass(frozen=True, slots=True)
class TargetAccount:
    """One profile's account on one provider, e.g. ``TargetAccount("alex", "trakt")``."""

    profile: str
    provider: str

    def __str__(self) -> str:
        return f"{self.profile}/{self.provider}"


@dataclass(frozen=True, slots=True)
class Profile:
    """One household member.

    ``plex_accounts``/``tautulli_users`` are case-folded; ``owner_only`` is the implicit
    profile's rule for an empty ``plex.accounts`` (only events the webhook's own account
    triggered, ``"user": true``). ``targets`` are provider names, in a stable order.
    ``plex_token`` is the configured plex.tv account token of this member's watchlist
    (``plex.token`` for the implicit profile, ``plex_token`` for a ``[[profiles]]`` member;
    empty when none is configured; a token stored by ``crosswatchd auth plex`` wins, see
    :mod:`crosswatchd.sources.plextv`). ``stored`` marks a profile of the roster (added with
    ``crosswatchd profile add``), whose own webhook URL has the secret ``webhook_token`` (a
    config file profile's is derived from the webhook secret: :func:`crosswatchd.roster.
    profile_token`).
    """

    name: str
    plex_accounts: frozenset[str]
    tautulli_users: frozenset[str]
    targets: tuple[str, ...]
    owner_only: bool = False
    plex_token: str = field(default="", repr=False)  # a secret: never in a repr
    stored: bool = False
    webhook_token: str = field(default="", repr=False)  # a secret: never in a repr

    def accounts(self) -> list[TargetAccount]:
        """This profile's target accounts."""
        return [TargetAccount(self.name, provider) for provider in self.targets]


def _folded(names: Iterable[str]) -> frozenset[str]:
    return frozenset(name.strip().casefold() for name in names if name.strip())


@dataclass(frozen=True, slots=True)
class StoredProfile:
    """A profile of the roster, as ``crosswatchd profile add`` stored it: the accounts as
    typed, ``targets`` None for every configured provider, ``webhook_token`` the secret of
    its own webhook URL, ``created_at`` unix seconds."""

    name: str
    plex_accounts: tuple[str, ...] = ()
    tautulli_users: tuple[str, ...] = ()
    targets: tuple[str, ...] | None = None
    webhook_token: str = field(default="", repr=False)  # a secret: never in a repr
    created_at: float = 0.0


class ProfileSource(Protocol):
    """Where :meth:`Household.load` reads the roster's profiles (a
    :class:`~crosswatchd.storage.Storage`)."""

    async def stored_profiles(self) -> list[StoredProfile]:
        """The profiles added at run time, by name."""
        ...


@dataclass(frozen=True, slots=True)
class Household:
    """The profiles of one configuration and the routing of source accounts to them."""

    profiles: tuple[Profile, ...]
    explicit: bool

    @classmethod
    def implicit(
        cls,
        *,
        plex_accounts: Sequence[str] = (),
        tautulli_users: Sequence[str] = (),
        targets: Sequence[str] = (),
        plex_token: str = "",
    ) -> Household:
        """The household of a configuration without ``[[profiles]]``: one ``default``
        profile with these accounts (``plex.accounts`` empty: the owner's own plays only)."""
        profile = Profile(
            DEFAULT_PROFILE,
            _folded(plex_accounts),
            _folded(tautulli_users),
            tuple(targets),
            owner_only=not any(a.strip() for a in plex_accounts),
            plex_token=plex_token.strip(),
        )
        return cls((profile,), explicit=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> Household:
        """The household *settings* describe (validated by ``load_settings``)."""
        configured = tuple(settings.providers())
        if not settings.profiles:
            return cls.implicit(
                plex_accounts=settings.plex.accounts,
                tautulli_users=settings.tautulli.users,
                targets=configured,
                plex_token=settings.plex.token,
            )
        profiles = tuple(
            Profile(
                p.name,
                _folded(p.plex_accounts),
                _folded(p.tautulli_users),
                tuple(t for t in configured if p.targets is None or t in p.targets),
                plex_token=p.plex_token.strip(),
            )
            for p in settings.profiles
        )
        return cls(profiles, explicit=True)

    @classmethod
    async def load(cls, settings: Settings, storage: ProfileSource) -> Household:
        """The household of *settings* and of the roster in *storage* together: the config
        file's profiles first, then the roster's. Raises :class:`ConfigError` (key
        ``profiles``) naming a profile defined in both, and what the storage raises."""
        household = cls.from_settings(settings)
        return household.with_stored(await storage.stored_profiles(), settings.providers())

    def with_stored(self, stored: Sequence[StoredProfile], configured: Sequence[str]) -> Household:
        """This household with the roster's *stored* profiles after its own; each goes to
        the providers of *configured* it names (all of them when it names none). Raises
        :class:`ConfigError` (key ``profiles``) for a name this household already has."""
        names = set(self.names())
        added: list[Profile] = []
        for entry in stored:
            if entry.name in names:
                raise ConfigError(
                    "profiles",
                    f"profile {entry.name!r} is defined in the config file and in the database;"
                    f" keep one (`crosswatchd profile remove {entry.name}`, or remove it from"
                    " the config file)",
                )
            added.append(
                Profile(
                    entry.name,
                    _folded(entry.plex_accounts),
                    _folded(entry.tautulli_users),
                    tuple(t for t in configured if entry.targets is None or t in entry.targets),
                    stored=True,
                    webhook_token=entry.webhook_token,
                )
            )
        if not added:
            return self
        return Household((*self.profiles, *added), explicit=self.explicit)

    def alone(self, name: str) -> Household | None:
        """The household of profile *name* alone, as its own webhook URL routes: its
        ``plex_accounts``, or the webhook owner's own plays (``"user": true``) when it lists
        none. None for an unknown name."""
        profile = self.get(name)
        if profile is None:
            return None
        return Household((replace(profile, owner_only=not profile.plex_accounts),), explicit=True)

    def names(self) -> list[str]:
        """Profile names, in configuration order."""
        return [p.name for p in self.profiles]

    def get(self, name: str) -> Profile | None:
        """The profile called *name*, or None."""
        return next((p for p in self.profiles if p.name == name), None)

    def accounts(self) -> list[TargetAccount]:
        """Every target account of every profile."""
        return [account for profile in self.profiles for account in profile.accounts()]

    def targets(self) -> dict[str, list[str]]:
        """The outbox's fan-out: each profile's providers, by profile name."""
        return {profile.name: list(profile.targets) for profile in self.profiles}

    def for_plex(self, title: str | None, account_id: str | None, *, user: bool) -> Profile | None:
        """The profile a Plex event belongs to, by ``Account.title`` (case-insensitive) or
        ``Account.id`` (as a string); *user* is the payload's ``user`` flag, which alone
        admits the implicit profile's owner when ``plex.accounts`` is empty."""
        candidates = {name for name in (title, account_id) if name}
        folded = {name.strip().casefold() for name in candidates}
        # A profile that names the account wins over the implicit profile's owner rule (the
        # owner of the server may be a member added to the roster by name).
        for profile in self.profiles:
            if not profile.owner_only and folded & profile.plex_accounts:
                return profile
        if user:
            return next((p for p in self.profiles if p.owner_only), None)
        return None

    def for_tautulli(self, username: str) -> Profile | None:
        """The profile a Tautulli username belongs to (case-insensitive), or None."""
        folded = username.strip().casefold()
        return next((p for p in self.profiles if folded in p.tautulli_users), None)

    def route_plex(
        self, title: str | None, account_id: str | None, *, user: bool
    ) -> tuple[Profile | None, str]:
        """:meth:`for_plex`, with the reason a user reads when no profile takes the event."""
        profile = self.for_plex(title, account_id, user=user)
        if profile is not None:
            return profile, ""
        shown = repr(title) if title is not None else "(no Account.title)"
        if self.explicit and len(self.profiles) == 1 and self.profiles[0].owner_only:
            return None, (
                f"plex account {shown} is not this webhook's own user (user=false) and"
                f" profile {self.profiles[0].name} lists no plex accounts"
            )
        if self.explicit:
            return None, f"plex account {shown} is in no profile (profiles: {self._listing()})"
        if self.profiles[0].owner_only:
            return None, (
                f"plex account {shown} is not this webhook's own user (user=false) and"
                " plex.accounts is empty"
            )
        return None, f"plex account {shown} is not in plex.accounts"

    def route_tautulli(self, username: str) -> tuple[Profile | None, str]:
        """:meth:`for_tautulli`, with the reason a user reads when no profile takes it."""
        profile = self.for_tautulli(username)
        if profile is not None:
            return profile, ""
        if self.explicit:
            return None, (
                f"tautulli user {username!r} is in no profile (profiles: {self._listing()})"
            )
        if not self.profiles[0].tautulli_users:
            return None, "tautulli.users is empty: add this username to accept its plays"
        return None, f"tautulli user {username!r} is not in tautulli.users"

    def _listing(self) -> str:
        return ", ".join(self.names())

    def tautulli_users(self) -> list[str]:
        """Every Tautulli username some profile accepts (case-folded)."""
        return sorted({u for p in self.profiles for u in p.tautulli_users})

    def pick(self, name: str | None) -> Sequence[Profile]:
        """The profiles a command works on: *name*'s alone, or all. Raises ``KeyError`` for an
        unknown name."""
        if name is None:
            return self.profiles
        profile = self.get(name)
        if profile is None:
            raise KeyError(name)
        return (profile,)
