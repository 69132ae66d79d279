-- crosswatchd/instance/__init__.py's statements, by name.

-- name: create
-- The first process to ask stores its value; the others' inserts do nothing (an insert
-- racing with an uncommitted one waits for it), and every process then reads the one stored.
INSERT INTO instance_values (name, value, created_at) VALUES (:name, :value, :now::float8)
ON CONFLICT (name) DO NOTHING

-- name: get
SELECT value FROM instance_values WHERE name = :name
