"""Token files (SQLite mode): one per target account, mode 0600, replaced atomically.

The implicit profile's tokens are ``data_dir/tokens/{provider}.json`` (where they always
were); a household member's are ``data_dir/tokens/{profile}/{provider}.json`` (directories
0700), so one profile's refresh-token rotation never touches another's file.

Writing goes to a temporary 0600 file that is fsynced and renamed over the old one, so a crash
mid-write leaves either the old or the new token, never half of one. Writes and revocations of
one account hold an exclusive ``flock`` on ``.{provider}.lock`` beside the file, so a
conditional save (the daemon's refresh) and ``crosswatchd auth`` in another process never
interleave between the comparison and the rename.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from crosswatchd.errors import StaleTokenError
from crosswatchd.models import DEFAULT_PROFILE
from crosswatchd.tokens import Token, stamped

__all__ = ["TokenFile"]


class TokenFile:
    """The token file of one target account (*profile* on *provider*): a
    :class:`~crosswatchd.tokens.TokenStore`."""

    def __init__(self, data_dir: Path, provider: str, profile: str = DEFAULT_PROFILE) -> None:
        self.provider = provider
        self.profile = profile
        self._root = Path(data_dir) / "tokens"
        folder = self._root if profile == DEFAULT_PROFILE else self._root / profile
        self.path = folder / f"{provider}.json"
        self._seen: tuple[int, int, int] | None = None
        self._cached: Token | None = None

    @property
    def where(self) -> str:
        return str(self.path)

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

    async def current(self) -> Token | None:
        return self.load()

    def _read(self) -> Token | None:
        try:
            return Token.parse(orjson.loads(self.path.read_bytes()))
        except (FileNotFoundError, orjson.JSONDecodeError):
            return None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold this account's lock file (created 0600) for a write or a revocation."""
        for folder in dict.fromkeys((self._root, self.path.parent)):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(folder, 0o700)
        lock = self.path.with_name(f".{self.provider}.lock")
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def write(self, response: dict[str, Any]) -> Token:
        """Store a token answer at once, whatever is stored (a new authorization; tests
        seed data dirs with it). Synchronous; :meth:`save` is the store interface."""
        with self._locked():
            return self._write(stamped(response))

    def _write(self, data: dict[str, Any]) -> Token:
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

    async def save(self, response: dict[str, Any], *, replacing: Token | None = None) -> Token:
        """Store a token answer atomically with mode 0600 (see
        :meth:`~crosswatchd.tokens.TokenStore.save`)."""
        with self._locked():
            if replacing is not None:
                stored = self._read()
                if stored is None or not stored.same_grant(replacing):
                    raise StaleTokenError(self.provider, stored)
            return self._write(stamped(response))

    async def revoke(self, used: Token | None = None) -> bool:
        """Rename the file to ``{provider}.json.revoked`` (kept for the record) so the
        daemon stops using it; with *used*, only while it still holds *used*."""
        with self._locked():
            if used is not None and not used.same_grant(self._read()):
                return False
            try:
                os.replace(self.path, self.path.with_name(self.path.name + ".revoked"))
            except FileNotFoundError:
                return False
            finally:
                self._seen = self._cached = None
        return True
