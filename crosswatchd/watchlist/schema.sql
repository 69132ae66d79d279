-- crosswatchd watchlist state (data_dir/watchlist.sqlite3): the migrations, in order, applied by
-- crosswatchd.sqlite.migrate ("-- migration: N" brings a file from version N-1 to N). Its own
-- file, apart from the outbox: nothing here is needed to deliver a play, and a lost file only
-- costs one pass that reads every list afresh (and queues nothing it should not: a pass with
-- no last state sees additions only, never removals).
-- Times are unix seconds (REAL, UTC).

-- migration: 1

-- Each side's list as last read, per profile: the "last synced state" the next pass compares
-- with (crosswatchd/watchlist/planner.py).
CREATE TABLE sides (
    profile  TEXT NOT NULL,
    side     TEXT NOT NULL,              -- plex | trakt | simkl
    items    TEXT NOT NULL,              -- JSON array of [kind, title, year, {ids}, guid]
    stamps   TEXT,                       -- JSON of the target's activity times at that read
    read_at  REAL NOT NULL,              -- when that read started
    PRIMARY KEY (profile, side)
) WITHOUT ROWID;

-- The last pass of each profile: for `status` and the status page.
CREATE TABLE passes (
    profile      TEXT PRIMARY KEY,
    mode         TEXT NOT NULL,
    tried_at     REAL NOT NULL,          -- the last pass, finished or not
    finished_at  REAL,                   -- the last pass that planned (NULL: none yet)
    errors       TEXT NOT NULL,          -- JSON {side: why it could not be read} of the last pass
    summary      TEXT                    -- JSON of the last planned pass (crosswatchd/watchlist/passes.py)
) WITHOUT ROWID;

-- External ids of Discover items (GET /library/metadata/{ratingKey}): stable data, so a pass
-- with no change makes no metadata call. An item with no id is re-checked after a day.
CREATE TABLE discover_ids (
    rating_key  TEXT PRIMARY KEY,
    ids         TEXT NOT NULL,           -- JSON {"imdb": ..., "tmdb": ...}; {} when it has none
    checked_at  REAL NOT NULL
) WITHOUT ROWID;

-- Discover items found by id (library/metadata/matches), for two-way additions to Plex.
CREATE TABLE discover_matches (
    key         TEXT PRIMARY KEY,        -- an identity key, e.g. movie:tmdb:6978
    rating_key  TEXT,                    -- NULL: no Discover item carries it
    checked_at  REAL NOT NULL
) WITHOUT ROWID;
