"""OAuth token files: one per target account, mode 0600, replaced atomically.

The implicit profile's tokens are ``data_dir/tokens/{provider}.json`` (where they always
were); a household member's are ``data_dir/tokens/{profile}/{provider}.json`` (directories
0700), so one profile's refresh-token rotation never touches another's file.

A token file holds the provider's token response plus ``obtained_at`` (unix seconds), e.g.
Trakt's ``{"access_token", "refresh_token", "expires_in", "created_at", "scope",
"token_type"}``. Writing goes to a temporary 0600 file that is fsynced and renamed over the old
one, so a crash mid-write leaves either the old or the new token, never half of one. This
matters for Trakt, whose refresh tokens rotate: the new refresh token must be on disk before
the new access token is used.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from crosswatchd.models import DEFAULT_PROFILE

__all__ = ["Token", "TokenStore"]


@dataclass(frozen=True, slots=True)
class Token:
    """A stored token. ``expires_at`` is unix seconds, or ``None`` for tokens that never expire."""

    access_token: str
    refresh_token: str | None
    expires_at: float | None
    raw: dict[str, Any]

    def expires_within(self, seconds: float, now: float | None = None) -> bool:
        """True if the token expires in less than *seconds* from *now* (unix seconds)."""
        if self.expires_at is None:
            return False
        return self.expires_at - (time.time() if now is None else now) < seconds

    def __repr__(self) -> str:  # never print secrets
        refresh = "yes" if self.refresh_token else "no"
        return f"Token(expires_at={self.expires_at!r}, refresh={refresh})"


class TokenStore:
    """Load and save one target account's token file (*profile* on *provider*)."""

    def __init__(self, data_dir: Path, provider: str, profile: str = DEFAULT_PROFILE) -> None:
        self._root = Path(data_dir) / "tokens"
        folder = self._root if profile == DEFAULT_PROFILE else self._root / profile
        self.path = folder / f"{provider}.json"
        self._seen: tuple[int, int, int] | None = None
        self._cached: Token | None = None

    def load(self) -> Token | None:
        """The stored token, or ``None`` if there is none (or the file is unreadable).

        Cheap to call often: the file is parsed again only when it changed (``auth`` in
        another process replaces it, which a running daemon then picks up).
        """
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._seen = self._cached = None
            return None
        signature = (st.st_ino, st.st_mtime_ns, st.st_size)
        if signature != self._seen:
            self._cached = self._read()
            self._seen = signature
        return self._cached

    def _read(self) -> Token | None:
        try:
            data = orjson.loads(self.path.read_bytes())
        except (FileNotFoundError, orjson.JSONDecodeError):
            return None
        access = data.get("access_token")
        if not isinstance(access, str) or not access:
            return None
        expires_at: float | None = None
        if data.get("expires_in") is not None:
            base = data.get("created_at") or data.get("obtained_at") or time.time()
            expires_at = float(base) + float(data["expires_in"])
        return Token(access, data.get("refresh_token"), expires_at, data)

    def save(self, response: dict[str, Any]) -> Token:
        """Store a token response atomically with mode 0600; returns the stored token."""
        data = dict(response)
        data.setdefault("obtained_at", int(time.time()))
        for folder in dict.fromkeys((self._root, self.path.parent)):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(folder, 0o700)
        tmp = self.path.with_suffix(".json.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, orjson.dumps(data, option=orjson.OPT_INDENT_2))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        token = self.load()
        assert token is not None
        return token

    def revoke(self) -> None:
        """The service refused this token for good (refresh ``invalid_grant``, SIMKL 401):
        rename the file to ``{provider}.json.revoked`` so the daemon stops using it,
        ``status`` shows the target as not authorized, and ``crosswatchd auth`` starts anew."""
        with contextlib.suppress(FileNotFoundError):
            os.replace(self.path, self.path.with_name(self.path.name + ".revoked"))
        self._seen = self._cached = None
