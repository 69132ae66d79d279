"""Settings: a TOML file plus ``CROSSWATCHD_*`` environment overrides (pydantic-settings).

Sources, highest priority first: environment (``CROSSWATCHD_HTTP__PORT=9000``; nested keys
joined by ``__``), the TOML file (``--config PATH`` or ``CROSSWATCHD_CONFIG``), defaults.
:func:`load_settings` turns every validation problem into one :class:`ConfigError` naming the
first bad key.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from crosswatchd.errors import ConfigError

__all__ = [
    "DeliverySettings",
    "HttpSettings",
    "PlexSettings",
    "ResolverSettings",
    "Settings",
    "SimklSettings",
    "TautulliSettings",
    "TraktSettings",
    "WebhookSettings",
    "load_settings",
]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HttpSettings(_Section):
    """Where the webhook server listens."""

    host: str = "127.0.0.1"
    port: int = Field(default=8765, ge=0, le=65535)
    #: Largest accepted webhook body, bytes (Plex's thumb part is skipped, not counted).
    max_body_bytes: int = Field(default=1_048_576, ge=1024)


class WebhookSettings(_Section):
    """Shared secret in the webhook URL (``?token=``). Empty: generated on first start."""

    secret: str = ""


class PlexSettings(_Section):
    """Plex webhook filtering and (optional) the Plex server used by the id resolver."""

    #: Plex ``Account.title`` values whose plays are ours. Empty: only ``"user": true`` events.
    accounts: list[str] = Field(default_factory=list)
    #: Plex server base URL for metadata lookups, e.g. ``http://127.0.0.1:32400``.
    url: str = ""
    token: str = ""


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


class ResolverSettings(_Section):
    """Id resolution chain knobs."""

    use_plex: bool = True
    use_tautulli: bool = True
    use_search: bool = True
    #: Exact title + year search as a last resort; off by default.
    title_fallback: bool = False
    positive_ttl_s: int = Field(default=30 * 86400, ge=0)
    negative_ttl_s: int = Field(default=6 * 3600, ge=0)


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
    #: How often an idle drainer looks at the outbox (it is also woken on enqueue).
    poll_s: float = Field(default=5.0, gt=0)
    #: Per-HTTP-request timeout.
    timeout_s: float = Field(default=30.0, gt=0)
    #: SQLite ``PRAGMA synchronous`` for the outbox: ``normal`` survives the daemon being
    #: killed (the WAL is in the OS cache); ``full`` also survives a power cut, at the cost of
    #: an fsync per commit.
    sqlite_synchronous: Literal["normal", "full"] = "normal"


class Settings(BaseSettings):
    """All settings. See ``config/crosswatchd.example.toml`` for a commented example."""

    model_config = SettingsConfigDict(
        env_prefix="CROSSWATCHD_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    data_dir: Path = Path("./data")
    log_level: str = "info"
    http: HttpSettings = Field(default_factory=HttpSettings)
    webhook: WebhookSettings = Field(default_factory=WebhookSettings)
    plex: PlexSettings = Field(default_factory=PlexSettings)
    trakt: TraktSettings = Field(default_factory=TraktSettings)
    simkl: SimklSettings = Field(default_factory=SimklSettings)
    tautulli: TautulliSettings = Field(default_factory=TautulliSettings)
    resolver: ResolverSettings = Field(default_factory=ResolverSettings)
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)

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
        # The TOML file comes from `toml_file` in model_config, set by load_settings on a
        # subclass; without one this source is empty.
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    def trakt_enabled(self) -> bool:
        """Trakt is a delivery target when enabled and given a client id."""
        return self.trakt.enabled and bool(self.trakt.client_id)

    def simkl_enabled(self) -> bool:
        """SIMKL is a delivery target when enabled and given a client id."""
        return self.simkl.enabled and bool(self.simkl.client_id)

    def providers(self) -> list[str]:
        """Names of the configured delivery targets, in a stable order."""
        names = []
        if self.trakt_enabled():
            names.append("trakt")
        if self.simkl_enabled():
            names.append("simkl")
        return names


def load_settings(path: str | Path | None = None, **overrides: Any) -> Settings:
    """Load settings from *path* (or ``CROSSWATCHD_CONFIG``), environment, and *overrides*.

    Raises :class:`ConfigError` naming the first bad key, e.g.
    ``config error: http.port: Input should be less than or equal to 65535``.
    """
    chosen = str(path) if path else os.environ.get("CROSSWATCHD_CONFIG", "")
    if chosen:
        toml_path = Path(chosen)
        if not toml_path.is_file():
            raise ConfigError("--config", f"no such file: {toml_path}")
        try:
            with toml_path.open("rb") as fh:
                tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("--config", f"{toml_path} is not valid TOML: {exc}") from None
    settings_cls: type[Settings] = Settings
    if chosen:

        class _FromFile(Settings):
            model_config = SettingsConfigDict(toml_file=Path(chosen))

        settings_cls = _FromFile
    try:
        return settings_cls(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first["loc"]) or "config"
        message = first["msg"]
        if first["type"] == "extra_forbidden":
            message = "unknown key"
        raise ConfigError(key, message) from None
