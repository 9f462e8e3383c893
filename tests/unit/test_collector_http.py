"""The Data Collector's refusals over HTTP: each says what is wrong and how to fix it.
None of these requests reaches Kafka, so nothing needs to run."""

import json

import pytest

from tests.helpers import example_settings
from web.ingestion.app import create_app

SETTINGS = example_settings(collector_batch_max_items=5)
KEY = {"X-API-Key": SETTINGS.ingest_api_keys[0], "Content-Type": "application/json"}
TX = {
    "transaction_id": "tx-1",
    "product_id": "p-1",
    "quantity": 1,
    "timestamp": "2026-01-01T00:00:00Z",
}


@pytest.fixture(scope="module")
def client():
    return create_app(SETTINGS).test_client()


def post(client, path, raw: str, headers=KEY):
    return client.post(f"/api/v1/{path}", data=raw, headers=headers)


def assert_error_shape(answer, code: int) -> dict:
    body = answer.get_json()
    assert answer.status_code == code, body
    assert body["code"] == code and body["status"] and body["message"]
    return body


@pytest.mark.parametrize(
    "headers", [{}, {"X-API-Key": "wrong-key-wrong-key"}], ids=["none", "wrong"]
)
def test_writes_need_an_api_key(client, headers):
    body = assert_error_shape(post(client, "transactions", json.dumps(TX), headers), 401)
    assert "X-API-Key" in body["message"]


def test_admin_endpoints_need_an_admin_key(client):
    assert client.get("/api/v1/rejected", headers=KEY).status_code == 401


def test_field_errors_are_listed_per_field(client):
    body = assert_error_shape(post(client, "transactions", json.dumps(TX | {"quantity": 0})), 422)
    assert body["errors"]["json"]["quantity"] == ["must be between 1 and 1000000"]


def test_nul_is_refused_at_the_edge(client):
    text = json.dumps(TX).replace('"tx-1"', r'"tx\u0000-1"')
    body = assert_error_shape(post(client, "transactions", text), 422)
    assert "transaction_id" in body["errors"]["json"]


def test_nul_in_a_product_name_is_refused(client):
    product = {"product_id": "p", "name": "cup\u0000", "category": "c", "price": "1.00"}
    body = assert_error_shape(post(client, "products", json.dumps(product)), 422)
    assert "control characters" in body["errors"]["json"]["name"][0]


@pytest.mark.parametrize("path", ["products", "products/batch"])
def test_a_lone_surrogate_is_refused_as_invalid_json_single_or_batch(client, path):
    item = '{"product_id": "p", "name": "\\ud800", "category": "c", "price": "1"}'
    text = item if path == "products" else f'{{"products": [{item}]}}'
    body = assert_error_shape(post(client, path, text), 422)
    assert "not valid JSON" in body["message"]
    assert "surrogate" in body["errors"]["json"]["_body"][0]


@pytest.mark.parametrize("path", ["transactions", "transactions/batch"])
def test_invalid_json(client, path):
    body = assert_error_shape(post(client, path, "{not json"), 422)
    assert "not valid JSON" in body["message"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("[]", '{"transactions": [...]}'),
        ('{"transactions": {}}', '{"transactions": [...]}'),
        ('{"transactions": [], "x": 1}', '{"transactions": [...]}'),
        ('{"transactions": []}', "at least one item"),
    ],
)
def test_a_batch_must_be_a_batch(client, raw, message):
    assert message in assert_error_shape(post(client, "transactions/batch", raw), 422)["message"]


def test_a_batch_over_the_limit_is_413(client):
    raw = json.dumps({"transactions": [TX] * 6})
    body = assert_error_shape(post(client, "transactions/batch", raw), 413)
    assert "at most 5" in body["message"]


def test_a_body_over_the_size_limit_is_413(client):
    assert_error_shape(post(client, "transactions/batch", "x" * 10_000_000), 413)


def test_unknown_paths_and_methods(client):
    assert_error_shape(client.get("/api/v1/nothing"), 404)
    refused = client.get("/api/v1/transactions", headers=KEY)
    assert_error_shape(refused, 405)
    assert set(refused.headers["Allow"].split(", ")) == {"POST", "OPTIONS"}


def test_health(client):
    assert client.get("/health").get_json() == {"status": "ok"}


