-- crosswatchd/reconcile/state.py's statements for PostgreSQL: the same names, parameters and
-- columns as queries.sql (SQLite).

-- name: load_copy
SELECT activities, read_at, total FROM reconcile_copies
WHERE profile = :profile AND provider = :provider AND part = :part

-- name: load_watches
SELECT ident, at, keys FROM reconcile_watches WHERE profile = :profile AND provider = :provider

-- name: load_ratings
SELECT ident, kind, rating, label, keys FROM reconcile_ratings
WHERE profile = :profile AND provider = :provider

-- name: save_copy
INSERT INTO reconcile_copies (profile, provider, part, activities, read_at, total)
VALUES (:profile, :provider, :part, :activities::text, :read_at::float8, :total::bigint)
ON CONFLICT (profile, provider, part) DO UPDATE
SET activities = excluded.activities, read_at = excluded.read_at, total = excluded.total

-- name: delete_watches
DELETE FROM reconcile_watches WHERE profile = :profile AND provider = :provider

-- name: insert_watches
INSERT INTO reconcile_watches (profile, provider, ident, at, keys)
SELECT :profile, :provider, r->>0, (r->>1)::float8, r->>2
FROM jsonb_array_elements(:rows::text::jsonb) AS r

-- name: delete_ratings
DELETE FROM reconcile_ratings WHERE profile = :profile AND provider = :provider

-- name: insert_ratings
INSERT INTO reconcile_ratings (profile, provider, ident, kind, rating, label, keys)
SELECT :profile, :provider, r->>0, r->>1, (r->>2)::int, r->>3, r->>4
FROM jsonb_array_elements(:rows::text::jsonb) AS r

-- name: save_pass
INSERT INTO reconcile_passes (profile, provider, result) VALUES (:profile, :provider, :result)
ON CONFLICT (profile, provider) DO UPDATE SET result = excluded.result

-- name: load_passes
SELECT profile, provider, result FROM reconcile_passes
