-- The id cache's statements (crosswatchd/resolve/cache.py) for SQLite, by name; the same
-- names, parameters and columns as cache_queries.pg.sql. :found is 1 (an answer) or 0
-- ("not found"); :value the answer's JSON ({"reason"} for "not found").

-- name: get
SELECT found, value, step, expires_at FROM id_cache WHERE key = :key AND expires_at > :now

-- name: put
INSERT INTO id_cache (key, found, value, step, stored_at, expires_at)
VALUES (:key, :found, :value, :step, :now, :expires_at)
ON CONFLICT (key) DO UPDATE
SET found = excluded.found, value = excluded.value, step = excluded.step,
    stored_at = excluded.stored_at, expires_at = excluded.expires_at

-- name: forget_negative
-- Every "not found" answer (:step NULL), or one step's.
DELETE FROM id_cache WHERE found = 0 AND (:step IS NULL OR step = :step)

-- name: purge_expired
DELETE FROM id_cache WHERE expires_at <= :now

-- name: get_many
-- The unexpired entries of the keys in :keys (a JSON array of strings), for IdCache.prefetch.
SELECT key, found, value, step, expires_at FROM id_cache
WHERE key IN (SELECT value FROM json_each(:keys)) AND expires_at > :now
