-- The roster (SQLite: data_dir/profiles.sqlite3): the profiles added at run time with
-- `crosswatchd profile add`, beside those of the config file. Block "-- migration: N" brings
-- a file from version N-1 to N (PRAGMA user_version).
--
-- profiles: one household member each. plex_accounts and tautulli_users are JSON lists of
-- names; targets a JSON list of providers (NULL: every provider that has a client id);
-- webhook_token the secret of the member's own webhook URL (/webhook/plex/<token>).
-- profiles_revision: bumped by every change, so a running daemon notices one with a single
-- cheap read. Times are unix seconds (UTC).

-- migration: 1

CREATE TABLE profiles (
    name           TEXT PRIMARY KEY,
    plex_accounts  TEXT NOT NULL DEFAULT '[]',
    tautulli_users TEXT NOT NULL DEFAULT '[]',
    targets        TEXT,
    webhook_token  TEXT NOT NULL UNIQUE,
    created_at     REAL NOT NULL
);

CREATE TABLE profiles_revision (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    value INTEGER NOT NULL
);
INSERT INTO profiles_revision (id, value) VALUES (1, 0);
