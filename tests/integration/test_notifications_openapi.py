"""The Notification Service's OpenAPI document says what the API enforces: schemathesis
generates requests from it (valid and invalid ones, a bounded number per operation)
against the real app on a migrated PostgreSQL, and every answer must be no server error
and match the document (status code, content type, body schema). A few rules exist
first, so that the operations on one rule meet real ids as well as missing ones."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.helpers import example_settings
from tests.integration.pipeline import ADMIN_KEY
from web.notifications.app import create_app


@pytest.fixture(scope="module")
def notifications_app(module_database_url):
    app = create_app(example_settings(database_url=module_database_url))
    client = app.test_client()
    for n in range(1, 4):
        answer = client.post(
            "/api/v1/alert-rules",
            json={"name": f"rule {n}", "kind": "low_sales", "threshold": n, "window_minutes": n},
            headers=ADMIN_KEY,
        )
        assert answer.status_code == 201, answer.get_json()
    return app


@pytest.fixture(scope="module")
def notifications_schema(notifications_app):
    return schemathesis.openapi.from_wsgi("/openapi.json", notifications_app)


schema = schemathesis.pytest.from_fixture("notifications_schema")


@schema.parametrize()
@settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_every_generated_request_gets_a_documented_answer(case):
    case.call_and_validate(
        headers=ADMIN_KEY,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )
