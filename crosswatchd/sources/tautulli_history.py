"""Tautulli play history, read page by page: the rows (:class:`HistoryPager`) and what one row
says (:func:`play_of_row`). Shared by the history import (:mod:`crosswatchd.importer`) and the
reconcile pass's source snapshot (:mod:`crosswatchd.reconcile.sources`).

Paging is newest first (``order_column=date``, ``order_dir=desc``, through
:meth:`~crosswatchd.sources.tautulli_api.TautulliClient.get_history`) and ends at the last page,
or at a safety stop: a page made only of rows already seen (a server ignoring ``start``), or
``page_cap`` pages. A row seen twice (history shifting while we page) counts once.

A row is a completed play when ``watched_status == 1`` and it has a ``stopped`` time (Unix
seconds, so UTC): that is its ``watched_at``. Movies and episodes only; live TV is not a play.
Ids come from a legacy-agent ``guid`` (``com.plexapp.agents.imdb://tt…``, ``…thetvdb://S/s/e``);
new-agent rows (``plex://…``) carry none, only ratingKeys. Reference: api_v2_reference.md,
"get_history".
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, Final

from crosswatchd.models import Ids, Item, MediaKind
from crosswatchd.sources.guids import ParsedGuid, guid_position, parse_guid
from crosswatchd.sources.tautulli_api import api_int, api_rating_key

if TYPE_CHECKING:
    from crosswatchd.sources.tautulli_api import TautulliClient

__all__ = ["ROW_KINDS", "HistoryPager", "RowPlay", "is_completed", "play_of_row", "row_item"]

#: ``media_type`` values that are plays.
ROW_KINDS: Final = {"movie": MediaKind.MOVIE, "episode": MediaKind.EPISODE}


def is_completed(row: dict[str, Any]) -> bool:
    """True when Tautulli counts the row as watched (``watched_status`` 1)."""
    try:
        return float(row.get("watched_status") or 0) == 1.0
    except (TypeError, ValueError):
        return False


def _row_identity(row: dict[str, Any]) -> int | tuple[Any, ...]:
    row_id = api_int(row.get("row_id")) or api_int(row.get("id"))
    if row_id:
        return row_id
    return (row.get("user"), row.get("rating_key"), row.get("started"), row.get("stopped"))


def row_item(
    kind: MediaKind,
    row: dict[str, Any],
    parse: Callable[[str], ParsedGuid] = parse_guid,
    server: str | None = None,
) -> Item:
    """The item as far as the history row knows it (ids only from a legacy-agent guid), on the
    Plex *server* (machineIdentifier) whose ratingKeys the row holds."""
    guid = str(row.get("guid") or "") or None
    parsed = parse(guid) if guid else None
    title = str(row.get("title") or row.get("full_title") or "")
    if kind is MediaKind.MOVIE:
        ids = parsed.ids if parsed is not None and parsed.scope == "item" else Ids()
        return Item(
            kind=kind,
            title=title,
            year=api_int(row.get("year")) or None,
            ids=ids,
            rating_key=api_rating_key(row.get("rating_key")),
            guid=guid,
            server=server,
        )
    ids, show_ids = Ids(), Ids()
    season = api_int(row.get("parent_media_index"))
    number = api_int(row.get("media_index"))
    if parsed is not None and parsed.scope == "show":
        show_ids = parsed.ids
        season, number = guid_position(parsed, season, number)  # its numbering wins
    elif parsed is not None and parsed.scope == "item":
        ids = parsed.ids
    return Item(
        kind=kind,
        title=title,
        year=api_int(row.get("year")) or None,
        ids=ids,
        show_title=str(row.get("grandparent_title") or "") or None,
        show_ids=show_ids,
        season=season,
        number=number,
        rating_key=api_rating_key(row.get("rating_key")),
        grandparent_rating_key=api_rating_key(row.get("grandparent_rating_key")),
        guid=guid,
        server=server,
    )


@dataclass(frozen=True, slots=True)
class RowPlay:
    """A completed play read from one history row: the Tautulli username, the item, when it
    stopped (``watched_at``, UTC) and ``percent_complete`` (None when not a number)."""

    account: str
    item: Item
    watched_at: datetime
    progress_pct: float | None


def play_of_row(
    row: dict[str, Any],
    parse: Callable[[str], ParsedGuid] = parse_guid,
    server: str | None = None,
) -> RowPlay | str:
    """The completed play of *row* (its ratingKeys on Plex *server*), or why it is none:
    ``"media_type"`` (not a movie or episode, or live TV) or ``"incomplete"`` (not watched,
    or no ``stopped`` time)."""
    kind = ROW_KINDS.get(str(row.get("media_type") or ""))
    if kind is None or api_int(row.get("live")):
        return "media_type"
    stopped = api_int(row.get("stopped"))
    if not is_completed(row) or not stopped or stopped <= 0:
        return "incomplete"
    pct = row.get("percent_complete")
    return RowPlay(
        account=str(row.get("user") or ""),
        item=row_item(kind, row, parse, server),
        watched_at=datetime.fromtimestamp(stopped, UTC),
        progress_pct=float(pct) if isinstance(pct, int | float) else None,
    )


class HistoryPager:
    """Pages through ``get_history`` (see the module docstring), counting as it goes.

    ``since`` keeps plays on or after that day (Tautulli's ``after``, judged by the server in
    its own time zone); ``user`` one username's rows. After (or during) :meth:`pages`:
    ``pages`` requests made, ``records_filtered`` the server's count of matching rows,
    ``rows_seen`` distinct rows yielded, ``skipped_repeated`` rows seen twice,
    ``safety_stop`` why paging stopped early (or None).
    """

    def __init__(
        self,
        client: TautulliClient,
        *,
        since: date | None = None,
        user: str | None = None,
        page_size: int = 1000,
        page_cap: int = 10_000,
    ) -> None:
        if page_size < 1 or page_cap < 1:
            raise ValueError("page_size and page_cap must be positive")
        self._client = client
        self._since = since
        self._user = user
        self._page_size = page_size
        self._page_cap = page_cap
        self.pages = 0
        self.records_filtered = 0
        self.rows_seen = 0
        self.skipped_repeated = 0
        self.safety_stop: str | None = None

    async def rows(self) -> AsyncIterator[list[dict[str, Any]]]:
        """The rows of each page not seen before, page by page. Raises
        :class:`~crosswatchd.errors.SourceUnavailableError` when Tautulli fails."""
        seen: set[int | tuple[Any, ...]] = set()
        start = 0
        while True:
            if self.pages >= self._page_cap:
                self.safety_stop = f"stopped after {self._page_cap} pages (page cap)"
                return
            page = await self._client.get_history(
                start=start, length=self._page_size, after=self._since, user=self._user
            )
            self.pages += 1
            self.records_filtered = page.records_filtered
            if not page.rows:
                return
            fresh: list[dict[str, Any]] = []
            for row in page.rows:
                identity = _row_identity(row)
                if identity in seen:
                    self.skipped_repeated += 1
                    continue
                seen.add(identity)
                fresh.append(row)
            if not fresh:
                self.safety_stop = f"Tautulli sent a page already seen (start={start})"
                return
            self.rows_seen += len(fresh)
            yield fresh
            start += len(page.rows)
            if start >= page.records_filtered:
                return
