"""The ``crosswatchd`` command group and what every command shares: settings, one-line
errors with exit codes, the event loop, the ``--profile`` option."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import click

from crosswatchd import __version__
from crosswatchd.config import Settings, load_settings
from crosswatchd.errors import (
    AuthError,
    ConfigError,
    CrosswatchError,
    SourceUnavailableError,
    StorageError,
)
from crosswatchd.imports._files import FileFormatError
from crosswatchd.profiles import Household, Profile
from crosswatchd.storage import Storage

__all__ = [
    "choose",
    "household_of",
    "load_household",
    "main",
    "pick_profile",
    "profile_option",
    "run",
    "settings_of",
]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run *coro* to completion in a fresh event loop."""
    return asyncio.run(coro)


def settings_of(ctx: click.Context) -> Settings:
    """The settings of this invocation (loaded once; a problem is a ConfigError)."""
    root = ctx.find_root()
    settings = root.obj.get("settings")
    if settings is None:
        settings = load_settings(root.obj.get("config"), origin=root.obj["config_origin"])
        root.obj["settings"] = settings
    assert isinstance(settings, Settings)
    return settings


def profile_option(help_text: str) -> Callable[[F], F]:
    """``--profile NAME``: which household member a command is about."""
    return click.option("--profile", "profile", default=None, metavar="NAME", help=help_text)


async def household_of(settings: Settings) -> Household:
    """The household a command works with: the config file's profiles and the roster's
    (``crosswatchd profile add``). Raises ConfigError for a name in both, StorageError when
    the database cannot be reached."""
    storage = await Storage.open(settings)
    try:
        return await Household.load(settings, storage)
    finally:
        await storage.close()


def load_household(settings: Settings) -> Household:
    """:func:`household_of`, from a command's synchronous body."""
    return run(household_of(settings))


def pick_profile(settings: Settings, name: str | None, *, required: bool = False) -> Profile:
    """The profile called *name* (``default`` when none is given and there are no
    ``[[profiles]]``), of the config file or of the roster. Raises ConfigError naming
    ``--profile`` for an unknown name, or when *required* and several profiles make the
    choice ambiguous. From a synchronous command body; async code uses :func:`choose`."""
    return choose(load_household(settings), name, required=required)


def choose(household: Household, name: str | None, *, required: bool = False) -> Profile:
    """:func:`pick_profile` from a household already loaded."""
    if name is None:
        if household.explicit and (required or len(household.profiles) > 1):
            raise ConfigError("--profile", f"name the profile ({', '.join(household.names())})")
        return household.profiles[0]
    profile = household.get(name)
    if profile is None:
        raise ConfigError(
            "--profile", f"no profile {name!r} (profiles: {', '.join(household.names())})"
        )
    return profile


class _Group(click.Group):
    """Turns crosswatchd's own errors into one line and an exit code (never a traceback):
    2 for configuration and storage problems and for a file a command cannot read or write
    (``FileFormatError``: the file and the problem), 1 for everything else."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (ConfigError, StorageError, FileFormatError) as exc:
            click.echo(f"crosswatchd: {exc}", err=True)
            sys.exit(2)
        except (SourceUnavailableError, AuthError, CrosswatchError) as exc:
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
