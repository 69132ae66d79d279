"""``auth trakt|simkl|plex [--profile NAME]``: authorize a target account (or, for ``plex``,
sign in the plex.tv account of a member's watchlist), store its token."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiohttp
import click

from crosswatchd.cli._base import main, pick_profile, profile_option, run, settings_of
from crosswatchd.config import Settings
from crosswatchd.errors import ConfigError
from crosswatchd.logs import configure_logging
from crosswatchd.tokens import TokenStore

__all__ = ["auth"]

_PROFILE_HELP = "The household member whose account this is (default: the only one)."


@main.group()
def auth() -> None:
    """Authorize crosswatchd with a target account (stores a token, mode 0600)."""


def _authorize(
    settings: Settings, name: str, flow: Callable[[aiohttp.ClientSession], Awaitable[object]]
) -> None:
    """Run an authorization *flow* with a fresh HTTP session, then say it worked."""
    configure_logging(settings.log_level)

    async def go() -> None:
        async with aiohttp.ClientSession() as session:
            await flow(session)

    run(go())
    click.echo(f"{name} authorized. A running daemon picks the token up by itself.")


@auth.command("trakt")
@profile_option(_PROFILE_HELP)
@click.pass_context
def auth_trakt(ctx: click.Context, profile: str | None) -> None:
    """Trakt device-code flow: open the URL shown, enter the code."""
    from crosswatchd.providers.trakt import device_auth

    settings = settings_of(ctx)
    if not settings.trakt.client_id or not settings.trakt.client_secret:
        raise ConfigError("trakt.client_id", "set trakt.client_id and trakt.client_secret")
    member = pick_profile(settings, profile)
    _authorize(
        settings,
        "Trakt" if not profile else f"Trakt for {member.name}",
        lambda session: device_auth(
            session=session,
            tokens=TokenStore(settings.data_dir, "trakt", member.name),
            client_id=settings.trakt.client_id,
            client_secret=settings.trakt.client_secret,
            api_url=settings.trakt.api_url,
            out=click.echo,
        ),
    )


@auth.command("simkl")
@profile_option(_PROFILE_HELP)
@click.pass_context
def auth_simkl(ctx: click.Context, profile: str | None) -> None:
    """SIMKL PIN flow: open the URL shown, enter the code."""
    from crosswatchd.providers.simkl import pin_auth

    settings = settings_of(ctx)
    if not settings.simkl.client_id:
        raise ConfigError("simkl.client_id", "set simkl.client_id")
    member = pick_profile(settings, profile)
    _authorize(
        settings,
        "SIMKL" if not profile else f"SIMKL for {member.name}",
        lambda session: pin_auth(
            session=session,
            tokens=TokenStore(settings.data_dir, "simkl", member.name),
            client_id=settings.simkl.client_id,
            api_url=settings.simkl.api_url,
            out=click.echo,
        ),
    )


@auth.command("plex")
@profile_option(_PROFILE_HELP)
@click.pass_context
def auth_plex(ctx: click.Context, profile: str | None) -> None:
    """Plex PIN sign-in for the watchlist: open plex.tv/link, enter the code."""
    from crosswatchd.sources.plextv import client_identifier, pin_login

    settings = settings_of(ctx)
    member = pick_profile(settings, profile)
    _authorize(
        settings,
        "Plex" if not profile else f"Plex for {member.name}",
        lambda session: pin_login(
            session=session,
            plextv_url=settings.plex.plextv_url,
            client_id=client_identifier(settings.data_dir),
            tokens=TokenStore(settings.data_dir, "plex", member.name),
            out=click.echo,
        ),
    )
