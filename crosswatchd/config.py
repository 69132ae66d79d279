"""Settings: a TOML file plus ``CROSSWATCHD_*`` environment overrides (pydantic-settings).

Sources, highest priority first: environment (``CROSSWATCHD_HTTP__PORT=9000``; nested keys
joined by ``__``), the TOML file (``--config PATH`` or ``CROSSWATCHD_CONFIG``), defaults.

Environment values are strings. A list setting takes a JSON list (``["alice", "bob"]``) or
comma-separated text (``alice,bob``); a whole section (``CROSSWATCHD_HTTP``) takes a JSON
object. :func:`load_settings` turns every problem into one :class:`ConfigError` that names
what the user wrote: the dotted key of the file (``http.port``), or the environment variable
(``CROSSWATCHD_HTTP__PORT``) when the value came from there.

A relative ``data_dir`` is relative to the config file's folder (so ``status`` run from another
directory finds the same data); with no config file, or when ``CROSSWATCHD_DATA_DIR`` sets
it, to the current directory.
"""

from __future__ import annotations

import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from crosswatchd.animelists import DEFAULT_MAPPING_URL
from crosswatchd.errors import ConfigError

__all__ = [
    "AnimeSettings",
    "DeliverySettings",
    "HttpSettings",
    "PlexSettings",
    "ProfileSettings",
    "ReconcileSettings",
    "ResolverSettings",
    "Settings",
    "SimklSettings",
    "TautulliSettings",
    "TraktSettings",
    "WatchlistSettings",
    "WebhookSettings",
    "load_settings",
]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HttpSettings(_Section):
    """Where the webhook server listens."""

    host: str = "127.0.0.1"
    port: int = Field(default=8765, ge=0, le=65535)
    #: Largest accepted webhook JSON, bytes (Plex's thumb part is skipped, not counted). A
    #: whole request, thumbnail included, may be at most 16 times this (16 MiB by default).
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    #: A connection that sends no complete request for this long is closed (slow or idle
    #: clients; the keep-alive timeout a reverse proxy would use).
    idle_timeout_s: float = Field(default=15.0, gt=0)
    #: A request body not received within this many seconds is answered 408.
    body_timeout_s: float = Field(default=30.0, gt=0)
    #: Open connections beyond this are answered 503 and closed at once.
    max_connections: int = Field(default=256, ge=1)


class WebhookSettings(_Section):
    """Shared secret in the webhook URL (``?token=``). Empty: generated on first start."""

    secret: str = ""


class PlexSettings(_Section):
    """Plex webhook filtering, the Plex server used by the id resolver, and the plex.tv
    account whose watchlist is synced (see :class:`WatchlistSettings`)."""

    #: Plex ``Account.title`` values whose plays are ours. Empty: only ``"user": true`` events.
    accounts: list[str] = Field(default_factory=list)
    #: Plex server base URL for metadata lookups, e.g. ``http://127.0.0.1:32400``.
    url: str = ""
    #: A plex.tv account token: the server's metadata lookups, and the implicit profile's
    #: watchlist (a token stored by ``crosswatchd auth plex`` wins for the watchlist).
    token: str = ""
    #: Plex Discover, where the account watchlist lives since August 2025, and where every
    #: watchlist call goes, ``library/metadata/matches`` included
    #: (shared/reference/plex/discover-watchlist.md §1).
    discover_url: str = "https://discover.provider.plex.tv"
    #: plex.tv, for ``crosswatchd auth plex`` (the PIN sign-in).
    plextv_url: str = "https://plex.tv"
    #: Reads and writes per second sent to Discover (Plex publishes no limit; users saw
    #: 429s when pulling large watchlists fast, discover-watchlist.md §6).
    discover_get_per_s: float = Field(default=10.0, gt=0)
    discover_put_per_s: float = Field(default=1.0, gt=0)


class TraktSettings(_Section):
    """Trakt application credentials (https://trakt.tv/oauth/applications)."""

    enabled: bool = True
    client_id: str = ""
    client_secret: str = ""
    api_url: str = "https://api.trakt.tv"
    #: Token-bucket limits: POST/PUT/DELETE 1 per second; GET 1000 per 300 s (Trakt API docs,
    #: "Rate Limiting").
    post_per_s: float = Field(default=1.0, gt=0)
    get_limit: int = Field(default=1000, gt=0)
    get_period_s: float = Field(default=300.0, gt=0)


