"""Domain types passed between modules: frozen, slotted dataclasses and enums.

Pydantic lives at the edges (webhook bodies, settings, provider responses); everything that
crosses a module boundary inside the daemon is one of these types.

Shapes:

- :class:`Ids` — external ids of one thing (a movie, a show or an episode). Every field is a
  string or ``None``; numeric ids (tmdb, tvdb, trakt, simkl) are kept as decimal strings so a
  dict/JSON round trip is lossless.
- :class:`Item` — what was watched: a movie, or an episode with its show.
- :class:`PlayEvent` — one normalized event from a source (Plex webhook, Tautulli webhook,
  Tautulli history import): an :class:`Action` on an :class:`Item` by an account at a UTC time.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "COMPLETED_PCT",
    "DEFAULT_PROFILE",
    "Action",
    "Ids",
    "Item",
    "MediaKind",
    "PlayEvent",
    "Source",
    "format_utc",
    "iso",
    "item_keys",
    "parse_utc",
]

#: The implicit profile (household member) of a configuration without ``[[profiles]]``, and
#: of every row stored before households existed.
DEFAULT_PROFILE = "default"

#: Progress (percent) at or above which a stop counts as a completed play. Plex's own
#: ``media.scrobble`` fires at 90 % (Plex support article "Webhooks").
COMPLETED_PCT = 90.0


class MediaKind(enum.StrEnum):
    """What an item is. Plays are of movies and episodes; ratings and watchlist entries may
    also be of a show or a season (``season`` set, ``number`` None)."""

    MOVIE = "movie"
    EPISODE = "episode"
    SHOW = "show"
    SEASON = "season"


class Action(enum.StrEnum):
    """What happened.

    ``WATCHED`` is a completed play (recorded in history exactly once). The others are live
    state: best-effort, never recorded as a play.
    """

    START = "start"  # media.play / media.resume / Tautulli play, resume
    PAUSE = "pause"  # media.pause / Tautulli pause
    STOP = "stop"  # media.stop / Tautulli stop below the completion threshold
    WATCHED = "watched"  # media.scrobble / stop >= 90 % / Tautulli watched / history import
    RATE = "rate"  # media.rate: PlayEvent.rating 1-10, or None when cleared
    WATCHLIST_ADD = "watchlist_add"  # the item was put on a watchlist
    WATCHLIST_REMOVE = "watchlist_remove"  # the item was taken off a watchlist

    @property
    def is_play(self) -> bool:
        """True for a completed play."""
        return self is Action.WATCHED

    @property
    def is_live(self) -> bool:
        """True for live state (now watching, paused, stopped)."""
        return self in (Action.START, Action.PAUSE, Action.STOP)


class Source(enum.StrEnum):
    """Where an event came from. Imports and reconcile backfill the past: their deliveries
    wait behind what webhooks report now (:attr:`is_backfill`)."""

    PLEX = "plex"
    TAUTULLI = "tautulli"
    IMPORT = "import"
    RECONCILE = "reconcile"
    WATCHLIST = "watchlist"

    @property
    def is_backfill(self) -> bool:
        """True for sources that fill in the past rather than report the present."""
        return self in (Source.IMPORT, Source.RECONCILE)


_ID_FIELDS = ("imdb", "tmdb", "tvdb", "trakt", "simkl", "anidb")


@dataclass(frozen=True, slots=True)
class Ids:
    """External ids of one movie, show or episode; ``None`` where unknown.

    ``imdb`` is ``tt`` + digits; the others are decimal strings.
    """

    imdb: str | None = None
    tmdb: str | None = None
    tvdb: str | None = None
    trakt: str | None = None
    simkl: str | None = None
    anidb: str | None = None

    def __bool__(self) -> bool:
        return any(getattr(self, name) for name in _ID_FIELDS)

    def as_dict(self) -> dict[str, str]:
        """Known ids only, e.g. ``{"imdb": "tt0090728", "tmdb": "6978"}``."""
        return {name: v for name in _ID_FIELDS if (v := getattr(self, name))}

    def merged(self, other: Ids) -> Ids:
        """These ids, with gaps filled from *other* (self wins on conflicts)."""
        return Ids(**{name: getattr(self, name) or getattr(other, name) for name in _ID_FIELDS})

    def as_api_ids(self) -> dict[str, str | int]:
        """Ids in the shape Trakt and SIMKL take: numeric ids as ints, imdb as a string."""
        out: dict[str, str | int] = {}
        for name, value in self.as_dict().items():
            if name == "imdb":
                out[name] = value
            elif value.isdigit():
                out[name] = int(value)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Ids:
        """Build from a mapping, ignoring unknown keys, empty values and ``"0"``."""
        if not data:
            return cls()
        kwargs: dict[str, str] = {}
        for name in _ID_FIELDS:
            value = data.get(name)
            if value is None:
                continue
            text = str(value).strip()
            if text and text != "0":
                kwargs[name] = text
        return cls(**kwargs)


@dataclass(frozen=True, slots=True)
class Item:
    """A movie, or an episode of a show.

    For an episode, ``ids`` are the **episode's own** ids (Plex new-agent ``Guid[]``) and
    ``show_ids`` the show's (legacy thetvdb agent, Tautulli ``thetvdb_id``…); either may be
    empty. ``season``/``number`` are Plex ``parentIndex``/``index``. ``rating_key`` and
    ``grandparent_rating_key`` are Plex ratingKeys (strings), unique only on the server
    ``server`` names (the Plex machineIdentifier: webhook ``Server.uuid``, Tautulli
    ``{server_machine_id}``), when known. ``guid`` is the source's raw GUID
    (``plex://movie/…``, ``com.plexapp.agents.imdb://tt…``), kept for resolution.
    """

    kind: MediaKind
    title: str = ""
    year: int | None = None
    ids: Ids = field(default_factory=Ids)
    show_title: str | None = None
    show_year: int | None = None
    show_ids: Ids = field(default_factory=Ids)
    season: int | None = None
    number: int | None = None
    rating_key: str | None = None
    grandparent_rating_key: str | None = None
    guid: str | None = None
    server: str | None = None

    def label(self) -> str:
        """Human label for logs and status, e.g. ``Futurama S02E15`` or ``Barry Lyndon (1975)``."""
        if self.kind is MediaKind.SEASON:
            show = self.show_title or self.title or "?"
            return f"{show} season {self.season if self.season is not None else '?'}"
        if self.kind is MediaKind.SHOW:
            return f"{self.title} ({self.year})" if self.year else self.title
        if self.kind is MediaKind.EPISODE:
            show = self.show_title or "?"
            s = f"{self.season:02d}" if self.season is not None else "??"
            e = f"{self.number:02d}" if self.number is not None else "??"
            return f"{show} S{s}E{e}"
        return f"{self.title} ({self.year})" if self.year else self.title

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (ids as dicts of known ids)."""
        # Built by hand: dataclasses.asdict deep-copies and was the importer's largest cost.
        return {
            "kind": self.kind.value,
            "title": self.title,
            "year": self.year,
            "ids": self.ids.as_dict(),
            "show_title": self.show_title,
            "show_year": self.show_year,
            "show_ids": self.show_ids.as_dict(),
            "season": self.season,
            "number": self.number,
            "rating_key": self.rating_key,
            "grandparent_rating_key": self.grandparent_rating_key,
            "guid": self.guid,
            "server": self.server,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Item:
        """Inverse of :meth:`to_dict`; unknown keys are ignored."""
        names = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names}
        kwargs["kind"] = MediaKind(data["kind"])
        kwargs["ids"] = Ids.from_dict(data.get("ids"))
        kwargs["show_ids"] = Ids.from_dict(data.get("show_ids"))
        return cls(**kwargs)

    def with_ids(self, ids: Ids | None = None, show_ids: Ids | None = None) -> Item:
        """A copy with ids (and show ids) merged in; existing ids win."""
        return replace(
            self,
            ids=self.ids.merged(ids) if ids else self.ids,
            show_ids=self.show_ids.merged(show_ids) if show_ids else self.show_ids,
        )


@dataclass(frozen=True, slots=True)
class PlayEvent:
    """One normalized event from a source.

    ``occurred_at`` is the UTC time of the event: for Plex the receipt time (Plex sends none),
    for Tautulli webhooks ``unixtime``, for imports the history row's ``stopped``. For a
    ``WATCHED`` event it becomes the play's ``watched_at``. ``progress_pct`` is 0–100 or
    ``None`` when unknown; ``view_offset_ms``/``duration_ms`` are the raw Plex values.
    ``session`` groups live events of one playback (Plex Player uuid, Tautulli session_key).
    ``profile`` is the household member the source account belongs to (routed at intake).
    ``rating`` is a ``RATE`` event's 1-10 rating (``None``: the rating was cleared).
    ``import_key`` names the row of an imported file the event comes from
    (``letterboxd:https://boxd.it/5aQk2r``): the outbox keeps at most one event per profile and
    key, so importing a file again queues nothing (``None`` for everything else).
    """

    source: Source
    action: Action
    account: str
    item: Item
    occurred_at: datetime
    progress_pct: float | None = None
    view_offset_ms: int | None = None
    duration_ms: int | None = None
    session: str | None = None
    profile: str = DEFAULT_PROFILE
    rating: int | None = None
    import_key: str | None = None

    def __post_init__(self) -> None:
        if self.occurred_at.tzinfo is None:
            raise ValueError("PlayEvent.occurred_at must be timezone-aware (UTC)")


def item_keys(item: Item) -> list[str]:
    """Identity keys of an item, used to recognise the same play from different sources.

    Two plays are the same item when they share any key. Keys are typed so an episode's own
    imdb id never collides with its show's: ``movie:imdb:tt…``, ``episode:tvdb:…``,
    ``show:tvdb:73871:2:15``, ``rk:<server>:59852``, ``grk:<server>:59800:2:15``. Plex
    ratingKeys identify an item on one server only (a play on a friend's server may carry the
    ratingKey of another item here), so they are scoped by the server's machineIdentifier,
    which Plex webhooks (``Server.uuid``) and Tautulli (``server_machine_id``) both report;
    without a known server the key is the bare ``rk:59852``.
    """
    keys: list[str] = []
    scope = f"{item.server}:" if item.server else ""
    if item.rating_key:
        keys.append(f"rk:{scope}{item.rating_key}")
    if item.kind is MediaKind.MOVIE:
        keys.extend(f"movie:{name}:{value}" for name, value in item.ids.as_dict().items())
        return keys
    if item.kind is MediaKind.SHOW:  # a show (rated, watchlisted): its own ids
        ids = item.ids.merged(item.show_ids)
        keys.extend(f"series:{name}:{value}" for name, value in ids.as_dict().items())
        return keys
    if item.kind is MediaKind.SEASON:  # a season: its own ids, or the show's + its number
        keys.extend(f"season:{name}:{value}" for name, value in item.ids.as_dict().items())
        if item.season is not None:
            keys.extend(
                f"series:{name}:{value}:{item.season}"
                for name, value in item.show_ids.as_dict().items()
            )
        return keys
    keys.extend(f"episode:{name}:{value}" for name, value in item.ids.as_dict().items())
    if item.season is not None and item.number is not None:
        se = f"{item.season}:{item.number}"
        if item.grandparent_rating_key:
            keys.append(f"grk:{scope}{item.grandparent_rating_key}:{se}")
        keys.extend(f"show:{name}:{value}:{se}" for name, value in item.show_ids.as_dict().items())
    return keys


def parse_utc(value: str) -> datetime:
    """Parse an ISO-8601 timestamp (``Z`` or offset) into an aware UTC datetime.

    Raises ``ValueError`` for a naive or malformed timestamp.
    """
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp without a timezone: {value!r}")
    return parsed.astimezone(UTC)


def format_utc(moment: datetime) -> str:
    """Format as Trakt/SIMKL want on the wire: ``2026-11-21T10:54:52.000Z``."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def iso(moment: datetime | None) -> str | None:
    """``2026-11-21T10:54:52Z`` (UTC, whole seconds: what ``status`` shows), or None."""
    if moment is None:
        return None
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")
