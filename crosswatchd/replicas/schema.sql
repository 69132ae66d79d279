-- The replicas store (SQLite: data_dir/replicas.sqlite3): the migrations, in order. Block
-- "-- migration: N" brings a file from version N-1 to N (PRAGMA user_version).
--
-- replicas: every `crosswatchd serve` process sharing this state, with its last heartbeat.
-- account_leases: one row per target account (profile x provider): the replica holding it
-- (holder, NULL when free) until expires_at, and the state of its rate limiter as the last
-- holder left it (limiter_state, JSON: crosswatchd.ratelimit.Limiter.snapshot), so the next
-- holder goes on where it stopped. Times are unix seconds (UTC).

-- migration: 1

CREATE TABLE replicas (
    id           TEXT    PRIMARY KEY,
    host         TEXT    NOT NULL,
    pid          INTEGER NOT NULL,
    started_at   REAL    NOT NULL,
    heartbeat_at REAL    NOT NULL
);

CREATE TABLE account_leases (
    profile         TEXT NOT NULL,
    provider        TEXT NOT NULL,
    holder          TEXT,
    expires_at      REAL NOT NULL DEFAULT 0,
    acquired_at     REAL,
    previous_holder TEXT,
    limiter_state   TEXT,
    state_saved_at  REAL,
    PRIMARY KEY (profile, provider)
);
CREATE INDEX account_leases_holder ON account_leases (holder);
