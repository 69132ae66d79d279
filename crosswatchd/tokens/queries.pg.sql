-- crosswatchd/tokens/shared.py's statements, by name. A token is stored as JSON text; the
-- conditional writes compare the stored access and refresh tokens with the ones the caller
-- started from (:access, :refresh; "" for no refresh token), so a stale refresher never
-- overwrites or revokes a newer token.

-- name: load_all
SELECT profile, provider, token FROM tokens WHERE revoked_at IS NULL

-- name: load_some
-- The rows of the accounts :accounts (a JSON array of [profile, provider] pairs), revoked
-- ones included (revoked_at tells).
SELECT t.profile AS profile, t.provider AS provider, t.token AS token,
       t.revoked_at AS revoked_at
FROM tokens AS t
JOIN jsonb_array_elements(:accounts::text::jsonb) AS a (pair)
  ON t.profile = a.pair->>0 AND t.provider = a.pair->>1

-- name: save
INSERT INTO tokens (profile, provider, token, revoked_at, updated_at)
VALUES (:profile, :provider, :token, NULL, :now::float8)
ON CONFLICT (profile, provider) DO UPDATE
SET token = excluded.token, revoked_at = NULL, updated_at = excluded.updated_at

-- name: save_if
UPDATE tokens SET token = :token, updated_at = :now::float8
WHERE profile = :profile AND provider = :provider AND revoked_at IS NULL
  AND token::jsonb->>'access_token' = :access::text
  AND coalesce(token::jsonb->>'refresh_token', '') = :refresh::text

-- name: revoke
UPDATE tokens SET revoked_at = :now::float8, updated_at = :now::float8
WHERE profile = :profile AND provider = :provider AND revoked_at IS NULL

-- name: revoke_if
UPDATE tokens SET revoked_at = :now::float8, updated_at = :now::float8
WHERE profile = :profile AND provider = :provider AND revoked_at IS NULL
  AND token::jsonb->>'access_token' = :access::text
  AND coalesce(token::jsonb->>'refresh_token', '') = :refresh::text

-- name: copy
-- `migrate --to`: a token file's answer, unless the database already holds one for the
-- account (a token stored there is newer than the data dir being moved).
INSERT INTO tokens (profile, provider, token, revoked_at, updated_at)
VALUES (:profile, :provider, :token, NULL, :now::float8)
ON CONFLICT (profile, provider) DO NOTHING
