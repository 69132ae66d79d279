-- The id cache in PostgreSQL (schema_versions.store = 'cache'), shared by every replica: the
-- same table as cache_schema.sql (SQLite). Times are unix seconds.

-- migration: 1

CREATE TABLE id_cache (
    key        text             PRIMARY KEY,
    found      integer          NOT NULL CHECK (found IN (0, 1)),
    value      text             NOT NULL,
    step       text             NOT NULL,
    stored_at  double precision NOT NULL,
    expires_at double precision NOT NULL
);
CREATE INDEX id_cache_expires ON id_cache (expires_at);
