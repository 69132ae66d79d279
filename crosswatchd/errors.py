"""The exception tree. Every error the daemon raises on purpose derives from one root::

    CrosswatchError
    ├── ConfigError              bad settings; the CLI prints one line naming the key, exit 2
    ├── PayloadError             malformed source input (webhook body); HTTP 400 with the reason
    ├── UnresolvedError          an item's ids could not be found; the delivery is parked
    ├── SourceUnavailableError   a source API (Tautulli, Plex) is unreachable or refused us
    ├── StorageError             a database file cannot be opened (corrupt, empty, too new,
    │                            disk full); the CLI prints one line naming the file, exit 2
    ├── StaleTokenError          a token save refused: the stored token is no longer the one
    │                            the refresh started from (another process saved a newer one)
    ├── LeaseLostError           this replica no longer holds a target account's lease: it
    │                            sends nothing more for it (the drainer stops)
    └── ProviderError            a delivery target (Trakt, SIMKL) answered badly
        ├── RetryableError       try again later (5xx, timeout, connection error, 429)
        ├── PermanentError       never retry this request (420, 423, other 4xx): dead
        └── AuthError            not authorized or refresh failed: wait durably for `auth`

Providers translate HTTP statuses into these, so the drainer never reads a status code.
"""

from __future__ import annotations

import enum

__all__ = [
    "AuthError",
    "ConfigError",
    "CrosswatchError",
    "ErrorScope",
    "LeaseLostError",
    "PayloadError",
    "PermanentError",
    "ProviderError",
    "RetryableError",
    "SourceUnavailableError",
    "StaleTokenError",
    "StorageError",
    "UnresolvedError",
]


class ErrorScope(enum.StrEnum):
    """What a :class:`PermanentError` refuses.

    ``ACCOUNT``: the whole target account (Trakt 420 account limit, 423 locked, 426 VIP only):
    every play would fail the same way. ``REQUEST``: this request's content (a 400/422): the
    other plays of a batch may be fine.
    """

    ACCOUNT = "account"
    REQUEST = "request"


class CrosswatchError(Exception):
    """Root of all deliberate crosswatchd errors."""


class ConfigError(CrosswatchError):
    """Invalid configuration. ``key`` names the offending setting (dotted, e.g. ``http.port``)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"config error: {key}: {message}")
        self.key = key
        self.message = message


class PayloadError(CrosswatchError):
    """Malformed or unusable source input; ``str(err)`` is a one-line reason for the sender."""


class UnresolvedError(CrosswatchError):
    """No usable ids for an item. ``step`` names the resolver step that failed last."""

    def __init__(self, reason: str, step: str = "ids") -> None:
        super().__init__(reason)
        self.reason = reason
        self.step = step


class SourceUnavailableError(CrosswatchError):
    """A source API (Tautulli, Plex server) could not be used: unreachable, bad key, HTML page."""


class StorageError(CrosswatchError):
    """A database file cannot be used. ``path`` is the file; ``str(err)`` one line that says
    what is wrong and what to do."""

    def __init__(self, path: object, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


class StaleTokenError(CrosswatchError):
    """A compare-and-set token save or revocation was refused: the stored token of
    *provider* is no longer the one the caller started from (``auth`` or another replica
    stored a newer one, or it was revoked). ``current`` is the token stored now (``None``:
    none), which the caller uses instead of its own."""

    def __init__(self, provider: str, current: object) -> None:
        super().__init__(f"{provider}: the stored token changed meanwhile; not overwritten")
        self.provider = provider
        self.current = current


class LeaseLostError(CrosswatchError):
    """This replica does not hold *account*'s lease (any more), or cannot confirm it for long
    enough to send (the database is unreachable): a write for the account must not leave.
    Raised by the account limiter's gate (:mod:`crosswatchd.replicas`) right before a write."""

    def __init__(self, account: object, message: str) -> None:
        super().__init__(f"{account}: {message}")
        self.account = account
        self.message = message


class ProviderError(CrosswatchError):
    """A delivery target failed. ``provider`` is ``"trakt"`` or ``"simkl"``."""

    def __init__(self, provider: str, message: str) -> None:
        super().__init__(f"{provider}: {message}")
        self.provider = provider
        self.message = message


class RetryableError(ProviderError):
    """Transient failure; ``retry_after_s`` is the server's wait (``Retry-After``), if given."""

    def __init__(self, provider: str, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(provider, message)
        self.retry_after_s = retry_after_s


class PermanentError(ProviderError):
    """The request will never succeed as sent.

    ``scope`` (:class:`ErrorScope`) says what is refused: ``ACCOUNT`` (every play would fail,
    the drainer marks them dead) or ``REQUEST`` (this request's content was rejected: the
    drainer retries the plays of a batch one by one and parks the one that is refused, with
    the reason). ``status`` is the HTTP status that said so, when one did.
    """

    def __init__(
        self,
        provider: str,
        message: str,
        *,
        scope: ErrorScope = ErrorScope.REQUEST,
        status: int | None = None,
    ) -> None:
        super().__init__(provider, message)
        self.scope = scope
        self.status = status


class AuthError(ProviderError):
    """No valid token (never authorized, refresh token revoked). Deliveries wait durably."""
