"""Command line: ``crosswatchd [--config PATH] COMMAND``.

Commands: ``serve``, ``auth trakt|simkl``, ``status [--json]``, ``import tautulli``,
``unresolved list|retry``, ``webhook-url``. A bad config prints one line naming the key and
exits with code 2; an unreachable service prints one line and exits with code 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine
from datetime import date, datetime
from typing import Any, TypeVar

import aiohttp
import click
import orjson

from crosswatchd import __version__
from crosswatchd.app import (
    ensure_webhook_secret,
    open_cache,
    open_outbox,
    run_daemon,
    tautulli_client,
    webhook_url,
)
from crosswatchd.config import Settings, load_settings
from crosswatchd.errors import (
    AuthError,
    ConfigError,
    CrosswatchError,
    SourceUnavailableError,
    StorageError,
)
from crosswatchd.logs import configure_logging
from crosswatchd.outbox import DeliveryState, ReasonKind
from crosswatchd.tokens import TokenStore

__all__ = ["main"]

T = TypeVar("T")


def _run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def _settings(ctx: click.Context) -> Settings:
    settings = ctx.obj.get("settings")
    if settings is None:
        settings = load_settings(ctx.obj.get("config"), origin=ctx.obj["config_origin"])
        ctx.obj["settings"] = settings
    assert isinstance(settings, Settings)
    return settings


class _Group(click.Group):
    """Turns crosswatchd's own errors into one line and an exit code (never a traceback)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (ConfigError, StorageError) as exc:
            click.echo(f"crosswatchd: {exc}", err=True)
            sys.exit(2)
        except (SourceUnavailableError, AuthError) as exc:
            click.echo(f"crosswatchd: {exc}", err=True)
            sys.exit(1)
        except CrosswatchError as exc:
            click.echo(f"crosswatchd: {exc}", err=True)
            sys.exit(1)


@click.group(cls=_Group)
@click.option(
    "--config",
    "config",
    type=click.Path(dir_okay=False),
    envvar="CROSSWATCHD_CONFIG",
    help="TOML config file (env CROSSWATCHD_CONFIG).",
)
@click.version_option(__version__, prog_name="crosswatchd")
@click.pass_context
def main(ctx: click.Context, config: str | None) -> None:
    """crosswatchd: Plex/Tautulli plays to Trakt and SIMKL, exactly once."""
    # The data dir holds the viewing history, tokens and the webhook secret: whatever the
    # umask, every file a command creates is the user's alone (0600, directories 0700).
    os.umask(0o077)
    ctx.ensure_object(dict)
    ctx.obj["config"] = config
    from_env = ctx.get_parameter_source("config") is click.core.ParameterSource.ENVIRONMENT
    ctx.obj["config_origin"] = "CROSSWATCHD_CONFIG" if from_env else "--config"


# -- serve ---------------------------------------------------------------------------------


@main.command()
@click.pass_context
def serve(ctx: click.Context) -> None:
    """Run the daemon: webhook intake and delivery."""
    settings = _settings(ctx)
    with contextlib.suppress(KeyboardInterrupt):  # signal handlers normally catch it
        _run(run_daemon(settings))


@main.command()
@click.option("--ready", is_flag=True, help="Ask /readyz (can the daemon store and deliver?).")
@click.option("--timeout", "timeout_s", default=5.0, show_default=True, help="Seconds to wait.")
@click.pass_context
def healthcheck(ctx: click.Context, ready: bool, timeout_s: float) -> None:
    """Exit 0 if the local daemon answers /healthz (or /readyz) with 200, else 1.

    For Docker's HEALTHCHECK and other supervisors; asks 127.0.0.1 when the daemon listens
    on every address.
    """
    settings = _settings(ctx)
    host = settings.http.host
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    path = "/readyz" if ready else "/healthz"
    url = f"http://{host if ':' not in host else f'[{host}]'}:{settings.http.port}{path}"

    async def ask() -> int:
        timeout = aiohttp.ClientTimeout(total=timeout_s)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as resp:
                return resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            click.echo(f"crosswatchd: {url}: {type(exc).__name__}", err=True)
            return 0

    status = _run(ask())
    if status != 200:
        if status:
            click.echo(f"crosswatchd: {url} answered HTTP {status}", err=True)
        sys.exit(1)


