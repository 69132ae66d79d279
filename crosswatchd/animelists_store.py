"""Fetch, store and re-validate the Anime-Lists file; hand out the parsed mapping.

The list is ~3.5 MB and changes about weekly (ref §2, "Size and shape", "How often it
changes"), so it is downloaded at most once per change:

- Files, in the directory given: ``anime-list-master.xml`` (the body as served) and
  ``anime-list-master.json`` (the sidecar): ``{"url", "etag", "last_modified", "fetched_at",
  "checked_at", "sha256", "size"}`` (times in unix seconds). Both are written to a 0600
  temporary file, fsynced and renamed over the old one, the body first; a sidecar whose
  ``sha256`` or ``url`` does not match makes the stored copy usable but due for an
  unconditional fetch.
- Start: the stored copy is parsed (in a thread) and used at once; it is re-validated when
  ``checked_at + refresh_s`` has passed.
- Re-validation is a conditional GET (``If-None-Match`` / ``If-Modified-Since`` from the
  sidecar; ref §2 notes 304 support is unconfirmed, so a full 200 is accepted too). 304 =
  keep; a 200 with the stored ``sha256`` = keep (no re-parse); any other 200 is parsed and,
  if it parses, replaces the stored copy and bumps :attr:`AnimeListStore.generation`.
- Failures (5xx, other statuses, timeout, connection error, oversized or unparsable body)
  keep whatever is loaded and retry after ``retry_s``: every ``retry_s`` while no copy is
  loaded (plays wait for it), doubling per consecutive failure up to ``refresh_s`` while a
  copy is in use. A parse failure logs one ``anime.list.parse_failed`` line.
- ``anime-list-master.status.json`` records the last attempt (``{"url", "at", "result",
  "error"}``; ``result`` a :class:`RefreshResult` value) for ``crosswatchd status``, which
  reads both files with :func:`list_state` (another process: nothing is locked).
- Until a copy is loaded, :meth:`AnimeListStore.episode` / :meth:`~AnimeListStore.film`
  answer :class:`ListUnavailable` (retryable: keep the play pending, do not park it).

Log events: ``anime.list.loaded`` (source ``disk``/``network``, rows, generation),
``anime.list.unchanged``, ``anime.list.fetch_failed``, ``anime.list.parse_failed``,
``anime.list.stored_unreadable``, ``anime.list.store_failed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import aiohttp
import orjson
import structlog

from crosswatchd import __version__
from crosswatchd.animelists import (
    DEFAULT_MAPPING_URL,
    REASON_MARK,
    AnimeListError,
    AnimeMapping,
    MappedEpisode,
    MappedFilm,
    Unmapped,
    UnmappedKind,
    parse_anime_list,
)
from crosswatchd.models import Ids

__all__ = [
    "DEFAULT_USER_AGENT",
    "AnimeListStore",
    "ListUnavailable",
    "RefreshResult",
    "list_state",
]

DEFAULT_USER_AGENT: Final = f"crosswatchd/{__version__}"
LIST_FILE: Final = "anime-list-master.xml"
META_FILE: Final = "anime-list-master.json"
STATUS_FILE: Final = "anime-list-master.status.json"
#: A response larger than this is refused (the real file is 3.5 MB).
MAX_BYTES: Final = 64 * 1024 * 1024

_VALIDATORS: Final = ("ETag", "Last-Modified")

log = structlog.get_logger(__name__)


class RefreshResult(enum.StrEnum):
    """What one :meth:`AnimeListStore.refresh` did."""

    DISABLED = "disabled"  # mapping_url is ""
    NOT_DUE = "not-due"  # refresh_if_due only: nothing to do yet
    IN_PROGRESS = "in-progress"  # refresh_if_due only: another task is loading or fetching
    UPDATED = "updated"  # a new list is loaded (generation bumped)
    UNCHANGED = "unchanged"  # 304, or a 200 with the stored content
    FAILED = "failed"  # network / status / size failure; the loaded list (if any) is kept
    REJECTED = "rejected"  # a 200 that does not parse; the loaded list (if any) is kept


@dataclass(frozen=True, slots=True)
class ListUnavailable:
    """No list is loaded yet (first fetch failed, or not tried): a retryable answer. The
    caller keeps the play pending; ``retry_in_s`` is when the store tries again."""

    reason: str
    retry_in_s: float


@dataclass(slots=True)
class _Meta:
    url: str
    etag: str | None = None
    last_modified: str | None = None
    fetched_at: float = 0.0
    checked_at: float = 0.0
    sha256: str = ""
    size: int = 0


class _FetchFailed(Exception):
    pass


class AnimeListStore:
    """Owns the Anime-Lists file: one per daemon, shared by the resolvers.

    Resolvers call :meth:`episode` / :meth:`film` (synchronous, microseconds, never wait);
    :meth:`run` (a daemon task) loads and refreshes the list.

    *session* is the daemon's :class:`aiohttp.ClientSession`; *directory* is created (0700) if
    missing; *unix_s* returns unix seconds; *refresh_s* is how old a validated copy may get
    before it is re-validated; *retry_s* is the first wait after a failure; *timeout_s* bounds
    one request. ``url=""`` switches the mapping off: nothing is fetched and lookups answer
    ``Unmapped(kind=OFF)``. *on_loaded* is called with the new generation each time a list
    is loaded (from disk at start, or downloaded).
    """

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        directory: Path,
        url: str = DEFAULT_MAPPING_URL,
        unix_s: Callable[[], float] = time.time,
        refresh_s: float = 86400.0,
        retry_s: float = 300.0,
        timeout_s: float = 60.0,
        user_agent: str = DEFAULT_USER_AGENT,
        max_bytes: int = MAX_BYTES,
        on_loaded: Callable[[int], None] | None = None,
    ) -> None:
        self._session = session
        self.directory = Path(directory)
        self.url = url
        self._unix_s = unix_s
        self.refresh_s = refresh_s
        self.retry_s = retry_s
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._user_agent = user_agent
        self._max_bytes = max_bytes
        self._on_loaded = on_loaded
        self._mapping: AnimeMapping | None = None
        self._meta: _Meta | None = None
        self._started = False
        self._next_attempt_at = 0.0
        self._failures = 0
        self._lock = asyncio.Lock()
        self.generation = 0
        self.last_error: str | None = None
        self._log = log.bind(url=url)

    @property
    def enabled(self) -> bool:
        return bool(self.url)

    @property
    def list_path(self) -> Path:
        return self.directory / LIST_FILE

    @property
    def meta_path(self) -> Path:
        return self.directory / META_FILE

    @property
    def status_path(self) -> Path:
        return self.directory / STATUS_FILE

    @property
    def fetched_at(self) -> float | None:
        """Unix seconds of the loaded list's download (``None``: none loaded, or its sidecar
        was unusable)."""
        meta = self._meta if self._mapping is not None else None
        return meta.fetched_at or None if meta else None

    @property
    def checked_at(self) -> float | None:
        """Unix seconds of the last successful validation (200 or 304) of the loaded list."""
        meta = self._meta if self._mapping is not None else None
        return meta.checked_at or None if meta else None

    def current(self) -> AnimeMapping | None:
        """The loaded mapping, or ``None`` before the first successful load."""
        return self._mapping

    def next_due_in(self) -> float:
        """Seconds until the next (re-)validation attempt; 0 when due now."""
        return max(0.0, self._next_attempt_at - self._unix_s())

    # -- lookups -------------------------------------------------------------------------------

    def episode(
        self, anidb_id: str, season: int, episode: int, *, tvdb_numbered: bool = False
    ) -> MappedEpisode | Unmapped | ListUnavailable:
        """:meth:`AnimeMapping.episode` on the loaded list, or why there is none."""
        mapping = self._mapping
        if mapping is None:
            return self._no_list(anidb_id)
        return mapping.episode(anidb_id, season, episode, tvdb_numbered=tvdb_numbered)

    def series(self, anidb_id: str) -> Ids | Unmapped | ListUnavailable:
        """:meth:`AnimeMapping.series` on the loaded list, or why there is none."""
        mapping = self._mapping
        if mapping is None:
            return self._no_list(anidb_id)
        return mapping.series(anidb_id)

    def film(self, anidb_id: str) -> MappedFilm | MappedEpisode | Unmapped | ListUnavailable:
        """:meth:`AnimeMapping.film` on the loaded list, or why there is none."""
        mapping = self._mapping
        if mapping is None:
            return self._no_list(anidb_id)
        return mapping.film(anidb_id)

    def _no_list(self, anidb_id: str) -> Unmapped | ListUnavailable:
        if not self.enabled:
            reason = f"AniDB {anidb_id}: the {REASON_MARK} mapping is off (mapping_url is empty)"
            return Unmapped(str(anidb_id), UnmappedKind.OFF, reason)
        detail = f" ({self.last_error})" if self.last_error else ""
        return ListUnavailable(
            f"the {REASON_MARK} mapping is not available yet{detail}", self.next_due_in()
        )

    # -- loading -------------------------------------------------------------------------------

    async def ensure(self) -> AnimeMapping | None:
        """Load the stored copy (first call) and re-validate it if due; the current mapping.

        Never waits for another task's load or fetch (that may take ``timeout_s``): it then
        returns what is loaded now. Never raises for network or file problems (they are
        logged and retried)."""
        await self.refresh_if_due()
        return self._mapping

    async def refresh_if_due(self) -> RefreshResult:
        """Like :meth:`refresh`, but only once the next attempt is due, and without waiting
        for a load or fetch already under way (``IN_PROGRESS``)."""
        if not self.enabled:
            return RefreshResult.DISABLED
        if self._lock.locked():
            return RefreshResult.IN_PROGRESS
        async with self._lock:
            await self._start()
            if self._unix_s() < self._next_attempt_at:
                return RefreshResult.NOT_DUE
            return await self._attempt()

    async def refresh(self) -> RefreshResult:
        """(Re-)validate now: a conditional GET when a copy is stored, else a plain GET."""
        if not self.enabled:
            return RefreshResult.DISABLED
        async with self._lock:
            await self._start()
            return await self._attempt()

    async def _attempt(self) -> RefreshResult:
        """One refresh, its outcome recorded in :data:`STATUS_FILE` (for ``status``)."""
        at = self._unix_s()
        result = await self._refresh()
        status = {"url": self.url, "at": at, "result": str(result), "error": self.last_error}
        try:
            await asyncio.to_thread(
                self._write_atomic,
                self.status_path,
                orjson.dumps(status, option=orjson.OPT_INDENT_2),
            )
        except OSError as exc:
            self._log.error("anime.list.store_failed", error=str(exc), path=str(self.directory))
        return result

    async def run(
        self,
        stop: asyncio.Event,
        on_updated: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        """Keep the list fresh until *stop* is set (the daemon's background task).

        *on_updated* is awaited after each refresh that brought a new list from the network
        (not after loading the stored copy at start); its failure is logged, never fatal.
        """
        if not self.enabled:
            return
        while not stop.is_set():
            try:
                result = await self.refresh_if_due()
            except Exception:  # defensive: a bug must not end the loop for good
                self._log.exception("anime.list.crashed")
                self._schedule_failure()
            else:
                if result is RefreshResult.UPDATED and on_updated is not None:
                    try:
                        await on_updated()
                    except Exception:
                        self._log.exception("anime.list.on_updated_failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=max(self.next_due_in(), 1.0))

    async def _start(self) -> None:
        if self._started:
            return
        self._started = True
        meta = self._read_meta()
        try:
            body = await asyncio.to_thread(self.list_path.read_bytes)
        except FileNotFoundError:
            return
        except OSError as exc:
            self._log.warning("anime.list.stored_unreadable", error=str(exc))
            return
        try:
            digest, mapping = await asyncio.to_thread(_digest_and_parse, body)
        except AnimeListError as exc:
            self._log.warning("anime.list.stored_unreadable", error=str(exc))
            return
        if meta is None or meta.url != self.url or meta.sha256 != digest:
            # Usable, but we cannot vouch for its validators: fetch unconditionally now.
            meta = _Meta(url=self.url, sha256=digest, size=len(body))
        else:  # (a checked_at in the future, from a clock set wrong, counts as now)
            self._next_attempt_at = min(meta.checked_at, self._unix_s()) + self.refresh_s
        self._meta = meta
        self._install(mapping, source="disk")

    def _read_meta(self) -> _Meta | None:
        try:
            raw = orjson.loads(self.meta_path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return None
        if not isinstance(raw, dict):
            return None
        try:
            return _Meta(
                url=str(raw["url"]),
                etag=_str_or_none(raw.get("etag")),
                last_modified=_str_or_none(raw.get("last_modified")),
                fetched_at=float(raw.get("fetched_at") or 0),
                checked_at=float(raw.get("checked_at") or 0),
                sha256=str(raw.get("sha256") or ""),
                size=int(raw.get("size") or 0),
            )
        except (KeyError, TypeError, ValueError):
            return None

    async def _refresh(self) -> RefreshResult:
        now = self._unix_s()
        meta = self._meta if self._mapping is not None else None
        try:
            status, body, headers = await self._get(meta)
        except _FetchFailed as exc:
            self._fail(str(exc))
            return RefreshResult.FAILED
        if status == 304:
            assert meta is not None  # validators are only sent with a loaded copy
            meta.checked_at = now
            meta.etag = headers.get("ETag") or meta.etag
            meta.last_modified = headers.get("Last-Modified") or meta.last_modified
            return self._unchanged(meta, status)
        digest = await asyncio.to_thread(_sha256, body)
        etag, modified = headers.get("ETag"), headers.get("Last-Modified")
        if meta is not None and digest == meta.sha256:
            meta.checked_at, meta.etag, meta.last_modified = now, etag, modified
            return self._unchanged(meta, status)
        try:
            mapping = await asyncio.to_thread(parse_anime_list, body)
        except AnimeListError as exc:
            kept = "stored copy" if self._mapping is not None else "none"
            self._log.error("anime.list.parse_failed", error=str(exc), bytes=len(body), kept=kept)
            self._schedule_failure(f"the downloaded list does not parse: {exc}")
            return RefreshResult.REJECTED
        new = _Meta(self.url, etag, modified, now, now, digest, len(body))
        try:
            await asyncio.to_thread(self._write, body, new)
        except OSError as exc:  # still use it; a restart downloads it again
            self._log.error("anime.list.store_failed", error=str(exc), path=str(self.directory))
        self._meta = new
        self._succeeded(now)
        self._install(mapping, source="network")
        return RefreshResult.UPDATED

    def _unchanged(self, meta: _Meta, status: int) -> RefreshResult:
        try:
            self._write_atomic(self.meta_path, _dump_meta(meta))
        except OSError as exc:
            self._log.error("anime.list.store_failed", error=str(exc), path=str(self.directory))
        self._succeeded(meta.checked_at)
        self._log.debug("anime.list.unchanged", status=status)
        return RefreshResult.UNCHANGED

    async def _get(self, meta: _Meta | None) -> tuple[int, bytes, dict[str, str]]:
        headers = {"User-Agent": self._user_agent}
        if meta is not None and meta.url == self.url:
            if meta.etag:
                headers["If-None-Match"] = meta.etag
            if meta.last_modified:
                headers["If-Modified-Since"] = meta.last_modified
        try:
            async with self._session.get(self.url, headers=headers, timeout=self._timeout) as resp:
                answer = {
                    k: resp.headers[k] for k in ("ETag", "Last-Modified") if k in resp.headers
                }
                if resp.status == 304 and meta is not None:
                    return 304, b"", answer
                if resp.status != 200:
                    raise _FetchFailed(f"HTTP {resp.status}")
                if (resp.content_length or 0) > self._max_bytes:
                    raise _FetchFailed(f"response of {resp.content_length} bytes is too large")
                chunks: list[bytes] = []
                size = 0
                async for chunk in resp.content.iter_chunked(1 << 16):
                    size += len(chunk)
                    if size > self._max_bytes:
                        raise _FetchFailed(f"response larger than {self._max_bytes} bytes")
                    chunks.append(chunk)
                return 200, b"".join(chunks), answer
        except TimeoutError:
            raise _FetchFailed("timed out") from None
        except aiohttp.ClientError as exc:
            raise _FetchFailed(f"{type(exc).__name__}: {exc}") from None

    # -- bookkeeping ---------------------------------------------------------------------------

    def _install(self, mapping: AnimeMapping, *, source: str) -> None:
        self._mapping = mapping
        self.generation += 1
        self._log.info(
            "anime.list.loaded",
            source=source,
            rows=len(mapping),
            skipped_rows=mapping.skipped_rows,
            generation=self.generation,
        )
        if self._on_loaded is not None:
            self._on_loaded(self.generation)

    def _succeeded(self, now: float) -> None:
        self._failures = 0
        self.last_error = None
        self._next_attempt_at = now + self.refresh_s

    def _schedule_failure(self, error: str = "internal error") -> float:
        self._failures += 1
        self.last_error = error
        if self._mapping is None:
            # Plays wait for the list: try every retry_s, so they go out within retry_s of
            # the URL answering again.
            delay = float(self.retry_s)
        else:  # the stored copy is in use: back off, up to refresh_s
            backoff = float(self.retry_s * 2 ** min(self._failures - 1, 20))
            delay = min(backoff, max(self.refresh_s, 1.0))
        self._next_attempt_at = self._unix_s() + delay
        return delay

    def _fail(self, error: str) -> None:
        delay = self._schedule_failure(error)
        self._log.warning(
            "anime.list.fetch_failed",
            error=error,
            has_copy=self._mapping is not None,
            retry_in_s=round(delay, 1),
        )

    def _write(self, body: bytes, meta: _Meta) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._write_atomic(self.list_path, body)
        self._write_atomic(self.meta_path, _dump_meta(meta))

    def _write_atomic(self, path: Path, data: bytes) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Per process: a CLI command (`import`) may refresh while the daemon does.
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, 0o600)  # O_CREAT's mode does not apply to a leftover tmp file
        os.replace(tmp, path)


def list_state(directory: Path, url: str) -> dict[str, Any]:
    """What is stored in *directory* for the list at *url*, read from the files alone (for
    ``crosswatchd status``, which runs apart from the daemon)::

        {"enabled", "url", "stored": bool, "fetched_at", "checked_at" (unix s | None),
         "size" (bytes | None), "last_attempt": {"at", "result", "error"} | None}

    A sidecar for another URL counts as nothing stored. Never raises.
    """
    state: dict[str, Any] = {
        "enabled": bool(url),
        "url": url,
        "stored": False,
        "fetched_at": None,
        "checked_at": None,
        "size": None,
        "last_attempt": None,
    }
    meta = _load_json(directory / META_FILE)
    if meta is not None and meta.get("url") == url and (directory / LIST_FILE).is_file():
        state["stored"] = True
        for key in ("fetched_at", "checked_at", "size"):
            value = meta.get(key)
            state[key] = value if isinstance(value, int | float) and value else None
    status = _load_json(directory / STATUS_FILE)
    if status is not None and status.get("url") == url:
        at = status.get("at")
        state["last_attempt"] = {
            "at": at if isinstance(at, int | float) else None,
            "result": _str_or_none(status.get("result")),
            "error": _str_or_none(status.get("error")),
        }
    return state


def _load_json(path: Path) -> dict[str, Any] | None:
    try:
        raw = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    return raw if isinstance(raw, dict) else None


def _sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def _digest_and_parse(body: bytes) -> tuple[str, AnimeMapping]:
    return _sha256(body), parse_anime_list(body)


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _dump_meta(meta: _Meta) -> bytes:
    return orjson.dumps(
        {
            "url": meta.url,
            "etag": meta.etag,
            "last_modified": meta.last_modified,
            "fetched_at": meta.fetched_at,
            "checked_at": meta.checked_at,
            "sha256": meta.sha256,
            "size": meta.size,
        },
        option=orjson.OPT_INDENT_2,
    )
