-- Values generated once per installation (schema_versions.store = 'instance'), shared by
-- every replica: the webhook secret, the Plex client identifier. In SQLite mode each is a
-- 0600 file in data_dir (webhook_secret, plex_client_id).

-- migration: 1

CREATE TABLE instance_values (
    name        text             PRIMARY KEY,
    value       text             NOT NULL,
    created_at  double precision NOT NULL
);
