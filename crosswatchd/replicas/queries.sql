-- Every statement of the replicas store, by name (crosswatchd/replicas/store.py loads them
-- once). Parameters are named (:param); times are unix seconds. A replica's clock is trusted
-- to within a second or two of the others' (NTP), as the outbox's delivery leases already do:
-- a lease row says until when its holder may send, and another replica takes it only after.


-- name: register
-- A replica announces itself (again after its row was pruned while it could not beat).
INSERT INTO replicas (id, host, pid, started_at, heartbeat_at)
VALUES (:id, :host, :pid, :started_at, :now)
ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at

-- name: beat
UPDATE replicas SET heartbeat_at = :now WHERE id = :id

-- name: renew
-- The heartbeat extends every lease the replica still holds; a lease that expired is not
-- renewed (another replica may be taking it: the holder acquires it again like anyone).
UPDATE account_leases SET expires_at = :expires
WHERE holder = :id AND expires_at > :now
RETURNING profile, provider

-- name: replicas
SELECT r.id AS id, r.host AS host, r.pid AS pid, r.started_at AS started_at,
       r.heartbeat_at AS heartbeat_at,
       (SELECT count(*) FROM account_leases AS l
         WHERE l.holder = r.id AND l.expires_at > :now) AS accounts
FROM replicas AS r
ORDER BY r.id

-- name: leases
SELECT profile, provider, holder, expires_at FROM account_leases

-- name: held_by
SELECT profile, provider FROM account_leases
WHERE holder = :id AND expires_at > :now
ORDER BY profile, provider

-- name: ensure_accounts
-- A row for each account of :accounts (a JSON array of [profile, provider] pairs).
INSERT INTO account_leases (profile, provider)
SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(:accounts)
WHERE true
ON CONFLICT (profile, provider) DO NOTHING

-- name: acquire
-- Take the free leases (never held, released, or expired) of :accounts (a JSON array of
-- [profile, provider] pairs), or renew one's own. previous_holder keeps who had each (NULL:
-- it was free or released), for the log.
UPDATE account_leases
SET previous_holder = holder, holder = :id, expires_at = :expires, acquired_at = :now
WHERE (profile, provider) IN (
        SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(:accounts))
  AND (holder IS NULL OR holder = :id OR expires_at <= :now)
RETURNING profile, provider, limiter_state, previous_holder, state_saved_at

-- name: release
-- Hand the leases of :states (a JSON array of [profile, provider, state text or null]) back,
-- each with its limiter's state for the next holder (kept as it was when null), in one
-- statement.
UPDATE account_leases
SET holder = NULL, previous_holder = :id, expires_at = 0,
    limiter_state = coalesce((SELECT json_extract(s.value, '$[2]') FROM json_each(:states) AS s
                              WHERE json_extract(s.value, '$[0]') = account_leases.profile
                                AND json_extract(s.value, '$[1]') = account_leases.provider),
                             limiter_state),
    state_saved_at = CASE WHEN (SELECT json_extract(s.value, '$[2]') FROM json_each(:states) AS s
                                WHERE json_extract(s.value, '$[0]') = account_leases.profile
                                  AND json_extract(s.value, '$[1]') = account_leases.provider)
                               IS NULL THEN state_saved_at ELSE :now END
WHERE holder = :id
  AND (profile, provider) IN (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]')
                              FROM json_each(:states))

-- name: save_state
-- The limiter states of :states (a JSON array of [profile, provider, state text]) in one
-- statement, for the accounts :id holds.
UPDATE account_leases
SET limiter_state = (SELECT json_extract(s.value, '$[2]') FROM json_each(:states) AS s
                     WHERE json_extract(s.value, '$[0]') = account_leases.profile
                       AND json_extract(s.value, '$[1]') = account_leases.provider),
    state_saved_at = :now
WHERE holder = :id
  AND (profile, provider) IN (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]')
                              FROM json_each(:states))

-- name: holds
-- Whether the replica holds the account's lease for at least until :until (the send gate).
SELECT count(*) AS held FROM account_leases
WHERE profile = :profile AND provider = :provider AND holder = :id AND expires_at >= :until

-- name: deregister
DELETE FROM replicas WHERE id = :id

-- name: prune
-- Forget replicas silent since :before that hold no lease.
DELETE FROM replicas
WHERE heartbeat_at < :before
  AND id NOT IN (SELECT holder FROM account_leases
                 WHERE holder IS NOT NULL AND expires_at > :now)

-- name: reset_leases
-- SQLite: one daemon per data dir (a lock file says so), so at start every lease left by an
-- earlier process is free at once, and every other replica row is gone.
UPDATE account_leases SET holder = NULL, expires_at = 0 WHERE holder IS NOT NULL

-- name: reset_replicas
DELETE FROM replicas
