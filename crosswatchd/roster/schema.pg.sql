-- The roster for PostgreSQL (schema_versions.store = 'profiles'): the same tables as
-- schema.sql (SQLite), which explains them.

-- migration: 1

CREATE TABLE profiles (
    name           text             PRIMARY KEY,
    plex_accounts  text             NOT NULL DEFAULT '[]',
    tautulli_users text             NOT NULL DEFAULT '[]',
    targets        text,
    webhook_token  text             NOT NULL UNIQUE,
    created_at     double precision NOT NULL
);

CREATE TABLE profiles_revision (
    id    integer PRIMARY KEY CHECK (id = 1),
    value bigint  NOT NULL
);
INSERT INTO profiles_revision (id, value) VALUES (1, 0);
