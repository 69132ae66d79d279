-- The id cache (data_dir/cache.sqlite3): its migrations, applied by crosswatchd.sqlite.migrate
-- ("-- migration: N" brings a file from version N-1 to N). Times are unix seconds (REAL).

-- migration: 1

CREATE TABLE id_cache (
    key        TEXT PRIMARY KEY,
    found      INTEGER NOT NULL CHECK (found IN (0, 1)),
    value      TEXT NOT NULL,
    step       TEXT NOT NULL,
    stored_at  REAL NOT NULL,
    expires_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX id_cache_expires ON id_cache (expires_at);