class SimklSettings(_Section):
    """SIMKL application credentials (https://simkl.com/settings/developer/)."""

    enabled: bool = True
    client_id: str = ""
    client_secret: str = ""
    api_url: str = "https://api.simkl.com"
    #: Per token: 10 GET/s and 1 POST/s (api.simkl.org rate limits).
    post_per_s: float = Field(default=1.0, gt=0)
    get_per_s: float = Field(default=10.0, gt=0)


class TautulliSettings(_Section):
    """Tautulli server for the webhook account filter and the history importer."""

    url: str = ""
    api_key: str = ""
    #: Tautulli usernames whose plays belong to this account. Empty: nothing is accepted.
    users: list[str] = Field(default_factory=list)


#: Delivery targets a profile may name.
TARGETS = ("trakt", "simkl")
PROFILE_NAME = re.compile(r"[a-z0-9_-]{1,32}")


class ProfileSettings(_Section):
    """One household member (``[[profiles]]``): whose plays these are and where they go.

    ``plex_accounts`` are Plex ``Account.title`` values (a numeric ``Account.id`` given as a
    string matches too); ``tautulli_users`` Tautulli usernames; ``targets`` the providers this
    person keeps a record on (default: every provider that has a client id).
    """

    name: str
    plex_accounts: list[str] = Field(default_factory=list)
    tautulli_users: list[str] = Field(default_factory=list)
    targets: list[str] | None = None
    #: This member's plex.tv account token, for their watchlist (a token stored by
    #: ``crosswatchd auth plex --profile NAME`` wins). Empty: no watchlist sync unless stored.
    plex_token: str = ""

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not PROFILE_NAME.fullmatch(value):
            raise ValueError("a profile name is 1-32 of a-z, 0-9, _ and -")
        return value

    @field_validator("targets")
    @classmethod
    def _known_targets(cls, value: list[str] | None) -> list[str] | None:
        for name in value or ():
            if name not in TARGETS:
                raise ValueError(f"unknown target {name!r} (known: {', '.join(TARGETS)})")
        return value


class ResolverSettings(_Section):
    """Id resolution chain knobs."""

    use_plex: bool = True
    use_tautulli: bool = True
    use_search: bool = True
    #: Exact title + year search as a last resort; off by default.
    title_fallback: bool = False
    positive_ttl_s: int = Field(default=30 * 86400, ge=0)
    negative_ttl_s: int = Field(default=6 * 3600, ge=0)


class AnimeSettings(_Section):
    """HAMA (AniDB) libraries: the Anime-Lists mapping file that turns AniDB ids and numbering
    into TVDB / TMDB / IMDb ones (see :mod:`crosswatchd.animelists_store`)."""

    #: Where to fetch ``anime-list-master.xml``; ``""`` turns the mapping off (AniDB plays park).
    mapping_url: str = DEFAULT_MAPPING_URL
    #: Re-validate the stored copy this often (a conditional GET).
    refresh_s: float = Field(default=86400.0, gt=0)
    #: While no copy is stored, try again after this many seconds.
    retry_s: float = Field(default=300.0, gt=0)

    @field_validator("mapping_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        value = value.strip()
        if value and not value.lower().startswith(("http://", "https://")):
            raise ValueError('must be an http:// or https:// URL, or "" to turn the mapping off')
        return value


class DeliverySettings(_Section):
    """Outbox and drainer knobs."""

    #: The same account finishing the same item again within this window is one play.
    dedupe_window_s: int = Field(default=4 * 3600, ge=0)
    #: How long a worker owns a claimed delivery before another may reclaim it.
    lease_s: float = Field(default=120.0, gt=0)
    #: Live state older than this is dropped instead of sent.
    live_max_age_s: float = Field(default=300.0, gt=0)
    #: Exponential backoff for transient failures: base, cap (s).
    backoff_base_s: float = Field(default=5.0, gt=0)
    backoff_max_s: float = Field(default=1800.0, gt=0)
    #: How often the outbox is read for due deliveries another process queued (this process's
    #: own intake wakes its drainers at once).
    poll_s: float = Field(default=5.0, gt=0)
    #: Per-HTTP-request timeout.
    timeout_s: float = Field(default=30.0, gt=0)
    #: At most this many target accounts claim and send at the same time in one process: a
    #: relay replica holding thousands keeps its database pool and event loop free for
    #: webhooks and lease renewals (the others wait their turn, in order).
    concurrency: int = Field(default=32, ge=1)
    #: SQLite ``PRAGMA synchronous`` for the outbox: ``normal`` survives the daemon being
    #: killed (the WAL is in the OS cache); ``full`` also survives a power cut, at the cost of
    #: an fsync per commit.
    sqlite_synchronous: Literal["normal", "full"] = "normal"


class WatchlistSettings(_Section):
    """The Plex watchlist kept in step with Trakt's watchlist and SIMKL's Plan to Watch."""

    #: ``"plex"``: the Plex watchlist is the source, nothing is written to Plex; ``"two-way"``:
    #: every side's additions and removals reach the others (a removal wins).
    mode: Literal["plex", "two-way"] = "plex"
    #: Seconds between passes inside ``serve``; 0: only ``crosswatchd watchlist sync``.
    interval_s: float = Field(default=3600.0, ge=0)


class ReconcileSettings(_Section):
    """The periodic comparison of what the sources say each profile watched with what its
    target accounts hold (``crosswatchd reconcile``; see :mod:`crosswatchd.reconcile`)."""

    #: Seconds between passes in ``serve`` (each one jittered by up to a tenth); 0 disables.
    interval_s: int = Field(default=21600, ge=0)
    #: Seconds after ``serve`` starts before its first pass.
    first_delay_s: float = Field(default=300.0, ge=0)
    #: A source play is on a target when the target has a play of the same item this close to
    #: it (seconds). Default: ``delivery.dedupe_window_s``.
    match_window_s: int | None = Field(default=None, ge=0)
    #: Also take Plex's "marked watched" items (``lastViewedAt``, the server owner's only) as
    #: plays; add-only: unmarking never removes anything.
    include_marked_watched: bool = False
    #: Compare the server owner's Plex ratings (``userRating``) with the targets' ratings.
    ratings: bool = True
    #: Rows per Tautulli ``get_history`` / Plex history page.
    page_size: int = Field(default=1000, ge=1, le=10000)


ENV_PREFIX = "CROSSWATCHD_"
#: Environment variables with the prefix that are not settings.
_NOT_SETTINGS = frozenset({"CROSSWATCHD_CONFIG"})


class Settings(BaseSettings):
    """All settings. See ``config/crosswatchd.example.toml`` for a commented example.

    Build with :func:`load_settings`; ``Settings(**values)`` also works (tests) and reads the
    process environment like the loader, without a file.
    """

    model_config = SettingsConfigDict(extra="forbid")

    data_dir: Path = Path("./data")
    #: Empty: SQLite files in ``data_dir``. ``postgresql://user:password@host/db``: every piece
    #: of shared state in that database, for replicas of a relay (:mod:`crosswatchd.postgres`).
    database_url: str = ""
    log_level: str = "info"
    http: HttpSettings = Field(default_factory=HttpSettings)
    webhook: WebhookSettings = Field(default_factory=WebhookSettings)
    plex: PlexSettings = Field(default_factory=PlexSettings)
    trakt: TraktSettings = Field(default_factory=TraktSettings)
    simkl: SimklSettings = Field(default_factory=SimklSettings)
    tautulli: TautulliSettings = Field(default_factory=TautulliSettings)
    resolver: ResolverSettings = Field(default_factory=ResolverSettings)
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
    watchlist: WatchlistSettings = Field(default_factory=WatchlistSettings)
    anime: AnimeSettings = Field(default_factory=AnimeSettings)
    reconcile: ReconcileSettings = Field(default_factory=ReconcileSettings)
    #: Household members; empty: one implicit profile ``default`` made of ``plex.accounts``
    #: and ``tautulli.users`` (see :mod:`crosswatchd.profiles`).
    profiles: list[ProfileSettings] = Field(default_factory=list)

    _config_file: Path | None = PrivateAttr(default=None)

    @property
    def config_file(self) -> Path | None:
        """The absolute path of the TOML file these settings were read from, if any."""
        return self._config_file

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        value = value.lower()
        if value not in {"debug", "info", "warning", "error"}:
            raise ValueError("must be one of debug, info, warning, error")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # load_settings passes the file's and the environment's values in as init values (it
        # needs to know where each came from); a bare Settings() reads the environment here.
        return (init_settings, _EnvSource(settings_cls, os.environ))

    def trakt_enabled(self) -> bool:
        """Trakt is a delivery target when enabled and given a client id."""
        return self.trakt.enabled and bool(self.trakt.client_id)

    def simkl_enabled(self) -> bool:
        """SIMKL is a delivery target when enabled and given a client id."""
        return self.simkl.enabled and bool(self.simkl.client_id)

    def match_window_s(self) -> float:
        """``reconcile.match_window_s``, or the dedupe window when unset."""
        window = self.reconcile.match_window_s
        return float(self.delivery.dedupe_window_s if window is None else window)

    def providers(self) -> list[str]:
        """Names of the configured delivery targets, in a stable order."""
        names = []
        if self.trakt_enabled():
            names.append("trakt")
        if self.simkl_enabled():
            names.append("simkl")
        return names


# -- the environment ---------------------------------------------------------------------------


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model class *annotation* names (``HttpSettings``), or None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _is_list(annotation: Any) -> bool:
    return typing.get_origin(annotation) is list


def _is_list_of_models(annotation: Any) -> bool:
    return _is_list(annotation) and any(_model_of(arg) for arg in typing.get_args(annotation))


def _is_optional_scalar(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    return origin in (typing.Union, types.UnionType) and type(None) in typing.get_args(annotation)


def _env_value(name: str, raw: str, field: FieldInfo | None) -> Any:
    """The value of environment variable *name* for *field* (None: a whole section)."""
    annotation = field.annotation if field is not None else None
    whole_section = field is None or _model_of(annotation) is not None
    as_json = _is_list(annotation) and raw.lstrip().startswith("[")
    if whole_section or as_json or _is_list_of_models(annotation):
        expected = "a JSON object" if whole_section else "a JSON list"
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise ConfigError(name, f"expected {expected}") from None
        if not isinstance(value, dict if whole_section else list):
            raise ConfigError(name, f"expected {expected}")
        return value
    if _is_list(annotation):
        # `alice,bob` as Docker users write it; `alice` alone is a one-item list.
        return [part.strip() for part in raw.split(",") if part.strip()]
    if _is_optional_scalar(annotation) and not raw.strip():
        return None
    return raw


class _EnvSource(PydanticBaseSettingsSource):
    """``CROSSWATCHD_*`` variables as nested settings values, remembering each one's origin.

    ``CROSSWATCHD_HTTP__PORT=9000`` → ``{"http": {"port": "9000"}}``; names are
    case-insensitive. An unknown section or key raises :class:`ConfigError` naming the
    variable. ``origins`` maps each value's path, e.g. ``("http", "port")``, to its variable.
    """

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self._environ = environ
        self.origins: dict[tuple[str, ...], str] = {}

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        raise NotImplementedError  # values come from __call__ as one nested dict

    def __call__(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for name in sorted(self._environ):
            upper = name.upper()
            if not upper.startswith(ENV_PREFIX) or upper in _NOT_SETTINGS:
                continue
            path = tuple(part.lower() for part in upper[len(ENV_PREFIX) :].split("__"))
            if not all(path):
                raise ConfigError(name, "malformed name (sections and keys are joined by __)")
            field = self._field(name, path)
            node = data
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = _env_value(name, self._environ[name], field)
            self.origins[path] = name
        return data

    def _field(self, name: str, path: tuple[str, ...]) -> FieldInfo | None:
        """The field *path* names; None when it names a whole section. Raises ConfigError."""
        model: type[BaseModel] = self.settings_cls
        field: FieldInfo | None = None
        for depth, part in enumerate(path):
            fields = model.model_fields
            if part not in fields:
                where = "setting" if depth == 0 else f"key in [{'.'.join(path[:depth])}]"
                raise ConfigError(name, f"unknown setting (no such {where}: {part})")
            field = fields[part]
            sub = _model_of(field.annotation)
            if depth < len(path) - 1:
                if sub is None:
                    raise ConfigError(name, f"unknown setting ({part} has no keys)")
                model = sub
        return None if field is not None and _model_of(field.annotation) else field


class _Values(PydanticBaseSettingsSource):
    """A source that hands over values already read (the TOML file's)."""

    def __init__(self, settings_cls: type[BaseSettings], values: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._values = values

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        raise NotImplementedError

    def __call__(self) -> dict[str, Any]:
        return self._values


def _deep_merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _read_toml(path: Path, origin: str) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(origin, f"no such file: {path}")
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(origin, f"{path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(origin, f"cannot read {path}: {exc.strerror}") from None


def _error_key(loc: tuple[Any, ...], origins: Mapping[tuple[str, ...], str]) -> tuple[str, bool]:
    """The name to show for an error at *loc*: the environment variable that set it (or the
    nearest enclosing one), else the dotted key. Second: True when it is a variable."""
    parts = tuple(str(part) for part in loc)
    for end in range(len(parts), 0, -1):
        if parts[:end] in origins:
            return origins[parts[:end]], True
    return _dotted(loc), False


def _dotted(loc: tuple[Any, ...]) -> str:
    """``("profiles", 1, "name")`` → ``profiles[1].name``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "config"


def _check_household(settings: Settings, origins: Mapping[tuple[str, ...], str]) -> None:
    """What one profile cannot check alone; raises :class:`ConfigError` naming the key."""

    def key(*loc: Any) -> str:
        return _error_key(loc, origins)[0]

    if not settings.profiles:
        return
    for section, field_name in (("plex", "accounts"), ("tautulli", "users")):
        if getattr(getattr(settings, section), field_name):
            raise ConfigError(
                key(section, field_name),
                "must be empty when [[profiles]] are defined: list the accounts in each"
                " profile's plex_accounts / tautulli_users",
            )
    configured = set(settings.providers())
    names: dict[str, int] = {}
    owners: dict[tuple[str, str], str] = {}
    for index, profile in enumerate(settings.profiles):
        if profile.name in names:
            raise ConfigError(key("profiles", index, "name"), f"{profile.name!r} is used twice")
        names[profile.name] = index
        for target in profile.targets or ():
            if target not in configured:
                raise ConfigError(
                    key("profiles", index, "targets"),
                    f"{target} is not configured (set {target}.client_id)",
                )
        for field_name, source in (("plex_accounts", "plex"), ("tautulli_users", "tautulli")):
            for account in getattr(profile, field_name):
                folded = account.strip().casefold()
                other = owners.setdefault((source, folded), profile.name)
                if other != profile.name:
                    raise ConfigError(
                        key("profiles", index, field_name),
                        f"{source} account {account!r} is in profiles {other!r} and"
                        f" {profile.name!r}; an account belongs to one person",
                    )


def load_settings(
    path: str | Path | None = None,
    *,
    origin: str = "--config",
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Load settings from *path* (or ``CROSSWATCHD_CONFIG``), the environment, *overrides*.

    *origin* names where *path* came from, for messages (``--config``; the CLI passes
    ``CROSSWATCHD_CONFIG`` when the path came from that variable). *environ* defaults to
    ``os.environ``. Raises :class:`ConfigError` naming the first bad key or variable, e.g.
    ``config error: http.port: Input should be less than or equal to 65535`` or
    ``config error: CROSSWATCHD_HTTP__PROT: unknown setting (no such key in [http]: prot)``.
    """
    env = os.environ if environ is None else environ
    chosen = str(path) if path else ""
    if not chosen and env.get("CROSSWATCHD_CONFIG"):
        chosen, origin = env["CROSSWATCHD_CONFIG"], "CROSSWATCHD_CONFIG"
    config_file = Path(os.path.abspath(chosen)) if chosen else None
    file_values = _read_toml(config_file, origin) if config_file else {}
    env_source = _EnvSource(Settings, env)
    env_values = env_source()
    values = _deep_merge(_deep_merge(file_values, env_values), overrides)
    try:
        settings = Settings.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        key, from_env = _error_key(tuple(first["loc"]), env_source.origins)
        message = first["msg"]
        if first["type"] == "extra_forbidden":
            message = "unknown setting" if from_env else "unknown key"
        raise ConfigError(key, message) from None
    _check_household(settings, env_source.origins)
    if settings.database_url:
        from crosswatchd.postgres import validate_url

        try:
            validate_url(settings.database_url)
        except ConfigError as exc:
            key = _error_key(("database_url",), env_source.origins)[0]
            raise ConfigError(key, exc.message) from None
    if not settings.data_dir.is_absolute():
        from_file = config_file is not None and ("data_dir",) not in env_source.origins
        base = config_file.parent if from_file and config_file else Path.cwd()
        settings.data_dir = Path(os.path.abspath(base / settings.data_dir))
    settings._config_file = config_file
    return settings
