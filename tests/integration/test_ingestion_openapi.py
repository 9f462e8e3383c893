"""The Data Collector's OpenAPI document says what the API enforces: schemathesis generates
requests from it (valid and invalid ones, a bounded number per operation) against the real
app on the real Kafka and PostgreSQL, and every answer must be no server error and match
the document (status code, content type, body schema).

The document declares every bound JSON Schema can state (patterns, lengths, digits, years,
non-empty batches); what it cannot (a sale time at most 5 minutes ahead, a batch naming
what to replay) is in the descriptions, so a schema-valid request may still get a 422."""

from __future__ import annotations

import uuid

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from streams.topics import admin_client
from tests.helpers import example_settings
from tests.integration.pipeline import ADMIN_KEY, INGEST_KEY
from web.ingestion.app import create_app


@pytest.fixture(scope="module")
def ingestion_app(settings, module_database_url):
    topic = f"test-openapi-{uuid.uuid4().hex[:10]}"
    admin = admin_client(settings)
    admin.create_topics({topic: {"num_partitions": 1}}, wait_for_metadata=True)
    admin.close()
    app = create_app(
        example_settings(
            database_url=module_database_url,
            kafka_bootstrap_servers=settings.kafka_bootstrap_servers,
            kafka_topic_transactions=topic,
        )
    )
    yield app
    app.extensions["publisher"].close()
    admin = admin_client(settings)
    admin.delete_topics([topic])
    admin.close()


@pytest.fixture(scope="module")
def ingestion_schema(ingestion_app):
    return schemathesis.openapi.from_wsgi("/openapi.json", ingestion_app)


schema = schemathesis.pytest.from_fixture("ingestion_schema")


@schema.parametrize()
@settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_generated_request_gets_a_documented_answer(case):
    key = ADMIN_KEY if case.path.startswith("/api/v1/rejected") else INGEST_KEY
    case.call_and_validate(
        headers=key,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )
