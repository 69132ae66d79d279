-- crosswatchd outbox schema for PostgreSQL: the migrations, in order. Block "-- migration: N"
-- brings a database from outbox version N-1 to N (schema_versions.store = 'outbox');
-- crosswatchd.postgres.migrate applies the missing blocks in one transaction, under an
-- advisory lock, so replicas starting together on an empty database migrate it once.
--
-- The same tables, views and triggers as schema.sql (SQLite), in PostgreSQL's dialect: times
-- are unix seconds (double precision, UTC), items and key lists JSON text. Migration 1 is the
-- SQLite schema at its version 2 (the first with households, ratings and watchlists).

-- migration: 1

CREATE TABLE events (
    id              bigserial PRIMARY KEY,
    source          text      NOT NULL,
    action          text      NOT NULL,
    account         text      NOT NULL,
    item            text      NOT NULL,
    label           text      NOT NULL,
    occurred_at     double precision NOT NULL,
    received_at     double precision NOT NULL,
    progress_pct    double precision,
    view_offset_ms  bigint,
    duration_ms     bigint,
    session         text,
    keys            text      NOT NULL,
    providers       text      NOT NULL,
    dedupe_window_s double precision NOT NULL,
    profile         text      NOT NULL DEFAULT 'default',
    rating          integer,
    priority        integer   NOT NULL DEFAULT 0
);

CREATE TABLE deliveries (
    id               bigserial PRIMARY KEY,
    event_id         bigint    NOT NULL REFERENCES events (id),
    profile          text      NOT NULL DEFAULT 'default',
    provider         text      NOT NULL,
    kind             text      NOT NULL CHECK (kind IN ('play', 'live', 'rating', 'watchlist')),
    state            text      NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'leased', 'delivered', 'parked', 'dead', 'dropped')),
    priority         integer   NOT NULL DEFAULT 0,
    attempts         integer   NOT NULL DEFAULT 0,
    next_attempt_at  double precision NOT NULL,
    lease_token      text,
    sent_at          double precision,
    last_error       text,
    reason           text,
    reason_kind      text,
    resolved_item    text,
    resolved_by      text,
    watched_at       double precision,
    unconfirmed      integer   NOT NULL DEFAULT 0,
    created_at       double precision NOT NULL,
    updated_at       double precision NOT NULL,
    settled_at       double precision
);
CREATE INDEX deliveries_ready
    ON deliveries (profile, provider, kind, state, priority, next_attempt_at);
CREATE INDEX deliveries_event ON deliveries (event_id);

CREATE TABLE delivery_keys (
    profile     text   NOT NULL,
    provider    text   NOT NULL,
    kind        text   NOT NULL,
    key         text   NOT NULL,
    at          double precision NOT NULL,
    delivery_id bigint NOT NULL,
    PRIMARY KEY (profile, provider, kind, key, at, delivery_id)
);

CREATE TABLE seen_accounts (
    source     text   NOT NULL,
    account    text   NOT NULL,
    last_seen  double precision NOT NULL,
    events     bigint NOT NULL DEFAULT 1,
    PRIMARY KEY (source, account)
);

CREATE TABLE meta (
    key   text PRIMARY KEY,
    value bigint NOT NULL
);

-- THE dedupe rule (schema.sql explains it): an event repeats a play its target account has.
CREATE VIEW play_duplicates (event_id, provider, delivery_id) AS
SELECT e.id, k.provider, k.delivery_id
FROM events AS e
CROSS JOIN LATERAL jsonb_array_elements_text(e.keys::jsonb) AS ek (value)
JOIN delivery_keys AS k
  ON k.profile = e.profile
 AND k.kind = 'play'
 AND k.key = ek.value
 AND k.at BETWEEN e.occurred_at - e.dedupe_window_s AND e.occurred_at + e.dedupe_window_s;

-- The deliveries an event fans out into (schema.sql explains it).
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
FROM events AS e
CROSS JOIN LATERAL jsonb_array_elements_text(e.providers::jsonb) AS p (value)
WHERE e.action <> 'watched'
   OR NOT EXISTS (SELECT 1 FROM play_duplicates AS x
                  WHERE x.event_id = e.id AND x.provider = p.value);

-- The other changes of the same item for the same target account and kind.
CREATE VIEW state_changes (new_delivery_id, delivery_id, relation) AS
SELECT n.delivery_id, k.delivery_id,
       CASE WHEN k.at < n.at OR (k.at = n.at AND k.delivery_id < n.delivery_id)
            THEN 'older' ELSE 'newer' END
FROM delivery_keys AS n
JOIN delivery_keys AS k
  ON k.profile = n.profile AND k.provider = n.provider AND k.kind = n.kind
 AND k.key = n.key AND k.delivery_id <> n.delivery_id;

-- Fan-out of every new event (AFTER ROW triggers run at the end of the statement, in row
-- order, each seeing what the earlier ones wrote: a batch dedupes within itself too).
CREATE FUNCTION crosswatchd_events_fan_out() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO deliveries (event_id, profile, provider, kind, priority, next_attempt_at,
                            watched_at, created_at, updated_at)
    SELECT f.event_id, f.profile, f.provider, f.kind, f.priority, NEW.received_at,
           f.watched_at, NEW.received_at, NEW.received_at
    FROM event_fan_out AS f
    WHERE f.event_id = NEW.id;
    RETURN NULL;
