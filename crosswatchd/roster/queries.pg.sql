-- The roster's statements for PostgreSQL: the same names, parameters and result columns as
-- queries.sql (SQLite).


-- name: profiles
SELECT name, plex_accounts, tautulli_users, targets, webhook_token, created_at
FROM profiles
ORDER BY name

-- name: add
INSERT INTO profiles (name, plex_accounts, tautulli_users, targets, webhook_token, created_at)
VALUES (:name, :plex_accounts, :tautulli_users, :targets::text, :webhook_token, :now::float8)
ON CONFLICT (name) DO NOTHING
RETURNING name

-- name: remove
DELETE FROM profiles WHERE name = :name RETURNING name

-- name: bump_revision
UPDATE profiles_revision SET value = value + 1 WHERE id = 1

-- name: revision
SELECT value FROM profiles_revision WHERE id = 1