@main.command("webhook-url")
@click.pass_context
def webhook_url_cmd(ctx: click.Context) -> None:
    """Print the Plex and Tautulli webhook URLs (they contain the secret)."""
    settings = _settings(ctx)
    secret, _ = ensure_webhook_secret(settings)
    click.echo(f"Plex:     {webhook_url(settings, secret, 'plex')}")
    click.echo(f"Tautulli: {webhook_url(settings, secret, 'tautulli')}")


# -- auth ----------------------------------------------------------------------------------


@main.group()
def auth() -> None:
    """Authorize crosswatchd with a target (stores a token, mode 0600)."""


def _authorize(
    settings: Settings, name: str, flow: Callable[[aiohttp.ClientSession], Awaitable[object]]
) -> None:
    """Run an authorization *flow* with a fresh HTTP session, then say it worked."""
    configure_logging(settings.log_level)

    async def go() -> None:
        async with aiohttp.ClientSession() as session:
            await flow(session)

    _run(go())
    click.echo(f"{name} authorized. A running daemon picks the token up by itself.")


@auth.command("trakt")
@click.pass_context
def auth_trakt(ctx: click.Context) -> None:
    """Trakt device-code flow: open the URL shown, enter the code."""
    from crosswatchd.providers.trakt import device_auth

    settings = _settings(ctx)
    if not settings.trakt.client_id or not settings.trakt.client_secret:
        raise ConfigError("trakt.client_id", "set trakt.client_id and trakt.client_secret")
    _authorize(
        settings,
        "Trakt",
        lambda session: device_auth(
            session=session,
            tokens=TokenStore(settings.data_dir, "trakt"),
            client_id=settings.trakt.client_id,
            client_secret=settings.trakt.client_secret,
            api_url=settings.trakt.api_url,
            out=click.echo,
        ),
    )


@auth.command("simkl")
@click.pass_context
def auth_simkl(ctx: click.Context) -> None:
    """SIMKL PIN flow: open the URL shown, enter the code."""
    from crosswatchd.providers.simkl import pin_auth

    settings = _settings(ctx)
    if not settings.simkl.client_id:
        raise ConfigError("simkl.client_id", "set simkl.client_id")
    _authorize(
        settings,
        "SIMKL",
        lambda session: pin_auth(
            session=session,
            tokens=TokenStore(settings.data_dir, "simkl"),
            client_id=settings.simkl.client_id,
            api_url=settings.simkl.api_url,
            out=click.echo,
        ),
    )


# -- status --------------------------------------------------------------------------------


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


