-- crosswatchd outbox schema, version 1. Applied by outbox.py when PRAGMA user_version < 1.
-- Times are unix seconds (REAL, UTC). Items are JSON (models.Item.to_dict).

CREATE TABLE events (
    id              INTEGER PRIMARY KEY,
    source          TEXT    NOT NULL,              -- plex | tautulli | import
    action          TEXT    NOT NULL,              -- start | pause | stop | watched
    account         TEXT    NOT NULL,              -- source account (Plex Account.title, Tautulli username)
    item            TEXT    NOT NULL,              -- JSON of the item as the source gave it
    label           TEXT    NOT NULL,              -- human label for status and logs
    occurred_at     REAL    NOT NULL,              -- event time; a play's watched_at
    received_at     REAL    NOT NULL,
    progress_pct    REAL,
    view_offset_ms  INTEGER,
    duration_ms     INTEGER,
    session         TEXT,
    keys            TEXT    NOT NULL,              -- JSON array of identity keys (models.item_keys)
    providers       TEXT    NOT NULL,              -- JSON array of targets at enqueue time
    dedupe_window_s REAL    NOT NULL
);

CREATE TABLE deliveries (
    id               INTEGER PRIMARY KEY,
    event_id         INTEGER NOT NULL REFERENCES events (id),
    provider         TEXT    NOT NULL,             -- trakt | simkl
    kind             TEXT    NOT NULL CHECK (kind IN ('play', 'live')),
    state            TEXT    NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'leased', 'delivered', 'parked', 'dead', 'dropped')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    -- pending: when it may be tried; leased: when the lease expires (so one index serves both)
    next_attempt_at  REAL    NOT NULL,
    lease_token      TEXT,
    sent_at          REAL,                         -- a send that may have landed; check before resending
    last_error       TEXT,
    reason           TEXT,                         -- why parked / dead / dropped
    reason_kind      TEXT,                         -- unresolved | not_found | permanent | stale | ...
    resolved_item    TEXT,                         -- JSON of the item with resolved ids
    resolved_by      TEXT,                         -- resolver step
    watched_at       REAL,                         -- plays only
    unconfirmed      INTEGER NOT NULL DEFAULT 0,   -- sends the target neither confirmed nor showed
    created_at       REAL    NOT NULL,
    updated_at       REAL    NOT NULL,
    settled_at       REAL
);

CREATE INDEX deliveries_ready ON deliveries (provider, kind, state, next_attempt_at);
CREATE INDEX deliveries_event ON deliveries (event_id);

-- Identity keys of every play delivery: the dedupe index.
CREATE TABLE play_keys (
    provider    TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    watched_at  REAL    NOT NULL,
    delivery_id INTEGER NOT NULL,
    PRIMARY KEY (provider, key, watched_at, delivery_id)
) WITHOUT ROWID;

-- Accounts seen by sources that were not accepted (so status can tell the user what to allow).
CREATE TABLE seen_accounts (
    source     TEXT NOT NULL,
    account    TEXT NOT NULL,
    last_seen  REAL NOT NULL,
    events     INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (source, account)
) WITHOUT ROWID;

-- Small counters, e.g. retry_generation (bumped by `crosswatchd unresolved retry` so a running
-- daemon forgets its cached negative id lookups).
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;

-- Fan-out and dedupe in the same statement as the event insert, so a batch of events is one
-- statement. A completed play becomes one 'play' delivery per target unless that target
-- already has a play sharing any identity key within the dedupe window; live state becomes one
-- 'live' delivery per target. Outbox.adopt_targets() uses the same NOT EXISTS test for targets
-- configured after an event arrived.
CREATE TRIGGER events_fan_out AFTER INSERT ON events
BEGIN
    INSERT INTO deliveries (event_id, provider, kind, next_attempt_at, watched_at,
                            created_at, updated_at)
    SELECT NEW.id, p.value,
           CASE WHEN NEW.action = 'watched' THEN 'play' ELSE 'live' END,
           NEW.received_at,
           CASE WHEN NEW.action = 'watched' THEN NEW.occurred_at END,
           NEW.received_at, NEW.received_at
    FROM json_each(NEW.providers) AS p
    WHERE NEW.action <> 'watched'
       OR NOT EXISTS (
            SELECT 1
            FROM play_keys AS k
            WHERE k.provider = p.value
              AND k.key IN (SELECT value FROM json_each(NEW.keys))
              AND k.watched_at BETWEEN NEW.occurred_at - NEW.dedupe_window_s
                                   AND NEW.occurred_at + NEW.dedupe_window_s
       );
END;

-- Every play delivery, however created, records its event's identity keys for dedupe.
CREATE TRIGGER play_keys_of_delivery AFTER INSERT ON deliveries
WHEN NEW.kind = 'play'
BEGIN
    INSERT INTO play_keys (provider, key, watched_at, delivery_id)
    SELECT NEW.provider, nk.value, NEW.watched_at, NEW.id
    FROM events AS e, json_each(e.keys) AS nk
    WHERE e.id = NEW.event_id;
END;
