"""``profile add|list|remove``: household members added at run time, kept in the roster (the
database: ``data_dir/profiles.sqlite3``, or the shared PostgreSQL database), beside those of
the config file. A running daemon (every replica) takes a change up within seconds."""

from __future__ import annotations

import secrets
from typing import Any

import click
import orjson

from crosswatchd.app import profile_webhook_url
from crosswatchd.cli._base import main, run, settings_of
from crosswatchd.config import PROFILE_NAME, TARGETS, Settings
from crosswatchd.errors import ConfigError
from crosswatchd.outbox import Outbox
from crosswatchd.profiles import Household, Profile, StoredProfile
from crosswatchd.roster import profile_token
from crosswatchd.storage import Storage

__all__ = ["profile"]


@main.group()
def profile() -> None:
    """Household members added at run time (no restart): add, list, remove."""


def _configured_names(settings: Settings) -> set[str]:
    return set(Household.from_settings(settings).names())


def _check_accounts(
    household: Household, plex_accounts: tuple[str, ...], tautulli_users: tuple[str, ...]
) -> None:
    """An account belongs to one person: a name another profile lists is a ConfigError."""
    for account in plex_accounts:
        owner = household.for_plex(account, None, user=False)
        if owner is not None:
            raise ConfigError(
                "--plex-account", f"plex account {account!r} is already in profile {owner.name!r}"
            )
    for user in tautulli_users:
        found = household.for_tautulli(user)
        if found is not None:
            raise ConfigError(
                "--tautulli-user", f"tautulli user {user!r} is already in profile {found.name!r}"
            )


@profile.command("add")
@click.argument("name")
@click.option(
    "--plex-account",
    "plex_accounts",
    multiple=True,
    metavar="NAME",
    help="A Plex Account.title (or Account.id) whose plays are this person's (repeatable).",
)
@click.option(
    "--tautulli-user",
    "tautulli_users",
    multiple=True,
    metavar="NAME",
    help="A Tautulli username whose plays are this person's (repeatable).",
)
@click.option(
    "--target",
    "targets",
    multiple=True,
    type=click.Choice(TARGETS),
    help="Where this person keeps a record (repeatable; default: every configured target).",
)
@click.pass_context
def profile_add(
    ctx: click.Context,
    name: str,
    plex_accounts: tuple[str, ...],
    tautulli_users: tuple[str, ...],
    targets: tuple[str, ...],
) -> None:
    """Add a household member NAME; print its own webhook URLs."""
    settings = settings_of(ctx)
    if not PROFILE_NAME.fullmatch(name):
        raise ConfigError("NAME", f"{name!r}: a profile name is 1-32 of a-z, 0-9, _ and -")
    if name in _configured_names(settings):
        raise ConfigError(
            "NAME", f"profile {name!r} is defined in the config file; it cannot be added again"
        )
    stored = StoredProfile(
        name=name,
        plex_accounts=tuple(a.strip() for a in plex_accounts if a.strip()),
        tautulli_users=tuple(u.strip() for u in tautulli_users if u.strip()),
        targets=tuple(dict.fromkeys(targets)) or None,
        webhook_token=secrets.token_urlsafe(24),
    )

    async def go() -> bool:
        storage = await Storage.open(settings)
        try:
            household = await Household.load(settings, storage)
            if household.get(name) is not None:
                return False
            _check_accounts(household, stored.plex_accounts, stored.tautulli_users)
            store = await storage.roster()
            assert store is not None
            try:
                return await store.add(stored)
            finally:
                await store.close()
        finally:
            await storage.close()

    if not run(go()):
        raise ConfigError("NAME", f"profile {name!r} already exists")
    configured = settings.providers()
    goes_to = [t for t in configured if stored.targets is None or t in stored.targets]
    click.echo(f"Added profile {name} (targets: {', '.join(goes_to) or 'none configured'}).")
    for target in stored.targets or ():
        if target not in configured:
            click.echo(
                f"  note: {target} is not configured ({target}.client_id): nothing goes there"
            )
    click.echo(f"  authorize its accounts: crosswatchd auth trakt|simkl --profile {name}")
    click.echo(f"  Plex:     {profile_webhook_url(settings, stored.webhook_token, 'plex')}")
    click.echo(f"  Tautulli: {profile_webhook_url(settings, stored.webhook_token, 'tautulli')}")