async def _status(settings: Settings) -> dict[str, Any]:
    outbox = await open_outbox(settings)
    try:
        counts = await outbox.counts()
        parked = await outbox.parked(states=(DeliveryState.PARKED, DeliveryState.DEAD))
        backlog = await outbox.backlog()
        untargeted = await outbox.untargeted_plays()
        seen_tautulli = await outbox.seen_accounts("tautulli")
        seen_plex = await outbox.seen_accounts("plex")
    finally:
        await outbox.close()
    providers: dict[str, Any] = {}
    for name, c in counts.items():
        providers[name] = {
            "authorized": TokenStore(settings.data_dir, name).load() is not None,
            "pending": c.pending,
            "delivered": c.delivered,
            "dead": c.dead,
            "unresolved": c.unresolved,
            "parked": c.parked,
            "live_pending": c.live_pending,
        }
        if name in backlog:
            waiting = backlog[name]
            providers[name]["backlog"] = {
                "oldest_watched_at": _iso(waiting["oldest_watched_at"]),
                "attempts": waiting["max_attempts"],
                "next_attempt_at": _iso(waiting["next_attempt_at"]),
                "last_error": waiting["last_error"],
            }
    return {
        "version": __version__,
        "data_dir": str(settings.data_dir),
        "providers": providers,
        "problems": [
            {
                "id": row.id,
                "provider": row.provider,
                "state": row.state,
                "kind": row.reason_kind,
                "item": row.label,
                "reason": row.reason,
                "watched_at": _iso(row.watched_at),
            }
            for row in parked[:50]
        ],
        "plays_without_target": untargeted,
        "accounts_ignored": {"plex": seen_plex, "tautulli": seen_tautulli},
        "tautulli_users": list(settings.tautulli.users),
    }


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Show what is pending, delivered, parked and dead per target."""
    settings = _settings(ctx)
    report = _run(_status(settings))
    if as_json:
        click.echo(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
        return
    if not report["providers"]:
        click.echo("No delivery targets configured (set trakt.client_id and/or simkl.client_id).")
    if report["plays_without_target"]:
        click.echo(
            f"{report['plays_without_target']} play(s) stored with no target yet: they are"
            " delivered once a target is configured and the daemon restarted."
        )
    header = f"{'target':<8} {'auth':<5} {'pending':>8} {'delivered':>10} {'unresolved':>11}"
    header += f" {'parked':>7} {'dead':>6}"
    click.echo(header)
    for name, p in report["providers"].items():
        click.echo(
            f"{name:<8} {'yes' if p['authorized'] else 'NO':<5} {p['pending']:>8}"
            f" {p['delivered']:>10} {p['unresolved']:>11} {p['parked']:>7} {p['dead']:>6}"
        )
    for name, p in report["providers"].items():
        if not p["authorized"]:
            click.echo(f"! {name} is not authorized: run `crosswatchd auth {name}`")
        waiting = p.get("backlog")
        if waiting and waiting["last_error"]:
            click.echo(
                f"! {name}: {p['pending']} play(s) waiting since {waiting['oldest_watched_at']},"
                f" {waiting['attempts']} attempt(s), next at {waiting['next_attempt_at']};"
                f" last error: {waiting['last_error']}"
            )
    if report["problems"]:
        click.echo("\nNeeds attention (newest first; `crosswatchd unresolved list` for all):")
        for row in report["problems"][:10]:
            click.echo(
                f"  #{row['id']} {row['provider']} {row['state']}/{row['kind']}:"
                f" {row['item']} - {row['reason']}"
            )
    seen = report["accounts_ignored"]["tautulli"]
    if seen and not settings.tautulli.users:
        click.echo(
            "\nTautulli reported plays of these users, ignored because tautulli.users is"
            f" empty: {', '.join(seen)}"
        )
    if report["accounts_ignored"]["plex"]:
        click.echo(
            "Plex accounts ignored by the account filter: "
            + ", ".join(report["accounts_ignored"]["plex"])
        )


# -- unresolved ----------------------------------------------------------------------------


@main.group()
def unresolved() -> None:
    """Plays parked because their ids could not be found."""


@unresolved.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.option("--all-parked", is_flag=True, help="Also show not_found parked plays.")
@click.pass_context
def unresolved_list(ctx: click.Context, as_json: bool, all_parked: bool) -> None:
    """List parked plays with their reasons."""
    settings = _settings(ctx)

    async def go() -> list[Any]:
        outbox = await open_outbox(settings)
        try:
            kinds = None if all_parked else [ReasonKind.UNRESOLVED]
            return list(await outbox.parked(kinds=kinds))
        finally:
            await outbox.close()

    rows = _run(go())
    if as_json:
        payload = [
            {
                "id": r.id,
                "provider": r.provider,
                "item": r.label,
                "kind": r.reason_kind,
                "reason": r.reason,
                "watched_at": r.watched_at.isoformat() if r.watched_at else None,
            }
            for r in rows
        ]
        click.echo(orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode())
        return
    if not rows:
        click.echo("Nothing unresolved.")
        return
    for r in rows:
        when = r.watched_at.strftime("%Y-%m-%d %H:%M") if r.watched_at else "?"
        click.echo(f"#{r.id:<6} {r.provider:<6} {when}  {r.label}  - {r.reason}")


@unresolved.command("retry")
@click.argument("delivery_id", required=False, type=int)
@click.option("--all", "retry_all", is_flag=True, help="Retry every unresolved play.")
@click.pass_context
def unresolved_retry(ctx: click.Context, delivery_id: int | None, retry_all: bool) -> None:
    """Queue parked plays again (after fixing a match in Plex, say)."""
    if delivery_id is None and not retry_all:
        raise click.UsageError("give a delivery ID or --all")
    settings = _settings(ctx)

    async def go() -> int:
        # Cached "not found" answers would fail the retry again: forget them first (the
        # daemon drops its in-memory copies when it sees the retry).
        cache = await open_cache(settings)
        try:
            await cache.forget_negative()
        finally:
            await cache.close()
        outbox = await open_outbox(settings)
        try:
            if delivery_id is not None:
                return await outbox.retry_parked(delivery_id)
            return await outbox.retry_parked(None, kinds=(ReasonKind.UNRESOLVED,))
        finally:
            await outbox.close()

    n = _run(go())
    click.echo(f"Re-queued {n} play(s); the daemon resolves them again on its next pass.")


# -- import --------------------------------------------------------------------------------


@main.group("import")
def import_() -> None:
    """Import old plays."""


@import_.command("tautulli")
@click.option(
    "--since", type=click.DateTime(formats=["%Y-%m-%d"]), help="Only plays from this day."
)
@click.option("--dry-run", is_flag=True, help="Show what would be sent; write nothing.")
@click.option("--user", "users", multiple=True, help="Tautulli username (repeatable).")
@click.pass_context
def import_tautulli(ctx: click.Context, since: Any, dry_run: bool, users: tuple[str, ...]) -> None:
    """Backfill Tautulli's play history into the outbox (every target, deduplicated)."""
    from crosswatchd.importer import format_summary, run_import

    settings = _settings(ctx)
    # stdout is the report; problems reach the user as the one-line error on stderr.
    configure_logging("error", json=False, stream=sys.stderr)
    if not settings.tautulli.url:
        raise ConfigError("tautulli.url", "set tautulli.url (e.g. http://127.0.0.1:8181)")
    if not settings.tautulli.api_key:
        raise ConfigError(
            "tautulli.api_key", "set tautulli.api_key (Tautulli: Settings, Web Interface, API)"
        )
    chosen = list(users) or list(settings.tautulli.users)
    since_day: date | None = since.date() if since else None
    tty = sys.stderr.isatty()

    def progress(done: int, total: int) -> None:
        if tty:
            pct = f" {100 * done // total:3d}%" if total else ""
            click.echo(f"\r  read {done:,} / {total:,} history rows{pct}", nl=False, err=True)

    async def go() -> str:
        timeout = aiohttp.ClientTimeout(total=settings.delivery.timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            client = tautulli_client(settings, session)
            outbox = await open_outbox(settings)
            try:
                summary = await run_import(
                    client,
                    outbox,
                    users=chosen,
                    since=since_day,
                    dry_run=dry_run,
                    progress=progress,
                )
            finally:
                await outbox.close()
        if tty:
            click.echo("", err=True)
        return format_summary(summary, dry_run)

    if not settings.providers() and not dry_run:
        raise ConfigError("trakt.client_id", "no delivery target configured to import into")
    # A running daemon shares the outbox safely (WAL, short transactions, busy timeout).
    click.echo(_run(go()))


if __name__ == "__main__":  # pragma: no cover
    main()
