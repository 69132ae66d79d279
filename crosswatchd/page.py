"""The status page (``GET /``): one server-rendered HTML page, no JavaScript, nothing loaded
from another host (the styles are inline), so it works on a LAN without internet and leaks
nothing to a CDN.

It shows what a person needs at a glance: the webhook URLs to paste (the secret masked, with
the command that prints it), every profile's target accounts with their authorization and
queue (pending, delivered, unresolved, parked and dead, as numbers next to the provider's
name), the oldest waiting play and its last error, recent deliveries, parked plays with their
reasons, the last reconcile and the watchlist sync. It is rendered from
:func:`crosswatchd.report.build_report` (the same report as ``status --json``) and never
contains the webhook secret or a token.
"""

from __future__ import annotations

from html import escape
from typing import Any

from crosswatchd.config import Settings

__all__ = ["render_page"]

_STYLE = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;background:#f6f7f9;
color:#1d2330}
header{background:#1d2330;color:#fff;padding:14px 24px}header h1{margin:0;font-size:20px}
header p{margin:2px 0 0;color:#b9c0cc;font-size:13px}
main{padding:16px 24px;max-width:1100px}
section{background:#fff;border:1px solid #dde1e7;border-radius:8px;padding:12px 16px;
margin:0 0 14px}
h2{font-size:16px;margin:0 0 8px}table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eef0f3;font-size:14px}
th{color:#5b6474;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}
code{background:#eef0f3;padding:1px 5px;border-radius:4px;font-size:13px}
.ok{color:#137333;font-weight:600}.bad{color:#b3261e;font-weight:600}
.muted{color:#5b6474}.warn{background:#fff4e5;border-color:#f5c16c}
"""


def _e(value: Any) -> str:
    return escape("" if value is None else str(value))


def _url(settings: Settings, source: str) -> str:
    raw = settings.http.host
    host = "&lt;this-machine&#x27;s-address&gt;" if raw in ("0.0.0.0", "::", "") else _e(raw)
    return f"http://{host}:{settings.http.port}/webhook/{source}?token=&lt;secret&gt;"


def _accounts(report: dict[str, Any]) -> str:
    rows = []
    for profile, accounts in report["profiles"].items():
        if not accounts:
            rows.append(
                f"<tr><td>{_e(profile)}</td><td colspan=8 class=muted>no target account</td></tr>"
            )
        for provider, a in accounts.items():
            auth = (
                "<span class=ok>yes</span>"
                if a["authorized"]
                else f"<span class=bad>no</span> <code>crosswatchd auth {_e(provider)}"
                + ("" if profile == "default" else f" --profile {_e(profile)}")
                + "</code>"
            )
            cells = "".join(
                f"<td class=n>{int(a[k])}</td>"
                for k in ("pending", "delivered", "unresolved", "parked", "dead", "live_pending")
            )
            rows.append(
                f"<tr><td>{_e(profile)}</td><th>{_e(provider)}</th><td>{auth}</td>{cells}</tr>"
            )
    return (
        "<table><tr><th>profile</th><th>target</th><th>authorized</th><th>pending</th>"
        "<th>delivered</th><th>unresolved</th><th>parked</th><th>dead</th><th>live</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _waiting(report: dict[str, Any]) -> str:
    items = []
    for profile, accounts in report["profiles"].items():
        for provider, a in accounts.items():
            w = a.get("backlog")
            if not w:
                continue
            nxt = f", next try {_e(w['next_attempt_at'])}" if w.get("next_attempt_at") else ""
            error = f"<br>last error: {_e(w['last_error'])}" if w.get("last_error") else ""
            items.append(
                f"<li><b>{_e(profile)}/{_e(provider)}</b>: {int(a['pending'])} play(s) waiting"
                f" since {_e(w['oldest_watched_at'])}, {int(w['attempts'])} attempt(s){nxt}"
                f"{error}</li>"
            )
    if not items:
        return "<p class=muted>Nothing waiting.</p>"
    return "<ul>" + "".join(items) + "</ul>"


def _rows(entries: list[dict[str, Any]], columns: list[tuple[str, str]], empty: str) -> str:
    if not entries:
        return f"<p class=muted>{empty}</p>"
    head = "".join(f"<th>{_e(title)}</th>" for title, _ in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_e(e.get(key))}</td>" for _, key in columns) + "</tr>"
        for e in entries
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _reconcile(report: dict[str, Any]) -> str:
    passes = report.get("reconcile") or {}
    entries = [
        {"profile": profile, "provider": provider, **last}
        for profile, providers in passes.items()
        for provider, last in providers.items()
    ]
    return _rows(
        entries,
        [
            ("profile", "profile"),
            ("target", "provider"),
            ("when", "finished_at"),
            ("missing", "missing"),
            ("enqueued", "enqueued"),
            ("extra", "extra"),
            ("requests", "api_calls"),
        ],
        "No reconcile pass yet.",
    )


def _watchlist(report: dict[str, Any]) -> str:
    entries = [
        {
            "profile": profile,
            "mode": entry["mode"],
            "when": entry["last_sync"] or "never",
            "side": side,
            **counts,
        }
        for profile, entry in (report.get("watchlist") or {}).items()
        for side, counts in entry.items()
        if isinstance(counts, dict)
    ]
    return _rows(
        entries,
        [
            ("profile", "profile"),
            ("mode", "mode"),
            ("last sync", "when"),
            ("list", "side"),
            ("pending", "pending"),
            ("parked", "parked"),
            ("why", "reason"),
        ],
        "No watchlist sync.",
    )


def render_page(settings: Settings, report: dict[str, Any]) -> str:
    """The status page of *report* (see the module docstring)."""
    daemon = report["daemon"]
    ignored = report["accounts_ignored"]
    notes = []
    if ignored["plex"] or ignored["tautulli"]:
        names = ", ".join(_e(n) for n in [*ignored["plex"], *ignored["tautulli"]])
        notes.append(f"<section class=warn><h2>Ignored accounts</h2><p>{names}</p></section>")
    problems = _rows(
        report["problems"][:20],
        [
            ("#", "id"),
            ("profile", "profile"),
            ("target", "provider"),
            ("state", "state"),
            ("item", "item"),
            ("reason", "reason"),
        ],
        "No parked or dead plays.",
    )
    recent = _rows(
        report.get("recent", []),
        [
            ("when", "settled_at"),
            ("profile", "profile"),
            ("target", "provider"),
            ("kind", "kind"),
            ("item", "item"),
            ("state", "state"),
        ],
        "Nothing delivered yet.",
    )
    return f"""<!doctype html>
<html lang=en><head><meta charset=utf-8>
<meta name=viewport content="width=device-width,initial-scale=1">
<title>crosswatchd status</title><style>{_STYLE}</style></head>
<body><header><h1>crosswatchd</h1>
<p>version {_e(report["version"])} · data dir {_e(report["data_dir"])} · daemon running
{"(pid " + _e(daemon["pid"]) + ")" if daemon["pid"] else ""}</p></header>
<main>
<section><h2>Webhook URLs</h2>
<table><tr><th>Plex</th><td><code>{_url(settings, "plex")}</code></td></tr>
<tr><th>Tautulli</th><td><code>{_url(settings, "tautulli")}</code></td></tr></table>
<p class=muted>The secret is not shown here: run <code>crosswatchd webhook-url</code> on the
server to print the URLs with it.</p></section>
<section><h2>Target accounts</h2>{_accounts(report)}</section>
<section><h2>Waiting</h2>{_waiting(report)}</section>
{"".join(notes)}
<section><h2>Recent deliveries</h2>{recent}</section>
<section><h2>Parked and dead</h2>{problems}
<p class=muted><code>crosswatchd unresolved list</code> lists them all;
<code>crosswatchd unresolved retry ID</code> sends one again.</p></section>
<section><h2>Last reconcile</h2>{_reconcile(report)}</section>
<section><h2>Watchlist</h2>{_watchlist(report)}</section>
</main></body></html>
"""