def _row(profile: Profile) -> dict[str, Any]:
    return {
        "name": profile.name,
        "source": "database" if profile.stored else "config",
        "plex_accounts": sorted(profile.plex_accounts),
        "tautulli_users": sorted(profile.tautulli_users),
        "targets": list(profile.targets),
        "owner_only": profile.owner_only,
    }


@profile.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def profile_list(ctx: click.Context, as_json: bool) -> None:
    """List the profiles: the config file's and the database's."""
    settings = settings_of(ctx)

    async def go() -> Household:
        storage = await Storage.open(settings)
        try:
            return await Household.load(settings, storage)
        finally:
            await storage.close()

    rows = [_row(p) for p in run(go()).profiles]
    if as_json:
        click.echo(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
        return
    for row in rows:
        plex = ", ".join(row["plex_accounts"]) or (
            "(the webhook owner's own plays)" if row["owner_only"] else "-"
        )
        click.echo(
            f"{row['name']:<16} {row['source']:<8} plex: {plex}; tautulli:"
            f" {', '.join(row['tautulli_users']) or '-'}; targets:"
            f" {', '.join(row['targets']) or '-'}"
        )


@profile.command("remove")
@click.argument("name")
@click.option(
    "--discard-queued",
    is_flag=True,
    help="Also drop its plays and changes not delivered yet (otherwise they are still sent).",
)
@click.pass_context
def profile_remove(ctx: click.Context, name: str, discard_queued: bool) -> None:
    """Remove household member NAME (added with `profile add`).

    Its webhook URLs stop working at once. Plays already queued for it are kept and still
    delivered, unless --discard-queued drops them (run it again later to drop what is left).
    """
    settings = settings_of(ctx)
    if name in _configured_names(settings):
        raise ConfigError(
            "NAME", f"profile {name!r} is defined in the config file; remove it there"
        )

    async def go() -> tuple[bool, int, int]:
        storage = await Storage.open(settings)
        try:
            store = await storage.roster(create=False)
            removed = False
            if store is not None:
                try:
                    removed = await store.remove(name)
                finally:
                    await store.close()
            outbox = await storage.outbox(Household.from_settings(settings))
            try:
                discarded = await outbox.discard_profile(name) if discard_queued else 0
                queued = await _queued(outbox, name)
            finally:
                await outbox.close()
            return removed, queued, discarded
        finally:
            await storage.close()

    removed, queued, discarded = run(go())
    if not removed and not discard_queued:
        raise ConfigError("NAME", f"no profile {name!r} in the database")
    if removed:
        click.echo(f"Removed profile {name}; its webhook URLs no longer work.")
    if discarded:
        click.echo(f"Discarded {discarded} delivery(ies) of {name} not delivered yet.")
    if queued:
        click.echo(
            f"{queued} play(s)/change(s) of {name} are still queued and will be delivered;"
            f" `crosswatchd profile remove {name} --discard-queued` drops them."
        )


async def _queued(outbox: Outbox, name: str) -> int:
    """Deliveries of profile *name* waiting or parked (what a removal keeps)."""
    total = 0
    for (profile, _), counts in (await outbox.account_counts()).items():
        if profile == name:
            total += (
                counts.pending
                + counts.unresolved
                + counts.parked
                + counts.ratings_pending
                + counts.ratings_parked
                + counts.watchlist_pending
                + counts.watchlist_parked
            )
    return total


def profile_urls(
    settings: Settings, household: Household, name: str, secret: str
) -> tuple[str, str]:
    """The Plex and Tautulli URLs of profile *name*'s own webhook (a config file profile's
    token is derived from the webhook *secret*). ConfigError naming ``--profile`` for an
    unknown name."""
    found = household.get(name)
    if found is None:
        raise ConfigError(
            "--profile", f"no profile {name!r} (profiles: {', '.join(household.names())})"
        )
    token = found.webhook_token
    if not token:
        token = profile_token(secret, found.name)
    return (
        profile_webhook_url(settings, token, "plex"),
        profile_webhook_url(settings, token, "tautulli"),
    )
