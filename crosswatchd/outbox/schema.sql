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
-- Households, ratings and watchlists, and one statement of the dedupe rule.
--
-- Every event and delivery belongs to a profile (a household member; rows of version 1 are the
-- implicit profile 'default'), and a delivery's target is a target account: (profile,
-- provider). Besides plays and live state, a delivery can be a rating or a watchlist change:
-- for those the latest change of an item per target account wins. Backfilled events (imports,
-- reconcile) have a lower priority than what webhooks report now. The dedupe rule and the
-- fan-out become views, so the trigger, the intake's RETURNING clause and
-- Outbox.adopt_targets() all read one definition.

DROP TRIGGER IF EXISTS events_fan_out;
DROP TRIGGER IF EXISTS play_keys_of_delivery;

ALTER TABLE events ADD COLUMN profile TEXT NOT NULL DEFAULT 'default';
ALTER TABLE events ADD COLUMN rating INTEGER;                 -- rate: 1-10; NULL: cleared
ALTER TABLE events ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;  -- 0 now, 1 backfill

-- deliveries, rebuilt for the new kinds (a CHECK cannot be altered in place).
CREATE TABLE deliveries_v2 (
    id               INTEGER PRIMARY KEY,
    event_id         INTEGER NOT NULL REFERENCES events (id),
    profile          TEXT    NOT NULL DEFAULT 'default',
    provider         TEXT    NOT NULL,             -- trakt | simkl | plex (watchlist)
    kind             TEXT    NOT NULL CHECK (kind IN ('play', 'live', 'rating', 'watchlist')),
    state            TEXT    NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'leased', 'delivered', 'parked', 'dead', 'dropped')),
    priority         INTEGER NOT NULL DEFAULT 0,   -- claimed in this order: 0 before 1
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
INSERT INTO deliveries_v2 (id, event_id, provider, kind, state, attempts, next_attempt_at,
                           lease_token, sent_at, last_error, reason, reason_kind, resolved_item,
                           resolved_by, watched_at, unconfirmed, created_at, updated_at,
                           settled_at)
SELECT id, event_id, provider, kind, state, attempts, next_attempt_at, lease_token, sent_at,
       last_error, reason, reason_kind, resolved_item, resolved_by, watched_at, unconfirmed,
       created_at, updated_at, settled_at
FROM deliveries;
DROP TABLE deliveries;
ALTER TABLE deliveries_v2 RENAME TO deliveries;
CREATE INDEX deliveries_ready
    ON deliveries (profile, provider, kind, state, priority, next_attempt_at);
CREATE INDEX deliveries_event ON deliveries (event_id);

-- The identity keys of every play, rating and watchlist delivery, per target account: the
-- dedupe index of plays (at = watched_at) and the "latest change wins" index of ratings and
-- watchlist changes (at = when the change was made). Version 1's play_keys moves in.
CREATE TABLE delivery_keys (
    profile     TEXT    NOT NULL,
    provider    TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    at          REAL    NOT NULL,
    delivery_id INTEGER NOT NULL,
    PRIMARY KEY (profile, provider, kind, key, at, delivery_id)
) WITHOUT ROWID;
INSERT INTO delivery_keys (profile, provider, kind, key, at, delivery_id)
SELECT 'default', provider, 'play', key, watched_at, delivery_id FROM play_keys;
DROP TABLE play_keys;

-- Every play delivery, however created, records its event's identity keys for dedupe.
CREATE TRIGGER play_keys_of_delivery AFTER INSERT ON deliveries
WHEN NEW.kind = 'play'
BEGIN
    INSERT INTO delivery_keys (profile, provider, kind, key, at, delivery_id)
    SELECT NEW.profile, NEW.provider, 'play', nk.value, NEW.watched_at, NEW.id
    FROM events AS e, json_each(e.keys) AS nk
    WHERE e.id = NEW.event_id;
END;

-- The other changes of the same item (any shared identity key) for the same target account
-- and kind as a given rating or watchlist delivery, and whether each is older or newer.
CREATE VIEW state_changes (new_delivery_id, delivery_id, relation) AS
SELECT n.delivery_id, k.delivery_id,
       CASE WHEN k.at < n.at OR (k.at = n.at AND k.delivery_id < n.delivery_id)
            THEN 'older' ELSE 'newer' END
