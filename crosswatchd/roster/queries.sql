-- Every statement of the roster, by name (crosswatchd/roster/store.py loads them once).


-- name: profiles
SELECT name, plex_accounts, tautulli_users, targets, webhook_token, created_at
FROM profiles
ORDER BY name

-- name: add
-- A new profile; nothing when the name is taken (the caller says so).
INSERT INTO profiles (name, plex_accounts, tautulli_users, targets, webhook_token, created_at)
VALUES (:name, :plex_accounts, :tautulli_users, :targets, :webhook_token, :now)
ON CONFLICT (name) DO NOTHING
RETURNING name

-- name: remove
DELETE FROM profiles WHERE name = :name RETURNING name

-- name: bump_revision
UPDATE profiles_revision SET value = value + 1 WHERE id = 1

-- name: revision
SELECT value FROM profiles_revision WHERE id = 1
