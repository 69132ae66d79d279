-- What reconcile remembers (data_dir/reconcile.sqlite3; crosswatchd/reconcile/state.py explains
-- it): the migrations, in order, applied by crosswatchd.sqlite.migrate ("-- migration: N"
-- brings a file from version N-1 to N). Times are unix seconds (REAL, UTC).

-- migration: 1

CREATE TABLE copies (
    profile    TEXT NOT NULL,
    provider   TEXT NOT NULL,
    part       TEXT NOT NULL,      -- plays | ratings
    activities TEXT,               -- JSON: Activities.stamps when read
    read_at    REAL NOT NULL,      -- unix s: when the read started
    total      INTEGER,            -- Trakt: X-Pagination-Item-Count of /sync/history
    PRIMARY KEY (profile, provider, part)
) WITHOUT ROWID;
CREATE TABLE watches (
    profile  TEXT NOT NULL,
    provider TEXT NOT NULL,
    ident    TEXT,                 -- history id / SIMKL entry; NULL: folded, ours
    at       REAL NOT NULL,        -- watched_at, unix s
    keys     TEXT NOT NULL         -- identity keys joined by \x1f
);
CREATE INDEX watches_of ON watches (profile, provider);
CREATE TABLE ratings (
    profile  TEXT NOT NULL,
    provider TEXT NOT NULL,
    ident    TEXT NOT NULL,
    kind     TEXT NOT NULL,
    rating   INTEGER NOT NULL,
    label    TEXT NOT NULL,
    keys     TEXT NOT NULL
);
CREATE INDEX ratings_of ON ratings (profile, provider);
CREATE TABLE passes (
    profile  TEXT NOT NULL,
    provider TEXT NOT NULL,
    result   TEXT NOT NULL,        -- JSON: the pass's figures for this target account
    PRIMARY KEY (profile, provider)
) WITHOUT ROWID;