FROM delivery_keys AS n
CROSS JOIN delivery_keys AS k
WHERE k.profile = n.profile AND k.provider = n.provider AND k.kind = n.kind
  AND k.key = n.key AND k.delivery_id <> n.delivery_id;

-- A rating or watchlist change records its keys, and the latest change of an item wins per
-- target account: an older change still waiting (or being sent) is dropped as superseded,
-- and a change older than one already known (waiting or delivered) is dropped at once. So a
-- later rating replaces a pending one, and an older one never overwrites a newer one, also
-- when it arrives late (an import) or after a crash.
CREATE TRIGGER state_keys_of_delivery AFTER INSERT ON deliveries
WHEN NEW.kind IN ('rating', 'watchlist')
BEGIN
    INSERT INTO delivery_keys (profile, provider, kind, key, at, delivery_id)
    SELECT NEW.profile, NEW.provider, NEW.kind, nk.value, e.occurred_at, NEW.id
    FROM events AS e, json_each(e.keys) AS nk
    WHERE e.id = NEW.event_id;
    UPDATE deliveries
    SET state = 'dropped', reason_kind = 'superseded', lease_token = NULL,
        reason = 'superseded by a later change of the same item',
        settled_at = NEW.created_at, updated_at = NEW.created_at
    WHERE state IN ('pending', 'leased')
      AND id IN (SELECT k.delivery_id FROM state_changes AS k
                 WHERE k.new_delivery_id = NEW.id AND k.relation = 'older');
    UPDATE deliveries
    SET state = 'dropped', reason_kind = 'superseded',
        reason = 'an older change than one already known for this item',
        settled_at = NEW.created_at, updated_at = NEW.created_at
    WHERE id = NEW.id
      AND EXISTS (SELECT 1 FROM state_changes AS k
                  JOIN deliveries AS d ON d.id = k.delivery_id
                  WHERE k.new_delivery_id = NEW.id AND k.relation = 'newer'
                    AND d.state <> 'dropped');
END;

-- THE dedupe rule: an event repeats a play a target account already has when that account
-- (the event's profile on a provider) has a play delivery sharing any identity key with the
-- event, watched within the event's dedupe_window_s of its occurred_at. One row per (event,
-- provider, earlier play delivery); callers ask "does a row exist for this event and
-- provider?". CROSS JOIN fixes the join order (the event's keys first, then a primary-key
-- search of delivery_keys by profile, provider, kind, key and time): left to itself the
-- planner would scan all of the account's keys.
CREATE VIEW play_duplicates (event_id, provider, delivery_id) AS
SELECT e.id, k.provider, k.delivery_id
FROM events AS e
CROSS JOIN json_each(e.keys) AS ek
CROSS JOIN delivery_keys AS k
WHERE k.profile = e.profile
  AND k.kind = 'play'
  AND k.key = ek.value
  AND k.at BETWEEN e.occurred_at - e.dedupe_window_s
               AND e.occurred_at + e.dedupe_window_s;

-- The deliveries an event fans out into, one per provider of its profile it was stored for
-- (events.providers): a completed play becomes a 'play' delivery (watched at occurred_at)
-- unless it repeats one (play_duplicates); a rating a 'rating' delivery and a watchlist
-- change a 'watchlist' one (the latest change wins: state_keys_of_delivery); live state
-- becomes a 'live' delivery.
CREATE VIEW event_fan_out (event_id, profile, provider, kind, priority, watched_at) AS
SELECT e.id, e.profile, p.value,
       CASE e.action
            WHEN 'watched' THEN 'play'
            WHEN 'rate' THEN 'rating'
            WHEN 'watchlist_add' THEN 'watchlist'
            WHEN 'watchlist_remove' THEN 'watchlist'
            ELSE 'live' END,
       e.priority,
       CASE WHEN e.action = 'watched' THEN e.occurred_at END
FROM events AS e, json_each(e.providers) AS p
WHERE e.action <> 'watched'
   OR NOT EXISTS (SELECT 1 FROM play_duplicates AS x
                  WHERE x.event_id = e.id AND x.provider = p.value);

