-- The replicas store for PostgreSQL (schema_versions.store = 'replicas'): the same tables as
-- schema.sql (SQLite), which explains them, in PostgreSQL's dialect.

-- migration: 1

CREATE TABLE replicas (
    id           text             PRIMARY KEY,
    host         text             NOT NULL,
    pid          integer          NOT NULL,
    started_at   double precision NOT NULL,
    heartbeat_at double precision NOT NULL
);

CREATE TABLE account_leases (
    profile         text             NOT NULL,
    provider        text             NOT NULL,
    holder          text,
    expires_at      double precision NOT NULL DEFAULT 0,
    acquired_at     double precision,
    previous_holder text,
    limiter_state   text,
    state_saved_at  double precision,
    PRIMARY KEY (profile, provider)
);
CREATE INDEX account_leases_holder ON account_leases (holder);
