"""examples/compose.replicas.yaml (README: "Running several replicas") parses, and says what
the README says: PostgreSQL, three replicas on one database URL with one webhook secret (tokens
are in the database: no shared token directory), a proxy in front of all three, checking
/readyz. Parsed with PyYAML (a test dependency only)."""

from __future__ import annotations

from pathlib import Path

COMPOSE = Path(__file__).resolve().parents[1] / "examples" / "compose.replicas.yaml"


def test_the_replicas_compose_example_is_consistent() -> None:
    import yaml

    doc = yaml.safe_load(COMPOSE.read_text())
    services = doc["services"]
    replicas = sorted(name for name in services if name.startswith("replica-"))
    assert replicas == ["replica-1", "replica-2", "replica-3"]
    envs = [services[name]["environment"] for name in replicas]
    assert all(env == envs[0] for env in envs)  # one database, one secret, one app
    assert envs[0]["CROSSWATCHD_DATABASE_URL"].startswith("postgresql://")
    assert "@postgres:5432/" in envs[0]["CROSSWATCHD_DATABASE_URL"]
    assert envs[0]["CROSSWATCHD_WEBHOOK__SECRET"]
    assert services["postgres"]["image"].startswith("postgres:")
    data = [[v.split(":")[0] for v in services[name]["volumes"]] for name in replicas]
    assert all(len(v) == 1 for v in data)  # its own data dir, nothing shared on disk
    assert len({v[0] for v in data}) == 3
    caddyfile = doc["configs"]["caddyfile"]["content"]
    assert all(f"{name}:8765" in caddyfile for name in replicas)
    assert "health_uri /readyz" in caddyfile
