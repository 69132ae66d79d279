-- crosswatchd tokens in PostgreSQL (schema_versions.store = 'tokens'): the migrations, in
-- order; crosswatchd.postgres.migrate applies the missing blocks under an advisory lock. In
-- SQLite mode tokens are files in data_dir/tokens/ instead (crosswatchd/tokens/files.py).

-- migration: 1

-- One row per target account: the provider's token answer as JSON text (with obtained_at),
-- the same object a token file holds. A token the service refused for good is kept with
-- revoked_at set (as a file becomes *.json.revoked) and read as "not authorized".
CREATE TABLE tokens (
    profile     text             NOT NULL,
    provider    text             NOT NULL,
    token       text             NOT NULL,
    revoked_at  double precision,
    updated_at  double precision NOT NULL,
    PRIMARY KEY (profile, provider)
);

-- Every change tells the replicas which account's token to read again (their in-memory
-- copies, crosswatchd/tokens/shared.py); the notification is sent when the change commits.
CREATE FUNCTION crosswatchd_tokens_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('crosswatchd_tokens', json_build_array(NEW.profile, NEW.provider)::text);
    RETURN NULL;
END $$;
CREATE TRIGGER tokens_changed AFTER INSERT OR UPDATE ON tokens
    FOR EACH ROW EXECUTE FUNCTION crosswatchd_tokens_changed();
