"""Prometheus metrics (prometheus-client), served at ``GET /metrics``.

One :class:`Metrics` per daemon holds its own registry (no module-level state) and is handed
to whoever counts something: the intake (webhooks), the drainers (delivery attempts and the
latency from the event to its delivery), the HTTP session (every request to a service, by
an ``aiohttp.TraceConfig``), the limiters (seconds spent waiting for a token), Trakt's token
refresh, the resolver (cache hits and misses by step) and reconcile (duration and drift).

Names are prefixed ``crosswatchd_``; label values are the names used everywhere else
(``provider="trakt"|"simkl"``, ``profile``, ``state`` as in ``status --json``):

==================================================  =========================================
crosswatchd_webhooks_total{source,outcome}          accepted | ignored | rejected
crosswatchd_deliveries{profile,provider,state}      read from the outbox at scrape time:
                                                    pending, delivered, unresolved, parked,
                                                    dead (the counts of ``status --json``)
crosswatchd_delivery_attempts_total{provider,       every settled attempt: delivered, retry,
  outcome}                                          parked, dead, …
crosswatchd_delivery_latency_seconds{provider}      event time → delivered (plays)
crosswatchd_provider_requests_total{provider,       every HTTP request to a service;
  status}                                           status "error" when it got no answer
crosswatchd_rate_limit_wait_seconds_total{provider} time spent waiting for the rate limiter
crosswatchd_token_refreshes_total{provider,outcome} ok | refused | failed
crosswatchd_resolver_lookups_total{step,result}     hit | miss (an outside request)
crosswatchd_reconcile_duration_seconds{profile,     the last pass
  provider}
crosswatchd_reconcile_drift{profile,provider,kind}  missing | extra, found by the last pass
crosswatchd_reconcile_passes_total{profile,         every pass of a target account: ok |
  provider,outcome}                                 failed (a side could not be read)
crosswatchd_reconcile_enqueued_total{profile,       plays | ratings enqueued by passes
  provider,kind}
crosswatchd_reconcile_api_calls_total{profile,      requests passes made to the target
  provider}
==================================================  =========================================

The endpoint answers the classic text format (``text/plain; version=0.0.4``) unless the
scraper asks for OpenMetrics in its ``Accept`` header.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder

__all__ = ["STATES", "Metrics"]

#: The delivery states the ``crosswatchd_deliveries`` gauge reports (``status --json`` keys).
STATES = ("pending", "delivered", "unresolved", "parked", "dead")

#: Seconds from an event to its delivery: a webhook play lands in seconds, one held back by
#: an outage may take days.
_LATENCY_BUCKETS = (1, 2, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 86400, 7 * 86400)


class Metrics:
    """The daemon's metrics and the methods that count them (see the module docstring)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._webhooks = Counter(
            "crosswatchd_webhooks", "Webhooks received, by outcome.", ["source", "outcome"],
            registry=r,
        )  # fmt: skip
        self._deliveries = Gauge(
            "crosswatchd_deliveries",
            "Deliveries in the outbox, by target account and state (read at scrape time).",
            ["profile", "provider", "state"],
            registry=r,
        )
        self._attempts = Counter(
            "crosswatchd_delivery_attempts",
            "Settled delivery attempts, by outcome.",
            ["provider", "outcome"],
            registry=r,
        )
        self._latency = Histogram(
            "crosswatchd_delivery_latency_seconds",
            "Seconds from the event (a play's watched_at) to its delivery.",
            ["provider"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self._requests = Counter(
            "crosswatchd_provider_requests",
            "HTTP requests to outside services, by answer status.",
            ["provider", "status"],
            registry=r,
        )
        self._waited = Counter(
            "crosswatchd_rate_limit_wait_seconds",
            "Seconds spent waiting for a rate-limit token.",
            ["provider"],
            registry=r,
        )
        self._refreshes = Counter(
            "crosswatchd_token_refreshes",
            "OAuth token refreshes, by outcome.",
            ["provider", "outcome"],
            registry=r,
        )
        self._lookups = Counter(
            "crosswatchd_resolver_lookups",
            "Id resolver answers by step: from the cache (hit) or asked outside (miss).",
            ["step", "result"],
            registry=r,
        )
        self._reconcile_s = Gauge(
            "crosswatchd_reconcile_duration_seconds",
            "Duration of the last reconcile pass.",
            ["profile", "provider"],
            registry=r,
        )
        self._drift = Gauge(
            "crosswatchd_reconcile_drift",
            "Plays the last reconcile pass found missing on the target, or only there.",
            ["profile", "provider", "kind"],
            registry=r,
        )
        self._reconcile_passes = Counter(
            "crosswatchd_reconcile_passes",
            "Reconcile passes of a target account, by outcome.",
            ["profile", "provider", "outcome"],
            registry=r,
        )
        self._reconcile_enqueued = Counter(
            "crosswatchd_reconcile_enqueued",
            "Plays and ratings reconcile passes enqueued.",
            ["profile", "provider", "kind"],
            registry=r,
        )
        self._reconcile_calls = Counter(
            "crosswatchd_reconcile_api_calls",
            "Requests reconcile passes made to a target account.",
            ["profile", "provider"],
            registry=r,
        )

    # -- counting ----------------------------------------------------------------------------

    def webhook(self, source: str, outcome: str) -> None:
        """A webhook answered: ``accepted``, ``ignored`` or ``rejected``."""
        self._webhooks.labels(source, outcome).inc()

    def delivery_attempt(self, provider: str, outcome: str) -> None:
        """A settled delivery attempt (the ``delivery.<outcome>`` log event's outcome)."""
        self._attempts.labels(provider, outcome).inc()

    def delivered(self, provider: str, latency_s: float) -> None:
        """A play delivered *latency_s* seconds after it was watched."""
        self._latency.labels(provider).observe(max(0.0, latency_s))

    def request(self, provider: str, status: int | str) -> None:
        """An HTTP request to *provider* answered with *status* (``"error"``: no answer)."""
        self._requests.labels(provider, str(status)).inc()

    def rate_limit_wait(self, provider: str, seconds: float) -> None:
        """*seconds* spent waiting for one of *provider*'s rate-limit tokens."""
        if seconds > 0:
            self._waited.labels(provider).inc(seconds)

    def token_refresh(self, provider: str, outcome: str) -> None:
        """An OAuth refresh: ``ok``, ``refused`` (the grant is gone) or ``failed``."""
        self._refreshes.labels(provider, outcome).inc()

    def resolver_lookup(self, step: str, hit: bool) -> None:
        """A resolver step answered from its cache (*hit*) or by asking outside."""
        self._lookups.labels(step, "hit" if hit else "miss").inc()

    def reconcile_pass(
        self,
        profile: str,
        provider: str,
        *,
        duration_s: float,
        api_calls: int,
        failed: bool = False,
        missing: int = 0,
        extra: int = 0,
        enqueued: int = 0,
        ratings_enqueued: int = 0,
    ) -> None:
        """A reconcile pass of one target account finished (*failed*: a side could not be
        read; the drift gauges then keep the last pass's values)."""
        self._reconcile_passes.labels(profile, provider, "failed" if failed else "ok").inc()
        self._reconcile_s.labels(profile, provider).set(duration_s)
        self._reconcile_calls.labels(profile, provider).inc(api_calls)
        if failed:
            return
        self._drift.labels(profile, provider, "missing").set(missing)
        self._drift.labels(profile, provider, "extra").set(extra)
        self._reconcile_enqueued.labels(profile, provider, "plays").inc(enqueued)
        self._reconcile_enqueued.labels(profile, provider, "ratings").inc(ratings_enqueued)

    def set_deliveries(self, counts: Mapping[tuple[str, str], Mapping[str, int]]) -> None:
        """The outbox's counts per target account ``(profile, provider)``, as ``status
        --json`` reports them (read at scrape time, so both agree)."""
        self._deliveries.clear()
        for (profile, provider), states in counts.items():
            for state in STATES:
                self._deliveries.labels(profile, provider, state).set(int(states.get(state, 0)))

    # -- the HTTP session --------------------------------------------------------------------

    def trace_config(self, services: Mapping[str, str]) -> aiohttp.TraceConfig:
        """An ``aiohttp.TraceConfig`` counting every request by service: *services* maps a
        base URL (``https://api.trakt.tv``) to its name (``trakt``); others count as
        ``other``."""
        by_origin = {_origin(url): name for url, name in services.items() if url}
        trace = aiohttp.TraceConfig()

        def name_of(url: Any) -> str:
            return by_origin.get(_origin(str(url)), "other")

        async def on_end(
            _session: aiohttp.ClientSession, _ctx: SimpleNamespace, params: Any
        ) -> None:
            service, status = name_of(params.url), params.response.status
            self.request(service, status)
            if params.url.path.endswith("/oauth/token"):  # Trakt's refresh ("Refresh Token")
                self.token_refresh(service, "ok" if status == 200 else "refused")

        async def on_error(
            _session: aiohttp.ClientSession, _ctx: SimpleNamespace, params: Any
        ) -> None:
            service = name_of(params.url)
            self.request(service, "error")
            if params.url.path.endswith("/oauth/token"):
                self.token_refresh(service, "failed")

        trace.on_request_end.append(on_end)
        trace.on_request_exception.append(on_error)
        return trace

    # -- exposition ----------------------------------------------------------------------------

    def render(self, accept: str | None) -> tuple[bytes, str]:
        """The metrics in the format *accept* asks for: ``(body, content_type)``."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


def _origin(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{parts.hostname}:{port}"
