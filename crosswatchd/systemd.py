"""systemd's notify protocol (``sd_notify(3)``): readiness, watchdog pings and stopping.

Under ``Type=notify`` systemd passes ``NOTIFY_SOCKET`` (a filesystem path, or ``@name`` for
an abstract socket); the service sends newline-separated ``KEY=VALUE`` datagrams to it:
``READY=1`` once it accepts webhooks, ``WATCHDOG=1`` at least every ``WATCHDOG_USEC / 2``
microseconds while healthy (``WatchdogSec=``; systemd restarts a service that stops pinging),
``STOPPING=1`` when it begins to shut down, and ``STATUS=…`` free text for
``systemctl status``. With ``NotifyAccess=main`` (the default) only the main process may
send, which the daemon is. Outside systemd (no ``NOTIFY_SOCKET``) every call does nothing.

The watchdog pings only while the service can do its work: :func:`watchdog` runs in the
event loop (a blocked loop sends nothing) and, before each ping, runs a probe (a trivial
outbox query) that must answer within the interval — a hung database thread stops the pings
too, and systemd restarts the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Awaitable, Callable, Mapping

import structlog

__all__ = ["Notifier", "watchdog"]

log = structlog.get_logger(__name__)


class Notifier:
    """Sends notify messages to ``NOTIFY_SOCKET``; a no-op when it is not set.

    ``watchdog_interval_s`` is ``WATCHDOG_USEC / 2`` in seconds when systemd asked for a
    watchdog for this process (``WATCHDOG_PID`` unset or equal to our pid), else ``None``.
    """

    def __init__(self, address: str | None, *, watchdog_usec: int | None = None) -> None:
        self._address = address
        self.watchdog_interval_s = watchdog_usec / 2_000_000 if watchdog_usec else None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        """The notifier systemd configured through the environment (``sd_notify(3)``,
        ``sd_watchdog_enabled(3)``)."""
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET") or None
        usec: int | None = None
        raw_usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        if raw_usec.isdigit() and int(raw_usec) > 0 and (not pid or pid == str(os.getpid())):
            usec = int(raw_usec)
        return cls(address, watchdog_usec=usec)

    @property
    def enabled(self) -> bool:
        """True when running under a notify-aware service manager."""
        return self._address is not None

    def notify(self, *fields: str) -> bool:
        """Send ``fields`` (``"READY=1"``, ``"STATUS=…"``) as one datagram. Returns False when
        there is no socket or sending failed (never raises: telling systemd is best effort)."""
        if self._address is None:
            return False
        address = self._address
        if address.startswith("@"):
            address = "\0" + address[1:]
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(address)
                sock.sendall("\n".join(fields).encode())
        except OSError as exc:
            log.warning("systemd.notify_failed", error=str(exc))
            return False
        return True

    def ready(self, status: str = "") -> bool:
        """``READY=1``: start-up finished, webhooks are accepted."""
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def stopping(self) -> bool:
        """``STOPPING=1``: shutting down (systemd waits up to ``TimeoutStopSec=``)."""
        return self.notify("STOPPING=1", "STATUS=stopping")


async def watchdog(
    notifier: Notifier,
    stop: asyncio.Event,
    probe: Callable[[], Awaitable[object]],
) -> None:
    """Ping ``WATCHDOG=1`` every ``notifier.watchdog_interval_s`` while *probe* (e.g. a
    ``SELECT 1`` on the outbox) answers within that interval; return when *stop* is set.

    A probe that fails or hangs skips the ping and is logged once until it recovers, so a
    stuck database makes systemd restart the daemon after ``WatchdogSec=``.
    """
    interval_s = notifier.watchdog_interval_s
    if interval_s is None:
        return
    unhealthy = False
    while not stop.is_set():
        try:
            async with asyncio.timeout(interval_s):
                await probe()
        except Exception as exc:  # the probe's failure is the news, whatever it is
            if not unhealthy:
                log.error("systemd.watchdog_withheld", reason=f"{type(exc).__name__}: {exc}")
            unhealthy = True
        else:
            if unhealthy:
                log.info("systemd.watchdog_resumed")
            unhealthy = False
            notifier.notify("WATCHDOG=1")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)
