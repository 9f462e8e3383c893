"""notification_log on the real PostgreSQL: a row refused for its content is told apart
from a database that is away (which is waited for), and whatever bytes arrive on the
topic can be recorded, as an event or as a malformed message."""

from __future__ import annotations

import json
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kafka.consumer.fetcher import ConsumerRecord
from sqlalchemy import text

from consumers.notifier import (
    Ledger,
    Malformed,
    Stopping,
    Unstorable,
    malformed_key,
    parse_event,
    raw_text,
    storable,
)
from db.session import make_engine
from tests.fake_telegram import TOKEN
from tests.helpers import free_port
from tests.unit.test_notifier_messages import JSON, MUTATED


@pytest.fixture(scope="module")
def ledger(module_database_url):
    engine = make_engine(module_database_url)
    yield Ledger(engine, threading.Event(), (TOKEN,))
    engine.dispose()


def rows(ledger: Ledger, key: str) -> list:
    with ledger.engine.connect() as conn:
        query = text(
            "SELECT status, last_error, payload FROM notification_log WHERE dedup_key = :k"
        )
        return conn.execute(query, {"k": key}).all()


@pytest.mark.parametrize(
    ("key", "payload", "refusal"),
    [
        ("nul-in-payload", {"note": "a\u0000b"}, "UntranslatableCharacter"),
        ("nul-in-key-\u0000", {}, "ValueError"),
        ("k" * 201, {}, "StringDataRightTruncation"),
        ("surrogate-\ud800", {}, "UnicodeEncodeError"),
    ],
)
def test_a_row_refused_for_its_content_is_unstorable(ledger, key, payload, refusal):
    with pytest.raises(Unstorable) as refused:
        ledger.record(key, "low_sales", "warning", payload)
    assert str(refused.value).startswith(refusal)
    # Its safe form is taken.
    safe_key = storable(key, 200)
    assert ledger.record(
        safe_key, "malformed", "warning", {"raw": raw_text(repr(payload).encode())}
    )
    assert rows(ledger, safe_key)[0][0] == "pending"


def test_a_database_away_is_waited_for_not_skipped():
    engine = make_engine(f"postgresql+psycopg2://sales:sales@127.0.0.1:{free_port()}/sales")
    stopping = threading.Event()
    ledger = Ledger(engine, stopping, ())
    started = time.monotonic()  # before the timer, so that 2.5 s is a lower bound
    threading.Timer(2.5, stopping.set).start()
    with pytest.raises(Stopping):  # not Unstorable: the event is read again later
        ledger.record("k", "low_sales", "warning", {})
    assert time.monotonic() - started >= 2.5  # it kept trying until told to stop
    engine.dispose()


@settings(max_examples=150, deadline=None)
@given(
    st.one_of(st.binary(max_size=300), MUTATED, JSON.map(lambda v: json.dumps(v).encode())),
    st.integers(min_value=0, max_value=2**40),
)
def test_whatever_arrives_can_be_recorded(ledger, value, offset):
    try:
        event = parse_event(value)
    except Malformed as error:
        key = malformed_key(
            ConsumerRecord("t", 0, None, offset, 0, 0, None, value, [], None, 0, 0, -1)
        )
        payload = {"raw": raw_text(value), "bytes": len(value)}
        ledger.record(
            key, "malformed", "warning", payload, status="failed", error=storable(str(error))
        )
    else:
        key = event["event_id"]
        ledger.record(key, event["type"], event["severity"], event)
    assert rows(ledger, key)