END $$;
CREATE TRIGGER events_fan_out AFTER INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION crosswatchd_events_fan_out();

-- Every delivery records its event's identity keys: a play's for dedupe; a rating's or a
-- watchlist change's for "the latest change of an item wins" (schema.sql explains it).
CREATE FUNCTION crosswatchd_delivery_keys() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.kind = 'play' THEN
        INSERT INTO delivery_keys (profile, provider, kind, key, at, delivery_id)
        SELECT NEW.profile, NEW.provider, 'play', nk.value, NEW.watched_at, NEW.id
        FROM events AS e
        CROSS JOIN LATERAL jsonb_array_elements_text(e.keys::jsonb) AS nk (value)
        WHERE e.id = NEW.event_id
        ON CONFLICT DO NOTHING;
    ELSIF NEW.kind IN ('rating', 'watchlist') THEN
        INSERT INTO delivery_keys (profile, provider, kind, key, at, delivery_id)
        SELECT NEW.profile, NEW.provider, NEW.kind, nk.value, e.occurred_at, NEW.id
        FROM events AS e
        CROSS JOIN LATERAL jsonb_array_elements_text(e.keys::jsonb) AS nk (value)
        WHERE e.id = NEW.event_id
        ON CONFLICT DO NOTHING;
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
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER delivery_keys_of_delivery AFTER INSERT ON deliveries
    FOR EACH ROW EXECUTE FUNCTION crosswatchd_delivery_keys();

-- migration: 2
-- As SQLite's migration 3: a later rating or watchlist change also supersedes an older one
-- that was parked or given up (dead) for the same target account.

CREATE OR REPLACE FUNCTION crosswatchd_delivery_keys() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.kind = 'play' THEN
        INSERT INTO delivery_keys (profile, provider, kind, key, at, delivery_id)
        SELECT NEW.profile, NEW.provider, 'play', nk.value, NEW.watched_at, NEW.id
        FROM events AS e
        CROSS JOIN LATERAL jsonb_array_elements_text(e.keys::jsonb) AS nk (value)
        WHERE e.id = NEW.event_id
        ON CONFLICT DO NOTHING;
    ELSIF NEW.kind IN ('rating', 'watchlist') THEN
        INSERT INTO delivery_keys (profile, provider, kind, key, at, delivery_id)
        SELECT NEW.profile, NEW.provider, NEW.kind, nk.value, e.occurred_at, NEW.id
        FROM events AS e
        CROSS JOIN LATERAL jsonb_array_elements_text(e.keys::jsonb) AS nk (value)
        WHERE e.id = NEW.event_id
        ON CONFLICT DO NOTHING;
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
    END IF;
    RETURN NULL;
END $$;

-- migration: 3
-- The fan-out trigger tests the dedupe rule (play_duplicates) for the new event's own keys
-- only. Through the view, PostgreSQL planned the NOT EXISTS as a hashed subplan over every
-- event and every play key (the whole play_duplicates relation, once per inserted row): intake
-- slowed down as the outbox grew (measured by bench/scale.py: 40 webhooks/s at a few hundred
-- events). The same rule as the view, written against NEW, so each test is an index range
-- scan of delivery_keys' primary key (profile, provider, kind, key, at).
CREATE OR REPLACE FUNCTION crosswatchd_events_fan_out() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO deliveries (event_id, profile, provider, kind, priority, next_attempt_at,
                            watched_at, created_at, updated_at)
    SELECT NEW.id, NEW.profile, p.value,
           CASE NEW.action
                WHEN 'watched' THEN 'play'
                WHEN 'rate' THEN 'rating'
                WHEN 'watchlist_add' THEN 'watchlist'
                WHEN 'watchlist_remove' THEN 'watchlist'
                ELSE 'live' END,
           NEW.priority, NEW.received_at,
           CASE WHEN NEW.action = 'watched' THEN NEW.occurred_at END,
           NEW.received_at, NEW.received_at
    FROM jsonb_array_elements_text(NEW.providers::jsonb) WITH ORDINALITY AS p (value, n)
    WHERE NEW.action <> 'watched'
       OR NOT EXISTS (
            SELECT 1
            FROM jsonb_array_elements_text(NEW.keys::jsonb) AS ek (value)
            JOIN delivery_keys AS k
              ON k.profile = NEW.profile
             AND k.provider = p.value
             AND k.kind = 'play'
             AND k.key = ek.value
             AND k.at BETWEEN NEW.occurred_at - NEW.dedupe_window_s
                          AND NEW.occurred_at + NEW.dedupe_window_s)
    ORDER BY p.n;
    RETURN NULL;
END $$;

-- migration: 4
-- As SQLite's migration 4: the row of an imported file an event comes from (one event per
-- profile and row), and an index on the keys of one delivery (state_keys_of_delivery).
ALTER TABLE events ADD COLUMN import_key text;
CREATE UNIQUE INDEX events_import_key ON events (profile, import_key)
    WHERE import_key IS NOT NULL;
CREATE INDEX delivery_keys_delivery ON delivery_keys (delivery_id);

-- migration: 5
-- As SQLite's migration 5: the due deliveries, which the outbox's wake-ups read per poll, and
-- a profile's plays, where a replica taking an account up looks for the plays it missed.
CREATE INDEX deliveries_due ON deliveries (profile, provider, kind, next_attempt_at)
    WHERE state IN ('pending', 'leased');
CREATE INDEX events_plays ON events (profile, id) WHERE action = 'watched';
