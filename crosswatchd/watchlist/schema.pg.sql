-- crosswatchd watchlist state in PostgreSQL (schema_versions.store = 'watchlist'): the same
-- tables as schema.sql (SQLite's watchlist.sqlite3), which explains them, in the database every
-- replica shares. Times are unix seconds; lists and records JSON text.

-- migration: 1

CREATE TABLE watchlist_sides (
    profile  text             NOT NULL,
    side     text             NOT NULL,
    items    text             NOT NULL,
    stamps   text,
    read_at  double precision NOT NULL,
    PRIMARY KEY (profile, side)
);

CREATE TABLE watchlist_passes (
    profile      text             PRIMARY KEY,
    mode         text             NOT NULL,
    tried_at     double precision NOT NULL,
    finished_at  double precision,
    errors       text             NOT NULL,
    summary      text
);

CREATE TABLE discover_ids (
    rating_key  text             PRIMARY KEY,
    ids         text             NOT NULL,
    checked_at  double precision NOT NULL
);

CREATE TABLE discover_matches (
    key         text             PRIMARY KEY,
    rating_key  text,
    checked_at  double precision NOT NULL
);