-- Fan-out in the same statement as the event insert, so a batch of events is one statement.
-- Outbox.adopt_targets() tests play_duplicates for targets configured after an event arrived.
CREATE TRIGGER events_fan_out AFTER INSERT ON events
BEGIN
    INSERT INTO deliveries (event_id, profile, provider, kind, priority, next_attempt_at,
                            watched_at, created_at, updated_at)
    SELECT f.event_id, f.profile, f.provider, f.kind, f.priority, NEW.received_at,
           f.watched_at, NEW.received_at, NEW.received_at
    FROM event_fan_out AS f
    WHERE f.event_id = NEW.id;
END;

-- migration: 3
-- The latest change of an item wins over every older one that has not landed: a later rating
-- or watchlist change also supersedes an older one of the same item that was parked or given
-- up (dead) for the same target account. A watchlist pass queues a parked addition again
-- (Trakt's full watchlist, 420): the new try replaces the parked one, so `status` counts what
-- the latest pass held back, and `unresolved retry` can never send an older rating over a
-- newer one. Otherwise as in migration 2.

DROP TRIGGER IF EXISTS state_keys_of_delivery;

CREATE TRIGGER state_keys_of_delivery AFTER INSERT ON deliveries
WHEN NEW.kind IN ('rating', 'watchlist')
BEGIN
    INSERT INTO delivery_keys (profile, provider, kind, key, at, delivery_id)
    SELECT NEW.profile, NEW.provider, NEW.kind, nk.value, e.occurred_at, NEW.id
    FROM events AS e, json_each(e.keys) AS nk
    WHERE e.id = NEW.event_id;
    UPDATE deliveries
    SET state = 'dropped', reason_kind = 'superseded', lease_token = NULL,
        reason = 'superseded by a later change of the same item',
        settled_at = NEW.created_at, updated_at = NEW.created_at
    WHERE state IN ('pending', 'leased', 'parked', 'dead')
      AND id IN (SELECT k.delivery_id FROM state_changes AS k
                 WHERE k.new_delivery_id = NEW.id AND k.relation = 'older');
    UPDATE deliveries
    SET state = 'dropped', reason_kind = 'superseded',
        reason = 'an older change than one already known for this item',
        settled_at = NEW.created_at, updated_at = NEW.created_at
    WHERE id = NEW.id
      AND EXISTS (SELECT 1 FROM state_changes AS k
                  JOIN deliveries AS d ON d.id = k.delivery_id
                  WHERE k.new_delivery_id = NEW.id AND k.relation = 'newer'
                    AND d.state <> 'dropped');
END;

-- migration: 4
-- Imported files: the row of an export file (a Letterboxd diary entry, a TV Time tracking row)
-- an event comes from, e.g. 'letterboxd:https://boxd.it/5aQk2r'. One event per profile and
-- row, whatever its time: a second import of the same file (or of the same rows in another
-- file, or with another --tz) queues nothing. The event is kept even when every target already
-- had the play (a duplicate of a Plex play), so the row counts as imported.

ALTER TABLE events ADD COLUMN import_key TEXT;
CREATE UNIQUE INDEX events_import_key ON events (profile, import_key)
    WHERE import_key IS NOT NULL;

-- The keys of one delivery: state_keys_of_delivery reads state_changes for each new rating or
-- watchlist delivery, which starts from that delivery's own keys. Without this index that was
-- a scan of every key of every play (O(outbox) per rating; importing a diary's ratings was
-- quadratic: 1,800 ratings beside 2,000 plays took 4.6 s, now 0.15 s).
CREATE INDEX delivery_keys_delivery ON delivery_keys (delivery_id);

-- migration: 5
-- The work still to do, small however long the history grows: the outbox's wake-ups
-- (outbox/wakeups.py) read when each account next has a due delivery from this index alone,
-- once per poll for every account a replica holds, instead of every drainer loop asking for
-- its own (a relay holding 5,000 accounts asked 20,000 times per poll).
CREATE INDEX deliveries_due ON deliveries (profile, provider, kind, next_attempt_at)
    WHERE state IN ('pending', 'leased');

-- A profile's plays, for orphan_plays and accounts_to_adopt: a replica that takes an account up
-- looks for the plays it missed among that profile's plays alone, not in every event.
CREATE INDEX events_plays ON events (profile, id) WHERE action = 'watched';