def test_docs_work_offline_with_an_authorize_button_and_examples(client):
    page = client.get("/docs").get_data(as_text=True)
    assert "/docs/assets/swagger-ui-bundle.js" in page and "https://" not in page
    assert client.get("/docs/assets/swagger-ui-bundle.js").status_code == 200
    spec = client.get("/openapi.json").get_json()
    schemes = spec["components"]["securitySchemes"]
    assert {s["name"] for s in schemes.values()} == {"X-API-Key"}
    for path in (
        "/api/v1/transactions",
        "/api/v1/transactions/batch",
        "/api/v1/products",
        "/api/v1/products/batch",
    ):
        operation = spec["paths"][path]["post"]
        assert operation["security"], path
        assert operation["requestBody"]["content"]["application/json"]["example"], path


ADMIN = {"X-API-Key": SETTINGS.admin_api_keys[0], "Content-Type": "application/json"}
NESTED = '{"a":' * 5000 + "1" + "}" * 5000
HOSTILE_BODIES = {
    "deeply nested JSON": NESTED,
    "an integer of thousands of digits": json.dumps(TX).replace(
        '"quantity": 1', '"quantity": ' + "9" * 5000
    ),
    "NaN": json.dumps(TX).replace('"quantity": 1', '"quantity": NaN'),
    "Infinity": json.dumps(TX).replace('"quantity": 1', '"quantity": Infinity'),
    "invalid UTF-8": b'{"transaction_id": "\xff\xfe"}',
    "a bare string": '"transaction"',
}


@pytest.mark.parametrize("path", ["transactions", "transactions/batch", "products"])
@pytest.mark.parametrize("case", sorted(HOSTILE_BODIES))
def test_hostile_bodies_get_422_single_or_batch(client, path, case):
    raw = HOSTILE_BODIES[case]
    if path.endswith("batch") and case != "deeply nested JSON" and isinstance(raw, str):
        raw = f'{{"transactions": [{raw}]}}'
    body = assert_error_shape(post(client, path, raw), 422)
    assert body.get("errors") or body["rejected"][0]["errors"]
    # The service goes on serving.
    assert client.get("/health").status_code == 200


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ("9999-12-31T23:59:59-05:00", "timestamp"),
        ("0001-01-01T00:00:00+05:00", "timestamp"),
        ("2026-13-01T00:00:00Z", "timestamp"),
        (10**30, "quantity"),
        (2.5, "quantity"),
        ("1" * 40, "total_amount"),
        ("1e3", "total_amount"),
        ("x\n", "transaction_id"),
        ("A" * 64 + "\n", "product_id"),
    ],
)
def test_hostile_fields_get_422_naming_the_field(client, value, field):
    raw = json.dumps(TX | {field: value})
    body = assert_error_shape(post(client, "transactions", raw), 422)
    assert field in body["errors"]["json"]


def test_one_hostile_item_in_a_batch_is_listed_not_fatal(client):
    items = [TX | {"timestamp": "9999-12-31T23:59:59-05:00"}, TX | {"quantity": 0}]
    body = assert_error_shape(
        post(client, "transactions/batch", json.dumps({"transactions": items})), 422
    )
    assert [r["index"] for r in body["rejected"] if "timestamp" in r["errors"]] == [0]


@pytest.mark.parametrize("ids", [[2**63], [2**70], [0], [-1], ["1"], []])
def test_replay_ids_are_bounded(client, ids):
    body = assert_error_shape(post(client, "rejected/replay", json.dumps({"ids": ids}), ADMIN), 422)
    assert "ids" in body["errors"]["json"]


@pytest.mark.parametrize(
    ("module", "port_setting"),
    [("web.ingestion.app", "COLLECTOR_PORT"), ("web.analytics.app", "ANALYTICS_PORT")],
)
def test_the_development_server_listens_on_http_bind_host(tmp_path, module, port_setting):
    """Bound to 127.0.0.2 (a loopback address of its own), it answers there and not on
    127.0.0.1."""
    import socket
    import subprocess
    import sys

    import requests

    from config import PROJECT_ROOT
    from tests.helpers import service_environment, wait_until

    with socket.socket() as s:
        s.bind(("127.0.0.2", 0))
        port = s.getsockname()[1]
    env_file = tmp_path / "env"
    env_file.write_text((PROJECT_ROOT / ".env.example").read_text())
    environment = {"HTTP_BIND_HOST": "127.0.0.2", port_setting: str(port), "LOG_DIR": str(tmp_path)}
    server = subprocess.Popen(
        [sys.executable, "-m", module],
        env=service_environment(env_file, **environment),
        cwd=PROJECT_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def answers(host: str) -> bool:
        try:
            return requests.get(f"http://{host}:{port}/health", timeout=1).status_code == 200
        except requests.ConnectionError:
            return False

    try:
        wait_until(lambda: answers("127.0.0.2"), timeout=30, what=f"{module} on 127.0.0.2")
        assert not answers("127.0.0.1")
    finally:
        server.terminate()
        server.wait(timeout=10)
