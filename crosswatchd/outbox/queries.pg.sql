-- The outbox's named statements for PostgreSQL: the same names, parameters and result columns
-- as queries.sql (SQLite), which explains what each one is for; the notes here are about how
-- PostgreSQL does it. Parameters are `:name` (crosswatchd.db.numbered makes them $1, $2 …);
-- each carries a cast where PostgreSQL could not infer its type. JSON list parameters are text
-- (`:ids::text::jsonb`).


-- ---------------------------------------------------------------------------------------------
-- intake
-- ---------------------------------------------------------------------------------------------

-- name: lock_keys
-- Before a batch of events is inserted: take a transaction-scoped advisory lock on each
-- identity key (:keys, a JSON array of "profile key" strings), in one global order (by the
-- lock's number), so intake on several replicas checks and inserts one item's plays one
-- transaction at a time (the fan-out trigger's dedupe test then sees the other's commit) and
-- no two transactions wait on each other in a cycle.
SELECT count(*) AS locked FROM (
    SELECT pg_advisory_xact_lock(h)
    FROM (SELECT DISTINCT hashtextextended(k, 0) AS h
          FROM jsonb_array_elements_text(:keys::text::jsonb) AS k) AS hashes
    ORDER BY h) AS locks

-- name: insert_events
-- The batch as one statement; the fan-out trigger runs per row at the end of it. RETURNING
-- cannot see what AFTER triggers write, so fanned_out is NULL here and the outbox counts the
-- deliveries afterwards (count_deliveries_of_events), in the same transaction.
INSERT INTO events (source, action, account, item, label, occurred_at, received_at,
                    progress_pct, view_offset_ms, duration_ms, session, keys, profile,
                    providers, rating, priority, import_key, dedupe_window_s)
SELECT e.value->>0, e.value->>1, e.value->>2, (e.value->3)::text, e.value->>4,
       (e.value->>5)::float8, (e.value->>6)::float8, (e.value->>7)::float8,
       (e.value->>8)::bigint, (e.value->>9)::bigint, e.value->>10, (e.value->11)::text,
       e.value->>12, (e.value->13)::text, (e.value->>14)::int, (e.value->>15)::int,
       e.value->>16, :window::float8
FROM jsonb_array_elements(:batch::text::jsonb) WITH ORDINALITY AS e (value, n)
ORDER BY e.n
RETURNING id, NULL::bigint AS fanned_out

-- name: count_deliveries_of_events
SELECT event_id, count(*) AS deliveries
FROM deliveries
WHERE event_id BETWEEN :first::bigint AND :last::bigint
GROUP BY event_id

-- name: delete_events
DELETE FROM events
WHERE id IN (SELECT value::bigint FROM jsonb_array_elements_text(:ids::text::jsonb))

-- name: note_account
INSERT INTO seen_accounts (source, account, last_seen) VALUES (:source, :account, :now::float8)
ON CONFLICT (source, account) DO UPDATE
SET last_seen = excluded.last_seen, events = seen_accounts.events + 1

-- name: probe_returning_schema
-- SQLite only (RETURNING's view of trigger writes); PostgreSQL always counts afterwards.
SELECT 1

-- name: probe_returning
-- SQLite only; see probe_returning_schema.
SELECT 1


-- ---------------------------------------------------------------------------------------------
-- targets configured later (Outbox.adopt_targets)
-- ---------------------------------------------------------------------------------------------

-- name: orphan_plays
SELECT id FROM events
WHERE action = 'watched' AND profile = :profile AND source <> 'reconcile'
  AND NOT (providers::jsonb ? :provider::text)
ORDER BY id

-- name: accounts_to_adopt
SELECT a.value->>0 AS profile, a.value->>1 AS provider
FROM jsonb_array_elements(:accounts::text::jsonb) AS a (value)
WHERE EXISTS (SELECT 1 FROM events AS e
              WHERE e.action = 'watched' AND e.profile = a.value->>0 AND e.source <> 'reconcile'
                AND NOT (e.providers::jsonb ? (a.value->>1)))

-- name: adopt_play
INSERT INTO deliveries (event_id, profile, provider, kind, next_attempt_at, watched_at,
                        created_at, updated_at)
SELECT e.id, e.profile, :provider, 'play', :now::float8, e.occurred_at, :now::float8,
       :now::float8
FROM events AS e
WHERE e.id = :event_id::bigint
  AND NOT EXISTS (SELECT 1 FROM deliveries AS d
                  WHERE d.event_id = e.id AND d.provider = :provider::text)
  AND NOT EXISTS (SELECT 1 FROM play_duplicates AS x
                  WHERE x.event_id = e.id AND x.provider = :provider::text)

-- name: add_target
UPDATE events SET providers = (providers::jsonb || to_jsonb(:provider::text))::text
WHERE profile = :profile
  AND NOT (providers::jsonb ? :provider::text)


-- ---------------------------------------------------------------------------------------------
-- claim and settle
-- ---------------------------------------------------------------------------------------------

-- name: release_all_leases
UPDATE deliveries
SET state = 'pending', lease_token = NULL, next_attempt_at = :now::float8,
    updated_at = :now::float8
WHERE state = 'leased'

-- name: release_accounts
UPDATE deliveries
SET state = 'pending', lease_token = NULL, next_attempt_at = :now::float8,
    updated_at = :now::float8
WHERE state = 'leased'
  AND (profile, provider) IN (SELECT a.value->>0, a.value->>1
                              FROM jsonb_array_elements(:accounts::text::jsonb) AS a (value))

-- name: queued_accounts
SELECT DISTINCT profile, provider FROM deliveries WHERE state IN ('pending', 'leased')

-- name: discard_profile
UPDATE deliveries
SET state = 'dropped', reason_kind = 'dismissed',
    reason = 'discarded with its profile' || coalesce(' (was: ' || reason || ')', ''),
    lease_token = NULL, settled_at = :now::float8, updated_at = :now::float8
WHERE profile = :profile AND state IN ('pending', 'leased', 'parked', 'dead')

-- name: claim
-- One UPDATE over the due rows picked with FOR UPDATE SKIP LOCKED: rows another replica's
-- claim is taking right now are skipped, not waited for (procrastinate's fetch_job does the
-- same). Expired leases first, then fresh (priority 0), then backfill (priority 1), oldest
-- first.
UPDATE deliveries
SET state = 'leased', lease_token = :token, next_attempt_at = :expires::float8,
    attempts = attempts + 1, updated_at = :now::float8
WHERE id IN (
    SELECT id FROM deliveries
    WHERE profile = :profile AND provider = :provider AND kind = :kind
      AND state IN ('leased', 'pending') AND next_attempt_at <= :now::float8
    ORDER BY (state = 'pending'), priority, next_attempt_at, id
    LIMIT :limit::int
    FOR UPDATE SKIP LOCKED)
RETURNING id

-- name: claimed_rows
SELECT d.id AS id, d.event_id AS event_id, d.profile AS profile, d.provider AS provider,
       d.kind AS kind,
       d.lease_token AS lease_token, d.attempts AS attempts, e.action AS action,
       e.source AS source, e.account AS account,
       coalesce(d.resolved_item, e.item) AS item, d.resolved_item IS NOT NULL AS resolved,
       e.label AS label, e.occurred_at AS occurred_at, d.watched_at AS watched_at,
       e.progress_pct AS progress_pct, d.sent_at AS sent_at, d.unconfirmed AS unconfirmed,
       e.rating AS rating
FROM deliveries AS d JOIN events AS e ON e.id = d.event_id
WHERE d.id IN (SELECT value::bigint FROM jsonb_array_elements_text(:ids::text::jsonb))
  AND d.lease_token = :token
ORDER BY d.id

-- name: mark_sent
UPDATE deliveries SET sent_at = :now::float8, updated_at = :now::float8
WHERE id = :id::bigint AND lease_token = :token

-- name: save_resolution
UPDATE deliveries SET resolved_item = :item, resolved_by = :step
WHERE id = :id::bigint AND lease_token = :token

-- name: settle
UPDATE deliveries
SET state = :state, lease_token = NULL,
    next_attempt_at = coalesce(:next_attempt_at::float8, next_attempt_at),
    last_error = coalesce(:error::text, last_error),
    reason = :reason::text, reason_kind = :reason_kind::text,
    sent_at = CASE WHEN :keep_sent::boolean THEN sent_at END,
    attempts = attempts - :refund::int,
    unconfirmed = unconfirmed + :unconfirmed::int,
    settled_at = :settled_at::float8,
    updated_at = :now::float8
WHERE id = :id::bigint AND lease_token = :token

-- name: retry_parked
UPDATE deliveries
SET state = 'pending', next_attempt_at = :now::float8, reason = NULL, reason_kind = NULL,
    resolved_item = NULL, resolved_by = NULL, attempts = 0, unconfirmed = 0,
    settled_at = NULL, updated_at = :now::float8
WHERE id IN (
    SELECT id FROM deliveries
    WHERE id = :id::bigint AND kind <> 'live' AND state IN ('parked', 'dead')
      AND (:profile::text IS NULL OR profile = :profile::text)
    UNION ALL
    SELECT id FROM deliveries
    WHERE :id::bigint IS NULL AND state = 'parked'
      AND (:profile::text IS NULL OR profile = :profile::text)
      AND reason_kind IN (SELECT jsonb_array_elements_text(:kinds::text::jsonb))
      AND (:reason::text IS NULL OR strpos(reason, :reason::text) > 0))

-- name: dismiss_parked
UPDATE deliveries
SET state = 'dropped', reason_kind = 'dismissed',
    reason = 'dismissed by the user' || coalesce(' (was: ' || reason || ')', ''),
    lease_token = NULL, settled_at = :now::float8, updated_at = :now::float8
WHERE id IN (
    SELECT id FROM deliveries
    WHERE id = :id::bigint AND kind <> 'live' AND state IN ('parked', 'dead')
      AND (:profile::text IS NULL OR profile = :profile::text)
    UNION ALL
    SELECT id FROM deliveries
    WHERE :id::bigint IS NULL AND kind <> 'live' AND state = 'parked'
      AND (:profile::text IS NULL OR profile = :profile::text)
      AND reason_kind IN (SELECT jsonb_array_elements_text(:kinds::text::jsonb)))

-- name: probe_write
INSERT INTO meta (key, value) VALUES ('readyz_probe', 1)
ON CONFLICT (key) DO UPDATE SET value = meta.value + 1

-- name: bump_retry_generation
INSERT INTO meta (key, value) VALUES ('retry_generation', 1)
ON CONFLICT (key) DO UPDATE SET value = meta.value + 1


-- ---------------------------------------------------------------------------------------------
-- operator views
-- ---------------------------------------------------------------------------------------------

-- name: counts
SELECT profile, provider, kind, state, reason_kind, count(*) AS deliveries
FROM deliveries
GROUP BY profile, provider, kind, state, reason_kind

-- name: parked
SELECT d.id AS id, d.profile AS profile, d.provider AS provider, d.state AS state,
       d.kind AS kind, e.action AS action, e.rating AS rating, e.label AS label,
       coalesce(d.reason, '') AS reason, d.reason_kind AS reason_kind,
       d.attempts AS attempts, d.watched_at AS watched_at, e.occurred_at AS occurred_at
FROM deliveries AS d JOIN events AS e ON e.id = d.event_id
WHERE d.kind <> 'live'
  AND d.state IN (SELECT jsonb_array_elements_text(:states::text::jsonb))
  AND (:kinds::text IS NULL
       OR d.reason_kind IN (SELECT jsonb_array_elements_text(:kinds::text::jsonb)))
  AND (:profile::text IS NULL OR d.profile = :profile::text)
ORDER BY d.id DESC

-- name: backlog
SELECT profile, provider, min(watched_at) AS oldest_watched_at,
       max(attempts) AS max_attempts, min(next_attempt_at) AS next_attempt_at,
       (SELECT d2.last_error FROM deliveries AS d2
         WHERE d2.profile = d.profile AND d2.provider = d.provider AND d2.kind = 'play'
           AND d2.state IN ('pending', 'leased') AND d2.last_error IS NOT NULL
         ORDER BY d2.updated_at DESC LIMIT 1) AS last_error
FROM deliveries AS d
WHERE kind = 'play' AND state IN ('pending', 'leased')
GROUP BY profile, provider

-- name: played_just_before
SELECT EXISTS (
    SELECT 1
    FROM events AS e
    CROSS JOIN LATERAL jsonb_array_elements_text(e.keys::jsonb) AS ek (value)
    JOIN delivery_keys AS k
      ON k.profile = e.profile
     AND k.provider = :provider::text
     AND k.kind = 'play'
     AND k.key = ek.value
     AND k.at BETWEEN e.occurred_at - e.dedupe_window_s AND e.occurred_at + 60
    WHERE e.id = :event_id::bigint
) AS played

-- name: next_due
SELECT min(next_attempt_at) AS next_attempt_at
FROM deliveries
WHERE profile = :profile AND provider = :provider AND kind = :kind
  AND state IN ('pending', 'leased')

-- name: due_accounts
-- When each (profile, provider, kind) next has work: the earliest next_attempt_at of its
-- pending deliveries, or a lease's expiry; for every account, or for the profiles in
-- :profiles (a JSON list) when it is not null. The outbox's wake-ups read it (the partial
-- index deliveries_due holds just these rows).
SELECT profile, provider, kind, min(next_attempt_at) AS due
FROM deliveries
WHERE state IN ('pending', 'leased')
  AND (:profiles::text IS NULL OR profile IN (SELECT jsonb_array_elements_text(:profiles::text::jsonb)))
GROUP BY profile, provider, kind

-- name: retry_generation
SELECT value FROM meta WHERE key = 'retry_generation'

-- name: recent
SELECT d.id AS id, d.profile AS profile, d.provider AS provider, d.kind AS kind,
       d.state AS state, e.label AS label, coalesce(d.reason, '') AS reason,
       d.watched_at AS watched_at, d.settled_at AS settled_at
FROM deliveries AS d JOIN events AS e ON e.id = d.event_id
WHERE d.kind <> 'live' AND d.state IN ('delivered', 'parked', 'dead')
ORDER BY d.settled_at DESC, d.id DESC
LIMIT :limit::int

-- name: waiting_plays
SELECT e.keys AS keys, d.watched_at AS watched_at
FROM deliveries AS d JOIN events AS e ON e.id = d.event_id
WHERE d.profile = :profile AND d.provider = :provider AND d.kind = 'play'
  AND d.state IN ('pending', 'leased')

-- name: seen_accounts
SELECT account FROM seen_accounts WHERE source = :source ORDER BY last_seen DESC

-- name: untargeted_plays
SELECT count(*) AS plays FROM events WHERE action = 'watched' AND providers = '[]'


-- ---------------------------------------------------------------------------------------------
-- the watchlist pass (crosswatchd/watchlist)
-- ---------------------------------------------------------------------------------------------

-- name: watchlist_changes
SELECT d.id AS id, d.provider AS provider, e.action AS action, d.state AS state,
       d.reason_kind AS reason_kind, d.reason AS reason, d.settled_at AS settled_at,
       e.occurred_at AS occurred_at, coalesce(d.resolved_item, e.item) AS item
FROM deliveries AS d JOIN events AS e ON e.id = d.event_id
WHERE d.profile = :profile AND d.kind = 'watchlist'
  AND d.provider IN (SELECT jsonb_array_elements_text(:providers::text::jsonb))
  AND (d.state IN ('pending', 'leased', 'parked', 'dead')
       OR (d.state = 'delivered'
           AND (d.reason_kind = 'kept' OR d.settled_at >= :since::float8)))
  AND NOT EXISTS (SELECT 1 FROM state_changes AS k
                  JOIN deliveries AS n ON n.id = k.delivery_id
                  WHERE k.new_delivery_id = d.id AND k.relation = 'newer'
                    AND n.state <> 'dropped')

-- name: plays_since
SELECT coalesce(d.resolved_item, e.item) AS item, d.watched_at AS watched_at
FROM deliveries AS d JOIN events AS e ON e.id = d.event_id
WHERE d.profile = :profile AND d.provider = :provider AND d.kind = 'play'
  AND d.state IN ('delivered', 'pending', 'leased')
  AND (d.settled_at >= :since::float8 OR d.sent_at IS NOT NULL)

-- name: watchlist_counts
SELECT profile, provider,
       count(*) FILTER (WHERE state IN ('pending', 'leased')) AS pending,
       count(*) FILTER (WHERE state IN ('parked', 'dead')) AS parked,
       (SELECT d2.reason FROM deliveries AS d2
         WHERE d2.profile = d.profile AND d2.provider = d.provider AND d2.kind = 'watchlist'
           AND d2.state IN ('parked', 'dead')
         ORDER BY d2.id DESC LIMIT 1) AS reason
FROM deliveries AS d
WHERE kind = 'watchlist' AND state IN ('pending', 'leased', 'parked', 'dead')
GROUP BY profile, provider

-- name: imported_keys
SELECT import_key FROM events
WHERE profile = :profile
  AND import_key IN (SELECT jsonb_array_elements_text(:keys::text::jsonb))

-- name: rating_keys
SELECT k.key AS key, k.at AS at, k.delivery_id AS delivery_id, e.rating AS rating
FROM delivery_keys AS k
JOIN deliveries AS d ON d.id = k.delivery_id
JOIN events AS e ON e.id = d.event_id
WHERE k.profile = :profile
  AND k.provider IN (SELECT jsonb_array_elements_text(:providers::text::jsonb))
  AND k.kind = 'rating'

-- name: movie_plays
SELECT e.id AS id, e.occurred_at AS at, e.item AS item,
       (SELECT d.resolved_item FROM deliveries AS d
         WHERE d.event_id = e.id AND d.resolved_item IS NOT NULL
         ORDER BY d.id LIMIT 1) AS resolved_item
FROM events AS e
WHERE e.profile = :profile AND e.action = 'watched'
  AND e.item::jsonb->>'kind' = 'movie'
  AND (e.providers::jsonb = '[]'::jsonb
       OR EXISTS (SELECT 1 FROM deliveries AS d
                  WHERE d.event_id = e.id AND d.kind = 'play' AND d.state <> 'dropped'))
ORDER BY e.occurred_at, e.id

-- name: movie_ratings
SELECT e.id AS id, e.occurred_at AS at, e.item AS item, e.rating AS rating,
       (SELECT d.resolved_item FROM deliveries AS d
         WHERE d.event_id = e.id AND d.resolved_item IS NOT NULL
         ORDER BY d.id LIMIT 1) AS resolved_item
FROM events AS e
WHERE e.profile = :profile AND e.action = 'rate'
  AND e.item::jsonb->>'kind' = 'movie'
ORDER BY e.occurred_at, e.id
