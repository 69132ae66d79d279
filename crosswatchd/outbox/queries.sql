-- Every statement the outbox runs, by name (crosswatchd/outbox/queries.py loads them once, as
-- procrastinate loads its queries.sql). A block starts at "-- name: NAME" and runs to the next
-- one; parameters are named (:param). Lists travel as one JSON array parameter, read with
-- json_each, so no statement is ever assembled from pieces. The dedupe rule and the fan-out
-- are the views play_duplicates and event_fan_out in schema.sql.
-- Times are unix seconds (REAL, UTC). States, kinds and reason kinds are the values of the
-- enums in crosswatchd/outbox/states.py.


-- ---------------------------------------------------------------------------------------------
-- intake
-- ---------------------------------------------------------------------------------------------

-- name: lock_keys
-- Before a batch of events is inserted, PostgreSQL locks the identity keys :keys (a JSON
-- array) so intake on several replicas dedupes one item at a time (queries.pg.sql). SQLite
-- writes one statement at a time already: nothing to lock.
SELECT 0 AS locked

-- name: insert_events
-- A whole batch of events as ONE statement: :batch is a JSON array with one array per event
-- (Outbox._event_row) and the fan-out trigger runs per row. A single statement is atomic in
-- autocommit mode, so the batch costs one round trip to the database thread. Rows are inserted
-- in array order, so the RETURNING ids, sorted, are in input order. fanned_out is how many
-- deliveries the trigger creates for the row, read from the same view the trigger reads just
-- before that row's trigger runs (after the earlier rows' triggers). SQLite does not document
-- that order, so Outbox checks it at start-up (probe_returning) and, where it does not hold,
-- ignores fanned_out and counts afterwards (count_deliveries_of_events).
INSERT INTO events (source, action, account, item, label, occurred_at, received_at,
                    progress_pct, view_offset_ms, duration_ms, session, keys, profile,
                    providers, rating, priority, import_key, dedupe_window_s)
SELECT json_extract(e.value, '$[0]'), json_extract(e.value, '$[1]'),
       json_extract(e.value, '$[2]'), json_extract(e.value, '$[3]'),
       json_extract(e.value, '$[4]'), json_extract(e.value, '$[5]'),
       json_extract(e.value, '$[6]'), json_extract(e.value, '$[7]'),
       json_extract(e.value, '$[8]'), json_extract(e.value, '$[9]'),
       json_extract(e.value, '$[10]'), json_extract(e.value, '$[11]'),
       json_extract(e.value, '$[12]'), json_extract(e.value, '$[13]'),
       json_extract(e.value, '$[14]'), json_extract(e.value, '$[15]'),
       json_extract(e.value, '$[16]'),
       :window
FROM json_each(:batch) AS e
ORDER BY e.key
RETURNING id, (SELECT count(*) FROM event_fan_out AS f WHERE f.event_id = events.id) AS fanned_out

-- name: count_deliveries_of_events
-- Deliveries per event of a batch just inserted (ids :first to :last): the fallback count.
SELECT event_id, count(*) AS deliveries
FROM deliveries
WHERE event_id BETWEEN :first AND :last
GROUP BY event_id

-- name: delete_events
-- Events whose play every target already had (enqueue_many(keep_duplicates=False)).
DELETE FROM events WHERE id IN (SELECT value FROM json_each(:ids))

-- name: note_account
INSERT INTO seen_accounts (source, account, last_seen) VALUES (:source, :account, :now)
ON CONFLICT (source, account) DO UPDATE
SET last_seen = excluded.last_seen, events = events + 1

-- name: probe_returning_schema
-- A scratch schema for probe_returning, run on an in-memory database.
CREATE TABLE r (id INTEGER PRIMARY KEY, k TEXT);
CREATE TABLE s (k TEXT);
CREATE TRIGGER r_after AFTER INSERT ON r BEGIN INSERT INTO s (k) VALUES (NEW.k); END;

