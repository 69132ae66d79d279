"""``serve``, ``healthcheck`` and ``webhook-url``."""

from __future__ import annotations

import contextlib
import sys

import aiohttp
import click

from crosswatchd.app import ensure_webhook_secret, run_daemon, webhook_url
from crosswatchd.cli._base import main, profile_option, run, settings_of
from crosswatchd.profiles import Household
from crosswatchd.storage import Storage

__all__ = ["healthcheck", "serve", "webhook_url_cmd"]


@main.command()
@click.pass_context
def serve(ctx: click.Context) -> None:
    """Run the daemon: webhook intake and delivery."""
    settings = settings_of(ctx)
    with contextlib.suppress(KeyboardInterrupt):  # signal handlers normally catch it
        run(run_daemon(settings))


@main.command()
@click.option("--ready", is_flag=True, help="Ask /readyz (can the daemon store and deliver?).")
@click.option("--timeout", "timeout_s", default=5.0, show_default=True, help="Seconds to wait.")
@click.pass_context
def healthcheck(ctx: click.Context, ready: bool, timeout_s: float) -> None:
    """Exit 0 if the local daemon answers /healthz (or /readyz) with 200, else 1.

    For Docker's HEALTHCHECK and other supervisors; asks 127.0.0.1 when the daemon listens
    on every address.
    """
    settings = settings_of(ctx)
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

    status = run(ask())
    if status != 200:
        if status:
            click.echo(f"crosswatchd: {url} answered HTTP {status}", err=True)
        sys.exit(1)


@main.command("webhook-url")
@profile_option("Print this profile's own URLs: their events are that profile's alone.")
@click.pass_context
def webhook_url_cmd(ctx: click.Context, profile: str | None) -> None:
    """Print the Plex and Tautulli webhook URLs (they contain the secret)."""
    settings = settings_of(ctx)

    async def secret_and_household() -> tuple[str, Household]:
        async with Storage.opened(settings) as storage:
            secret, _ = await ensure_webhook_secret(storage)
            return secret, await Household.load(settings, storage)

    secret, household = run(secret_and_household())
    if profile is not None:
        from crosswatchd.cli.profiles import profile_urls

        plex, tautulli = profile_urls(settings, household, profile, secret)
        click.echo(f"Plex:     {plex}")
        click.echo(f"Tautulli: {tautulli}")
        return
    click.echo(f"Plex:     {webhook_url(settings, secret, 'plex')}")
    click.echo(f"Tautulli: {webhook_url(settings, secret, 'tautulli')}")
