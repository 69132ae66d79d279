-- What reconcile remembers, in PostgreSQL (schema_versions.store = 'reconcile'): the same
-- tables as schema.sql (SQLite's reconcile.sqlite3), prefixed, in the database every replica
-- shares, so a pass on any replica starts from the copies the last one read.

-- migration: 1

CREATE TABLE reconcile_copies (
    profile    text             NOT NULL,
    provider   text             NOT NULL,
    part       text             NOT NULL,
    activities text,
    read_at    double precision NOT NULL,
    total      bigint,
    PRIMARY KEY (profile, provider, part)
);
CREATE TABLE reconcile_watches (
    profile  text             NOT NULL,
    provider text             NOT NULL,
    ident    text,
    at       double precision NOT NULL,
    keys     text             NOT NULL
);
CREATE INDEX reconcile_watches_of ON reconcile_watches (profile, provider);
CREATE TABLE reconcile_ratings (
    profile  text    NOT NULL,
    provider text    NOT NULL,
    ident    text    NOT NULL,
    kind     text    NOT NULL,
    rating   integer NOT NULL,
    label    text    NOT NULL,
    keys     text    NOT NULL
);
CREATE INDEX reconcile_ratings_of ON reconcile_ratings (profile, provider);
CREATE TABLE reconcile_passes (
    profile  text NOT NULL,
    provider text NOT NULL,
    result   text NOT NULL,
    PRIMARY KEY (profile, provider)
);
