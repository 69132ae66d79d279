-- Every statement of crosswatchd/watchlist/state.py, by name ("-- name: NAME", loaded once as
-- the outbox's queries are). Parameters are named; lists travel as one JSON array.

-- name: load_sides
SELECT side, items, stamps, read_at FROM sides WHERE profile = :profile

-- name: save_side
INSERT INTO sides (profile, side, items, stamps, read_at)
VALUES (:profile, :side, :items, :stamps, :read_at)
ON CONFLICT (profile, side) DO UPDATE
SET items = excluded.items, stamps = excluded.stamps, read_at = excluded.read_at

-- name: save_pass
INSERT INTO passes (profile, mode, tried_at, finished_at, errors, summary)
VALUES (:profile, :mode, :tried_at, :finished_at, :errors, :summary)
ON CONFLICT (profile) DO UPDATE
SET mode = excluded.mode, tried_at = excluded.tried_at,
    finished_at = coalesce(excluded.finished_at, passes.finished_at),
    errors = excluded.errors, summary = coalesce(excluded.summary, passes.summary)

-- name: load_passes
SELECT profile, mode, tried_at, finished_at, errors, summary FROM passes

-- name: load_ids
-- Cached ids of the ratingKeys :keys (a JSON array): those with ids, and those without any
-- checked after :fresh_after.
SELECT d.rating_key AS rating_key, d.ids AS ids
FROM json_each(:keys) AS k CROSS JOIN discover_ids AS d
WHERE d.rating_key = k.value AND (d.ids <> '{}' OR d.checked_at >= :fresh_after)

-- name: save_ids
INSERT INTO discover_ids (rating_key, ids, checked_at) VALUES (:rating_key, :ids, :now)
ON CONFLICT (rating_key) DO UPDATE SET ids = excluded.ids, checked_at = excluded.checked_at

-- name: load_match
SELECT rating_key, checked_at FROM discover_matches WHERE key = :key

-- name: save_match
INSERT INTO discover_matches (key, rating_key, checked_at) VALUES (:key, :rating_key, :now)
ON CONFLICT (key) DO UPDATE
SET rating_key = excluded.rating_key, checked_at = excluded.checked_at