-- name: probe_returning
-- insert_events' RETURNING in miniature: the row's subquery reads the row itself from its
-- table and what the earlier rows' AFTER triggers wrote, not what its own trigger writes.
-- Holds when the result is (1, 0), (2, 1), (3, 0) (SQLite 3.35 to 3.4x; not documented).
INSERT INTO r (k) SELECT value FROM json_each('["a", "a", "b"]') ORDER BY key
RETURNING id, (SELECT count(*) FROM r AS mine, s WHERE mine.id = r.id AND s.k = mine.k)


-- ---------------------------------------------------------------------------------------------
-- targets configured later (Outbox.adopt_targets)
-- ---------------------------------------------------------------------------------------------

-- name: orphan_plays
-- Plays of :profile stored before :provider was one of its targets, oldest first. A reconcile
-- play was meant for the target accounts that lacked it (enqueue_many(targets=)): it is not
-- given to another one, whose own next reconcile pass judges it.
SELECT id FROM events
WHERE action = 'watched' AND profile = :profile AND source <> 'reconcile'
  AND NOT EXISTS (SELECT 1 FROM json_each(events.providers) WHERE value = :provider)
ORDER BY id

-- name: accounts_to_adopt
-- Those of :accounts (a JSON array of [profile, provider] pairs) that have orphan plays (as
-- orphan_plays): one look for a batch of accounts a replica takes up, through events_plays.
SELECT a.profile AS profile, a.provider AS provider
FROM (SELECT json_extract(value, '$[0]') AS profile, json_extract(value, '$[1]') AS provider
      FROM json_each(:accounts)) AS a
WHERE EXISTS (SELECT 1 FROM events AS e
              WHERE e.action = 'watched' AND e.profile = a.profile AND e.source <> 'reconcile'
                AND NOT EXISTS (SELECT 1 FROM json_each(e.providers) WHERE value = a.provider))

