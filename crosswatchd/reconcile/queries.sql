-- crosswatchd/reconcile/state.py's statements for SQLite, by name; the same names, parameters
-- and columns as queries.pg.sql. A bulk insert takes its rows as one JSON array (:rows) of
-- arrays, so a copy of 100,000 plays is a few statements.

-- name: load_copy
SELECT activities, read_at, total FROM copies
WHERE profile = :profile AND provider = :provider AND part = :part

-- name: load_watches
SELECT ident, at, keys FROM watches WHERE profile = :profile AND provider = :provider

-- name: load_ratings
SELECT ident, kind, rating, label, keys FROM ratings
WHERE profile = :profile AND provider = :provider

-- name: save_copy
INSERT OR REPLACE INTO copies (profile, provider, part, activities, read_at, total)
VALUES (:profile, :provider, :part, :activities, :read_at, :total)

-- name: delete_watches
DELETE FROM watches WHERE profile = :profile AND provider = :provider

-- name: insert_watches
-- :rows: [[ident, at, keys], …]
INSERT INTO watches (profile, provider, ident, at, keys)
SELECT :profile, :provider, json_extract(value, '$[0]'), json_extract(value, '$[1]'),
       json_extract(value, '$[2]')
FROM json_each(:rows)

-- name: delete_ratings
DELETE FROM ratings WHERE profile = :profile AND provider = :provider

-- name: insert_ratings
-- :rows: [[ident, kind, rating, label, keys], …]
INSERT INTO ratings (profile, provider, ident, kind, rating, label, keys)
SELECT :profile, :provider, json_extract(value, '$[0]'), json_extract(value, '$[1]'),
       json_extract(value, '$[2]'), json_extract(value, '$[3]'), json_extract(value, '$[4]')
FROM json_each(:rows)

-- name: save_pass
INSERT OR REPLACE INTO passes (profile, provider, result) VALUES (:profile, :provider, :result)

-- name: load_passes
SELECT profile, provider, result FROM passes
