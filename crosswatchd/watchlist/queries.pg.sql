-- crosswatchd/watchlist/state.py's statements for PostgreSQL: the same names, parameters and
-- columns as queries.sql (SQLite). The tables are prefixed (watchlist_sides, watchlist_passes)
-- as they share the database with every other store.

-- name: load_sides
SELECT side, items, stamps, read_at FROM watchlist_sides WHERE profile = :profile

-- name: save_side
INSERT INTO watchlist_sides (profile, side, items, stamps, read_at)
VALUES (:profile, :side, :items, :stamps::text, :read_at::float8)
ON CONFLICT (profile, side) DO UPDATE
SET items = excluded.items, stamps = excluded.stamps, read_at = excluded.read_at

-- name: save_pass
INSERT INTO watchlist_passes (profile, mode, tried_at, finished_at, errors, summary)
VALUES (:profile, :mode, :tried_at::float8, :finished_at::float8, :errors, :summary::text)
ON CONFLICT (profile) DO UPDATE
SET mode = excluded.mode, tried_at = excluded.tried_at,
    finished_at = coalesce(excluded.finished_at, watchlist_passes.finished_at),
    errors = excluded.errors, summary = coalesce(excluded.summary, watchlist_passes.summary)

-- name: load_passes
SELECT profile, mode, tried_at, finished_at, errors, summary FROM watchlist_passes

-- name: load_ids
SELECT d.rating_key AS rating_key, d.ids AS ids
FROM jsonb_array_elements_text(:keys::text::jsonb) AS k (value)
JOIN discover_ids AS d ON d.rating_key = k.value
WHERE d.ids <> '{}' OR d.checked_at >= :fresh_after::float8

-- name: save_ids
INSERT INTO discover_ids (rating_key, ids, checked_at) VALUES (:rating_key, :ids, :now::float8)
ON CONFLICT (rating_key) DO UPDATE SET ids = excluded.ids, checked_at = excluded.checked_at

-- name: load_match
SELECT rating_key, checked_at FROM discover_matches WHERE key = :key

-- name: save_match
INSERT INTO discover_matches (key, rating_key, checked_at)
VALUES (:key, :rating_key::text, :now::float8)
ON CONFLICT (key) DO UPDATE
SET rating_key = excluded.rating_key, checked_at = excluded.checked_at
