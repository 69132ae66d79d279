-- The id cache's statements for PostgreSQL: the same names, parameters and columns as
-- cache_queries.sql (SQLite), which says what each is for.

-- name: get
SELECT found, value, step, expires_at FROM id_cache
WHERE key = :key AND expires_at > :now::float8

-- name: put
INSERT INTO id_cache (key, found, value, step, stored_at, expires_at)
VALUES (:key, :found::int, :value, :step, :now::float8, :expires_at::float8)
ON CONFLICT (key) DO UPDATE
SET found = excluded.found, value = excluded.value, step = excluded.step,
    stored_at = excluded.stored_at, expires_at = excluded.expires_at

-- name: forget_negative
DELETE FROM id_cache WHERE found = 0 AND (:step::text IS NULL OR step = :step::text)

-- name: purge_expired
DELETE FROM id_cache WHERE expires_at <= :now::float8

-- name: get_many
SELECT key, found, value, step, expires_at FROM id_cache
WHERE key IN (SELECT jsonb_array_elements_text(:keys::text::jsonb)) AND expires_at > :now::float8
