-- crosswatchd outbox schema: the migrations, in order. Block "-- migration: N" brings a file
-- from PRAGMA user_version N-1 to N; crosswatchd.sqlite.migrate applies the missing blocks in
-- one transaction (a new file gets all of them). A change to the schema is a new block.
-- Times are unix seconds (REAL, UTC). Items are JSON (models.Item.to_dict).

-- migration: 1

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

-- Version 1 also created two triggers: events_fan_out, with the dedupe rule written inline,
-- and play_keys_of_delivery. Migration 2 drops them where they exist and creates their
-- successors, so they are left out here: every file ends with the same schema, and the rule
-- is written once (migration 2).

-- migration: 2
-- Households and one statement of the dedupe rule. Every event and delivery belongs to a
-- profile (a household member; rows of version 1 are the implicit profile 'default'), and a
-- delivery's target is a target account: (profile, provider). Plays are deduplicated per
-- target account. The dedupe rule and the fan-out become views, so the trigger, the intake's
-- RETURNING clause and Outbox.adopt_targets() all read one definition.

DROP TRIGGER IF EXISTS events_fan_out;
DROP TRIGGER IF EXISTS play_keys_of_delivery;

ALTER TABLE events ADD COLUMN profile TEXT NOT NULL DEFAULT 'default';
ALTER TABLE deliveries ADD COLUMN profile TEXT NOT NULL DEFAULT 'default';

DROP INDEX IF EXISTS deliveries_ready;
CREATE INDEX deliveries_ready ON deliveries (profile, provider, kind, state, next_attempt_at);

-- The dedupe index, per target account: rebuilt with the profile in its key.
CREATE TABLE play_keys_v2 (
    profile     TEXT    NOT NULL,
    provider    TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    watched_at  REAL    NOT NULL,
    delivery_id INTEGER NOT NULL,
    PRIMARY KEY (profile, provider, key, watched_at, delivery_id)
) WITHOUT ROWID;
INSERT INTO play_keys_v2 (profile, provider, key, watched_at, delivery_id)
SELECT 'default', provider, key, watched_at, delivery_id FROM play_keys;
DROP TABLE play_keys;
ALTER TABLE play_keys_v2 RENAME TO play_keys;

-- Every play delivery, however created, records its event's identity keys for dedupe.
CREATE TRIGGER play_keys_of_delivery AFTER INSERT ON deliveries
WHEN NEW.kind = 'play'
BEGIN
    INSERT INTO play_keys (profile, provider, key, watched_at, delivery_id)
    SELECT NEW.profile, NEW.provider, nk.value, NEW.watched_at, NEW.id
    FROM events AS e, json_each(e.keys) AS nk
    WHERE e.id = NEW.event_id;
END;

-- THE dedupe rule: an event repeats a play a target account already has when that account
-- (the event's profile on a provider) has a play delivery sharing any identity key with the
-- event, watched within the event's dedupe_window_s of its occurred_at. One row per (event,
-- provider, earlier play delivery); callers ask "does a row exist for this event and
-- provider?". CROSS JOIN fixes the join order (the event's keys first, then a primary-key
-- search of play_keys by profile, provider, key and time): left to itself the planner would
-- scan all of the account's keys.
CREATE VIEW play_duplicates (event_id, provider, delivery_id) AS
SELECT e.id, k.provider, k.delivery_id
FROM events AS e
CROSS JOIN json_each(e.keys) AS ek
CROSS JOIN play_keys AS k
WHERE k.profile = e.profile
  AND k.key = ek.value
  AND k.watched_at BETWEEN e.occurred_at - e.dedupe_window_s
                       AND e.occurred_at + e.dedupe_window_s;

-- The deliveries an event fans out into: for each provider of its profile it was stored for
-- (events.providers), a completed play becomes a 'play' delivery (watched at occurred_at)
-- unless it repeats one (play_duplicates); live state becomes a 'live' delivery.
CREATE VIEW event_fan_out (event_id, profile, provider, kind, watched_at) AS
SELECT e.id, e.profile, p.value,
       CASE WHEN e.action = 'watched' THEN 'play' ELSE 'live' END,
       CASE WHEN e.action = 'watched' THEN e.occurred_at END
FROM events AS e, json_each(e.providers) AS p
WHERE e.action <> 'watched'
   OR NOT EXISTS (SELECT 1 FROM play_duplicates AS x
                  WHERE x.event_id = e.id AND x.provider = p.value);

-- Fan-out in the same statement as the event insert, so a batch of events is one statement.
-- Outbox.adopt_targets() tests play_duplicates for targets configured after an event arrived.
CREATE TRIGGER events_fan_out AFTER INSERT ON events
BEGIN
    INSERT INTO deliveries (event_id, profile, provider, kind, next_attempt_at, watched_at,
                            created_at, updated_at)
    SELECT f.event_id, f.profile, f.provider, f.kind, NEW.received_at, f.watched_at,
           NEW.received_at, NEW.received_at
    FROM event_fan_out AS f
    WHERE f.event_id = NEW.id;
END;