-- name: adopt_play
-- One missed play for one target, unless it has that target's delivery already or repeats a
-- play the target has (play_duplicates: the fan-out trigger's own dedupe test).
INSERT INTO deliveries (event_id, profile, provider, kind, next_attempt_at, watched_at,
                        created_at, updated_at)
SELECT e.id, e.profile, :provider, 'play', :now, e.occurred_at, :now, :now
FROM events AS e
WHERE e.id = :event_id
  AND NOT EXISTS (SELECT 1 FROM deliveries AS d
                  WHERE d.event_id = e.id AND d.provider = :provider)
  AND NOT EXISTS (SELECT 1 FROM play_duplicates AS x
                  WHERE x.event_id = e.id AND x.provider = :provider)

-- name: add_target
-- Record :provider as a target of every event of :profile (its plays were adopted before).
UPDATE events SET providers = json_insert(providers, '$[#]', :provider)
WHERE profile = :profile
  AND NOT EXISTS (SELECT 1 FROM json_each(events.providers) WHERE value = :provider)


-- ---------------------------------------------------------------------------------------------
-- claim and settle
-- ---------------------------------------------------------------------------------------------

-- name: release_all_leases
-- Daemon start: every leased delivery is pending again (sent_at kept).
UPDATE deliveries
SET state = 'pending', lease_token = NULL, next_attempt_at = :now, updated_at = :now
WHERE state = 'leased'

-- name: release_accounts
-- A replica hands target accounts over (crosswatchd/replicas): once their drainers stopped,
-- their deliveries still leased (claimed, not settled) are due at once for the next holder;
-- sent_at is kept (a send that may have landed is looked up first). :accounts is a JSON
-- array of [profile, provider] pairs.
UPDATE deliveries
SET state = 'pending', lease_token = NULL, next_attempt_at = :now, updated_at = :now
WHERE state = 'leased'
  AND EXISTS (SELECT 1 FROM json_each(:accounts) AS a
              WHERE json_extract(a.value, '$[0]') = deliveries.profile
                AND json_extract(a.value, '$[1]') = deliveries.provider)

-- name: queued_accounts
-- The target accounts with deliveries still to send: a removed profile's keep being drained
-- until they are delivered or discarded (discard_profile).
SELECT DISTINCT profile, provider FROM deliveries WHERE state IN ('pending', 'leased')

-- name: discard_profile
-- `crosswatchd profile remove NAME --discard-queued`: the profile's deliveries not yet
-- delivered (waiting, being sent, parked or dead) are dropped, never sent.
UPDATE deliveries
SET state = 'dropped', reason_kind = 'dismissed',
    reason = 'discarded with its profile' || coalesce(' (was: ' || reason || ')', ''),
    lease_token = NULL, settled_at = :now, updated_at = :now
WHERE profile = :profile AND state IN ('pending', 'leased', 'parked', 'dead')

-- name: claim
-- Lease up to :limit due deliveries of one target account (:profile, :provider) and kind:
-- first any whose lease expired (a worker died), then pending ones in priority order (what
-- webhooks report now before backfilled imports and reconcile plays, so a large backlog
-- never delays a fresh play by more than a batch), oldest first. Each branch is an index
-- range of deliveries_ready (state, priority, next_attempt_at) read in order and cut at
-- :limit, so no claim sorts a whole backlog. next_attempt_at is the lease expiry while
-- leased. Counts the attempt.
UPDATE deliveries
SET state = 'leased', lease_token = :token, next_attempt_at = :expires,
    attempts = attempts + 1, updated_at = :now
WHERE id IN (
    SELECT id FROM (
        SELECT id, 0 AS rank, next_attempt_at FROM (
            SELECT id, next_attempt_at FROM deliveries
            WHERE profile = :profile AND provider = :provider AND kind = :kind
              AND state = 'leased' AND next_attempt_at <= :now
            ORDER BY next_attempt_at LIMIT :limit)
        UNION ALL
        SELECT id, 1 AS rank, next_attempt_at FROM (
            SELECT id, next_attempt_at FROM deliveries
            WHERE profile = :profile AND provider = :provider AND kind = :kind
              AND state = 'pending' AND priority = 0 AND next_attempt_at <= :now
            ORDER BY next_attempt_at LIMIT :limit)
        UNION ALL
        SELECT id, 2 AS rank, next_attempt_at FROM (
            SELECT id, next_attempt_at FROM deliveries
            WHERE profile = :profile AND provider = :provider AND kind = :kind
              AND state = 'pending' AND priority = 1 AND next_attempt_at <= :now
            ORDER BY next_attempt_at LIMIT :limit))
    ORDER BY rank, next_attempt_at, id
    LIMIT :limit)
RETURNING id

-- name: claimed_rows
-- What a worker needs of the deliveries it just leased (:ids, a JSON array), by id.
SELECT d.id AS id, d.event_id AS event_id, d.profile AS profile, d.provider AS provider,
       d.kind AS kind,
       d.lease_token AS lease_token, d.attempts AS attempts, e.action AS action,
       e.source AS source, e.account AS account,
       coalesce(d.resolved_item, e.item) AS item, d.resolved_item IS NOT NULL AS resolved,
       e.label AS label, e.occurred_at AS occurred_at, d.watched_at AS watched_at,
       e.progress_pct AS progress_pct, d.sent_at AS sent_at, d.unconfirmed AS unconfirmed,
       e.rating AS rating
FROM deliveries AS d JOIN events AS e ON e.id = d.event_id
WHERE d.id IN (SELECT value FROM json_each(:ids)) AND d.lease_token = :token
ORDER BY d.id

-- name: mark_sent
UPDATE deliveries SET sent_at = :now, updated_at = :now
WHERE id = :id AND lease_token = :token

-- name: save_resolution
UPDATE deliveries SET resolved_item = :item, resolved_by = :step
WHERE id = :id AND lease_token = :token

-- name: settle
-- Apply a Settlement (crosswatchd/outbox/states.py) if the lease is still ours.
UPDATE deliveries
SET state = :state, lease_token = NULL,
    next_attempt_at = coalesce(:next_attempt_at, next_attempt_at),
    last_error = coalesce(:error, last_error),
    reason = :reason, reason_kind = :reason_kind,
    sent_at = CASE WHEN :keep_sent THEN sent_at END,
    attempts = attempts - :refund,
    unconfirmed = unconfirmed + :unconfirmed,
    settled_at = :settled_at,
    updated_at = :now
WHERE id = :id AND lease_token = :token

-- name: retry_parked
-- Back to pending, to resolve afresh: the play, rating or watchlist change the user names
-- (:id; parked or dead alike), or, with :id NULL, every parked delivery of the reason kinds :kinds (a JSON array)
-- whose reason contains :reason (NULL: any; a new Anime-Lists file re-queues what the old one parked).
-- (Not written WITH … UPDATE: Python's sqlite3 reports no rowcount for a statement that does
-- not start with UPDATE.)
UPDATE deliveries
SET state = 'pending', next_attempt_at = :now, reason = NULL, reason_kind = NULL,
    resolved_item = NULL, resolved_by = NULL, attempts = 0, unconfirmed = 0,
    settled_at = NULL, updated_at = :now
WHERE id IN (
    SELECT id FROM deliveries
    WHERE id = :id AND kind <> 'live' AND state IN ('parked', 'dead')
      AND (:profile IS NULL OR profile = :profile)
    UNION ALL
    SELECT id FROM deliveries
    WHERE :id IS NULL AND state = 'parked'
      AND (:profile IS NULL OR profile = :profile)
      AND reason_kind IN (SELECT value FROM json_each(:kinds))
      AND (:reason IS NULL OR instr(reason, :reason) > 0))

-- name: dismiss_parked
-- A user gives up on plays no source can identify (personal media…): the one named (:id;
-- parked or dead), or, with :id NULL, every parked play or change of the reason kinds :kinds, of
-- :profile (NULL: any). They are dropped with the reason kept, never sent, never retried.
UPDATE deliveries
SET state = 'dropped', reason_kind = 'dismissed',
    reason = 'dismissed by the user' || coalesce(' (was: ' || reason || ')', ''),
    lease_token = NULL, settled_at = :now, updated_at = :now
WHERE id IN (
    SELECT id FROM deliveries
    WHERE id = :id AND kind <> 'live' AND state IN ('parked', 'dead')
      AND (:profile IS NULL OR profile = :profile)
    UNION ALL
    SELECT id FROM deliveries
    WHERE :id IS NULL AND kind <> 'live' AND state = 'parked'
      AND (:profile IS NULL OR profile = :profile)
      AND reason_kind IN (SELECT value FROM json_each(:kinds)))

-- name: probe_write
-- /readyz: a tiny write, to learn whether the file can be written now.
INSERT INTO meta (key, value) VALUES ('readyz_probe', 1)
ON CONFLICT (key) DO UPDATE SET value = value + 1

-- name: bump_retry_generation
INSERT INTO meta (key, value) VALUES ('retry_generation', 1)
ON CONFLICT (key) DO UPDATE SET value = value + 1


-- ---------------------------------------------------------------------------------------------
-- operator views (crosswatchd/outbox/views.py): status, unresolved, the drainers' sleep
-- ---------------------------------------------------------------------------------------------

-- name: counts
SELECT profile, provider, kind, state, reason_kind, count(*) AS deliveries
FROM deliveries
GROUP BY profile, provider, kind, state, reason_kind

-- name: parked
-- Play, rating and watchlist deliveries in the states :states (a JSON array), of the reason
-- kinds :kinds (a JSON array; NULL: any), newest first.
SELECT d.id AS id, d.profile AS profile, d.provider AS provider, d.state AS state,
       d.kind AS kind, e.action AS action, e.rating AS rating, e.label AS label,
       coalesce(d.reason, '') AS reason, d.reason_kind AS reason_kind,
       d.attempts AS attempts, d.watched_at AS watched_at, e.occurred_at AS occurred_at
FROM deliveries AS d JOIN events AS e ON e.id = d.event_id
WHERE d.kind <> 'live' AND d.state IN (SELECT value FROM json_each(:states))
  AND (:kinds IS NULL OR d.reason_kind IN (SELECT value FROM json_each(:kinds)))
  AND (:profile IS NULL OR d.profile = :profile)
ORDER BY d.id DESC

-- name: backlog
-- Per target account with pending plays: the oldest play, the most attempts, the next due
-- time, and the latest error.
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
-- Does the target hold a play of this event's item from within the event's dedupe window
-- before it (a stop reported right after the scrobble that completed the play)?
SELECT EXISTS (
    SELECT 1
    FROM events AS e CROSS JOIN json_each(e.keys) AS ek
    CROSS JOIN delivery_keys AS k
    WHERE e.id = :event_id
      AND k.profile = e.profile
      AND k.provider = :provider
      AND k.kind = 'play'
      AND k.key = ek.value
      AND k.at BETWEEN e.occurred_at - e.dedupe_window_s AND e.occurred_at + 60
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
  AND (:profiles IS NULL OR profile IN (SELECT value FROM json_each(:profiles)))
GROUP BY profile, provider, kind

-- name: retry_generation
SELECT value FROM meta WHERE key = 'retry_generation'

-- name: recent
-- The latest settled plays, ratings and watchlist changes (delivered, parked, dead), newest
-- first: what the status page lists as recent deliveries.
SELECT d.id AS id, d.profile AS profile, d.provider AS provider, d.kind AS kind,
       d.state AS state, e.label AS label, coalesce(d.reason, '') AS reason,
       d.watched_at AS watched_at, d.settled_at AS settled_at
FROM deliveries AS d JOIN events AS e ON e.id = d.event_id
WHERE d.kind <> 'live' AND d.state IN ('delivered', 'parked', 'dead')
ORDER BY d.settled_at DESC, d.id DESC
LIMIT :limit

-- name: waiting_plays
-- Plays of one target account (:profile, :provider) still on their way (pending or being
-- sent): their identity keys (a JSON array) and watched_at.
SELECT e.keys AS keys, d.watched_at AS watched_at
FROM deliveries AS d JOIN events AS e ON e.id = d.event_id
WHERE d.profile = :profile AND d.provider = :provider AND d.kind = 'play'
  AND d.state IN ('pending', 'leased')

-- name: imported_keys
-- Which of the import row keys :keys (a JSON array) :profile has an event of
-- (events.import_key, migration 4): the rows an import of a file skipped as imported before.
SELECT import_key FROM events
WHERE profile = :profile AND import_key IN (SELECT value FROM json_each(:keys))

-- name: rating_keys
-- The identity keys of :profile's rating deliveries to the providers :providers (a JSON array),
-- with when each rating was made (at), its delivery and its value (NULL: cleared): what an
-- import compares a file's ratings with (the latest per item wins, state_keys_of_delivery).
SELECT k.key AS key, k.at AS at, k.delivery_id AS delivery_id, e.rating AS rating
FROM delivery_keys AS k
JOIN deliveries AS d ON d.id = k.delivery_id
JOIN events AS e ON e.id = d.event_id
WHERE k.profile = :profile AND k.provider IN (SELECT value FROM json_each(:providers))
  AND k.kind = 'rating'

-- name: movie_plays
-- Every movie play of :profile the outbox holds, oldest first (export letterboxd): plays with a
-- delivery the user did not give up on (dropped), delivered or not, and plays stored while the
-- profile had no target. An event every target already had (a repeat of a play, kept without
-- deliveries) is not a play of its own. resolved_item: the ids a delivery found, if any.
SELECT e.id AS id, e.occurred_at AS at, e.item AS item,
       (SELECT d.resolved_item FROM deliveries AS d
         WHERE d.event_id = e.id AND d.resolved_item IS NOT NULL
         ORDER BY d.id LIMIT 1) AS resolved_item
FROM events AS e
WHERE e.profile = :profile AND e.action = 'watched'
  AND json_extract(e.item, '$.kind') = 'movie'
  AND (e.providers = '[]'
       OR EXISTS (SELECT 1 FROM deliveries AS d
                  WHERE d.event_id = e.id AND d.kind = 'play' AND d.state <> 'dropped'))
ORDER BY e.occurred_at, e.id

-- name: movie_ratings
-- Every rating (or clearing, rating NULL) of a movie by :profile, oldest first: the latest per
-- film is its rating (export letterboxd). resolved_item as in movie_plays.
SELECT e.id AS id, e.occurred_at AS at, e.item AS item, e.rating AS rating,
       (SELECT d.resolved_item FROM deliveries AS d
         WHERE d.event_id = e.id AND d.resolved_item IS NOT NULL
         ORDER BY d.id LIMIT 1) AS resolved_item
FROM events AS e
WHERE e.profile = :profile AND e.action = 'rate'
  AND json_extract(e.item, '$.kind') = 'movie'
ORDER BY e.occurred_at, e.id

-- name: seen_accounts
SELECT account FROM seen_accounts WHERE source = :source ORDER BY last_seen DESC

-- name: untargeted_plays
SELECT count(*) AS plays FROM events WHERE action = 'watched' AND providers = '[]'


-- ---------------------------------------------------------------------------------------------
-- the watchlist pass (crosswatchd/watchlist): what the outbox holds about each list
-- ---------------------------------------------------------------------------------------------

-- name: watchlist_changes
-- The latest watchlist change of each item for the target accounts of :profile on the
-- providers :providers (a JSON array) that a watchlist pass needs to know about: changes not
-- applied yet (pending, leased, parked, dead), changes the target deliberately left unapplied
-- (delivered, reason kind 'kept'), and changes applied since :since (unix s). A change with a
-- newer one of the same item that is not dropped is left out (state_changes, schema.sql).
SELECT d.id AS id, d.provider AS provider, e.action AS action, d.state AS state,
       d.reason_kind AS reason_kind, d.reason AS reason, d.settled_at AS settled_at,
       e.occurred_at AS occurred_at, coalesce(d.resolved_item, e.item) AS item
FROM deliveries AS d JOIN events AS e ON e.id = d.event_id
WHERE d.profile = :profile AND d.kind = 'watchlist'
  AND d.provider IN (SELECT value FROM json_each(:providers))
  AND (d.state IN ('pending', 'leased', 'parked', 'dead')
       OR (d.state = 'delivered' AND (d.reason_kind = 'kept' OR d.settled_at >= :since)))
  AND NOT EXISTS (SELECT 1 FROM state_changes AS k
                  JOIN deliveries AS n ON n.id = k.delivery_id
                  WHERE k.new_delivery_id = d.id AND k.relation = 'newer'
                    AND n.state <> 'dropped')

-- name: plays_since
-- The items (resolved when they were) of :profile's plays on :provider delivered since :since
-- (unix s) or sent and not yet confirmed, with their watched_at: the plays that may have made
-- the target take an item off its watchlist by itself (Trakt "Get Watchlist": a watched item
-- is removed; SIMKL moves it out of Plan to Watch), and that reconcile folds into its copy of
-- the target's history.
SELECT coalesce(d.resolved_item, e.item) AS item, d.watched_at AS watched_at
FROM deliveries AS d JOIN events AS e ON e.id = d.event_id
WHERE d.profile = :profile AND d.provider = :provider AND d.kind = 'play'
  AND d.state IN ('delivered', 'pending', 'leased')
  AND (d.settled_at >= :since OR d.sent_at IS NOT NULL)

-- name: watchlist_counts
-- Waiting and parked watchlist changes per target account (``plex`` included), and the
-- reason of the newest parked one: the watchlist part of `status`.
SELECT profile, provider,
       sum(state IN ('pending', 'leased')) AS pending,
       sum(state IN ('parked', 'dead')) AS parked,
       (SELECT d2.reason FROM deliveries AS d2
         WHERE d2.profile = d.profile AND d2.provider = d.provider AND d2.kind = 'watchlist'
           AND d2.state IN ('parked', 'dead')
         ORDER BY d2.id DESC LIMIT 1) AS reason
FROM deliveries AS d
WHERE kind = 'watchlist' AND state IN ('pending', 'leased', 'parked', 'dead')
GROUP BY profile, provider
