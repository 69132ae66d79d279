-- The replicas store's statements for PostgreSQL: the same names, parameters and result
-- columns as queries.sql (SQLite), which explains each one. Parameters carry a cast where
-- PostgreSQL could not infer their type.


-- name: register
INSERT INTO replicas (id, host, pid, started_at, heartbeat_at)
VALUES (:id, :host, :pid::int, :started_at::float8, :now::float8)
ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at

-- name: beat
UPDATE replicas SET heartbeat_at = :now::float8 WHERE id = :id

-- name: renew
UPDATE account_leases SET expires_at = :expires::float8
WHERE holder = :id AND expires_at > :now::float8
RETURNING profile, provider

-- name: replicas
SELECT r.id AS id, r.host AS host, r.pid AS pid, r.started_at AS started_at,
       r.heartbeat_at AS heartbeat_at,
       (SELECT count(*) FROM account_leases AS l
         WHERE l.holder = r.id AND l.expires_at > :now::float8) AS accounts
FROM replicas AS r
ORDER BY r.id

-- name: leases
SELECT profile, provider, holder, expires_at FROM account_leases

-- name: held_by
SELECT profile, provider FROM account_leases
WHERE holder = :id AND expires_at > :now::float8
ORDER BY profile, provider

-- name: ensure_accounts
INSERT INTO account_leases (profile, provider)
SELECT a.value->>0, a.value->>1 FROM jsonb_array_elements(:accounts::text::jsonb) AS a (value)
ON CONFLICT (profile, provider) DO NOTHING

-- name: acquire
-- Replicas racing for the same rows: each locks the rows it can take, skipping those another
-- is taking right now (tried again next round; no deadlock between two lists), and the lock
-- re-checks the WHERE against a committed update (READ COMMITTED), so exactly one takes each.
UPDATE account_leases AS l
SET previous_holder = l.holder, holder = :id, expires_at = :expires::float8,
    acquired_at = :now::float8
FROM (SELECT profile, provider FROM account_leases
      WHERE (profile, provider) IN (
              SELECT a.value->>0, a.value->>1
              FROM jsonb_array_elements(:accounts::text::jsonb) AS a (value))
        AND (holder IS NULL OR holder = :id OR expires_at <= :now::float8)
      ORDER BY profile, provider
      FOR UPDATE SKIP LOCKED) AS free
WHERE l.profile = free.profile AND l.provider = free.provider
RETURNING l.profile, l.provider, l.limiter_state, l.previous_holder, l.state_saved_at

-- name: release
-- As SQLite's: the leases of :states handed back in one statement, each with its state.
UPDATE account_leases AS l
SET holder = NULL, previous_holder = :id, expires_at = 0,
    limiter_state = coalesce(s.value->>2, l.limiter_state),
    state_saved_at = CASE WHEN s.value->>2 IS NULL THEN l.state_saved_at ELSE :now::float8 END
FROM jsonb_array_elements(:states::text::jsonb) AS s (value)
WHERE l.profile = s.value->>0 AND l.provider = s.value->>1 AND l.holder = :id

-- name: save_state
-- The limiter states of :states (a JSON array of [profile, provider, state text]) in one
-- statement, for the accounts :id holds.
UPDATE account_leases AS l
SET limiter_state = s.value->>2, state_saved_at = :now::float8
FROM jsonb_array_elements(:states::text::jsonb) AS s (value)
WHERE l.profile = s.value->>0 AND l.provider = s.value->>1 AND l.holder = :id

-- name: holds
SELECT count(*) AS held FROM account_leases
WHERE profile = :profile AND provider = :provider AND holder = :id
  AND expires_at >= :until::float8

-- name: deregister
DELETE FROM replicas WHERE id = :id

-- name: prune
DELETE FROM replicas
WHERE heartbeat_at < :before::float8
  AND id NOT IN (SELECT holder FROM account_leases
                 WHERE holder IS NOT NULL AND expires_at > :now::float8)

-- name: reset_leases
UPDATE account_leases SET holder = NULL, expires_at = 0 WHERE holder IS NOT NULL

-- name: reset_replicas
DELETE FROM replicas
