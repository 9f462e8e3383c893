"""The local stack that `make up` starts: real servers, answering on the configured ports."""

import time

import requests
from sqlalchemy import create_engine, text


def test_postgres_is_a_real_server_at_the_configured_url(settings):
    engine = create_engine(settings.database_url)
    with engine.connect() as conn:
        version = conn.execute(text("SHOW server_version_num")).scalar_one()
        revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    engine.dispose()
    assert int(version) >= 150000
    assert revision  # `make up` migrated the system's own database


def test_prometheus_runs_the_project_config_and_scrapes_itself(settings):
    base = f"http://127.0.0.1:{settings.prometheus_port}"
    assert requests.get(f"{base}/-/ready", timeout=5).status_code == 200
    rules = requests.get(f"{base}/api/v1/rules", timeout=5).json()["data"]["groups"]
    assert "stack" in {group["name"] for group in rules}
    deadline = time.monotonic() + 40  # first scrape within one 15 s interval
    while True:
        result = requests.get(
            f"{base}/api/v1/query", params={"query": 'up{service="prometheus"}'}, timeout=5
        ).json()["data"]["result"]
        if result or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert [r["value"][1] for r in result] == ["1"]
