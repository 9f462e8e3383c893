"""The Notification Service's endpoints: alert rules (writes need an admin key), a test
message through a rule's channels, and the history of the alerts raised."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import current_app, request
from flask.views import MethodView
from flask_smorest import abort
from psycopg2.extras import Json
from sqlalchemy import Connection, text

from db import alert_events
from db.alert_events import Check, alert_event
from web.common import (
    ADMIN_KEY_SCHEME,
    ANALYTICS_KEY_SCHEME,
    ApiBlueprint,
    check_api_key,
    require_api_key,
)
from web.notifications import schemas

rules_blp = ApiBlueprint(
    "alert_rules",
    __name__,
    url_prefix="/api/v1/alert-rules",
    description="Alert rules: what to watch, in which scope, and where to say it. Reading"
    " needs an analytics key when ANALYTICS_API_KEYS is set; writing, an admin key.",
)
alerts_blp = ApiBlueprint(
    "alerts",
    __name__,
    url_prefix="/api/v1/alerts",
    description="Every alert the rules raised, with its deliveries.",
)
require_api_key(alerts_blp, "ANALYTICS_API_KEYS", optional=True)
READ = [{ANALYTICS_KEY_SCHEME: []}]
WRITE = [{ADMIN_KEY_SCHEME: []}]
COLUMNS = (
    "name",
    "kind",
    "product_id",
    "category",
    "threshold",
    "drop_percent",
    "compare_to",
    "window_minutes",
    "cooldown_minutes",
    "active_hours",
    "enabled",
    "channels",
)
MAX_ID = 2**63 - 1


@rules_blp.before_request
def _keys():
    """Reads need an analytics key when any is set; writes an admin key, always."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        check_api_key("ANALYTICS_API_KEYS", optional=True)
    else:
        check_api_key("ADMIN_API_KEYS")


def _engine():
    return current_app.extensions["db_engine"]()


def _row(rule: dict) -> dict:
    """The columns of a rule as validated by RuleIn."""
    scope = rule.get("scope") or {}
    row = {k: rule.get(k) for k in COLUMNS if k not in ("product_id", "category")}
    row |= {"product_id": scope.get("product_id"), "category": scope.get("category")}
    return row


def _as_input(stored) -> dict:
    """A stored rule in RuleIn's shape (secrets included), for a PATCH to merge into."""
    data = {k: stored[k] for k in COLUMNS if k not in ("product_id", "category")}
    data["scope"] = {k: stored[k] for k in ("product_id", "category") if stored[k] is not None}
    return data


def _out(rule) -> dict:
    data = _as_input(rule) | {
        "id": rule["id"],
        "created_at": rule["created_at"],
        "updated_at": rule["updated_at"],
        "status": {
            "state": rule["state"] or "ok",
            "since": rule["since"],
            "evaluated_at": rule["evaluated_at"],
        },
    }
    data["channels"] = [
        {k: v for k, v in c.items() if k != "secret"} | {"has_secret": "secret" in c}
        for c in rule["channels"]
    ]
    return data


SELECT = (
    "SELECT r.*, s.state, s.since, s.evaluated_at FROM alert_rules r"
    " LEFT JOIN alert_states s ON s.rule_id = r.id"
)


def _load(conn: Connection, rule_id: int):
    if not 1 <= rule_id <= MAX_ID:
        abort(404, message=f"No alert rule {rule_id}; GET /api/v1/alert-rules lists them.")
    found = conn.execute(text(f"{SELECT} WHERE r.id = :id"), {"id": rule_id}).mappings().first()
    if found is None:
        abort(404, message=f"No alert rule {rule_id}; GET /api/v1/alert-rules lists them.")
    return found


def _save(conn: Connection, rule_id: int | None, data: dict) -> int:
    row = _row(data)
    row["channels"] = Json(row["channels"])
    if rule_id is None:
        names = ", ".join(COLUMNS)
        values = ", ".join(f":{c}" for c in COLUMNS)
        query = f"INSERT INTO alert_rules ({names}) VALUES ({values}) RETURNING id"
        return conn.execute(text(query), row).scalar_one()
    sets = ", ".join(f"{c} = :{c}" for c in COLUMNS)
    conn.execute(
        text(f"UPDATE alert_rules SET {sets}, updated_at = now() WHERE id = :id"),
        row | {"id": rule_id},
    )
    return rule_id


def _validated(data: dict) -> dict:
    """The whole rule checked again (a PATCH merged into the stored one)."""
    from marshmallow import ValidationError

    try:
        return schemas.RuleIn().load(_dumpable(data))
    except ValidationError as error:
        abort(422, message=_summary(error.messages), errors={"json": error.messages})


def _dumpable(data: dict) -> dict:
    """Decimals as strings, so that RuleIn reads them back exactly."""
    return {k: (str(v) if hasattr(v, "as_tuple") else v) for k, v in data.items()}


def _summary(messages: dict, prefix: str = "") -> str:
    parts = []
    for name, problem in messages.items():
        if isinstance(problem, dict):
            parts.append(_summary(problem, f"{prefix}{name}."))
        else:
            parts.append(f"{prefix}{name}: {' '.join(map(str, problem))}")
    return "; ".join(parts)


@rules_blp.route("")
class RulesView(MethodView):
    @rules_blp.doc(security=READ)
    @rules_blp.response(200, schemas.RuleList)
    def get(self):
        """Every alert rule, with where it stands"""
        with _engine().connect() as conn:
            rules = conn.execute(text(f"{SELECT} ORDER BY r.id")).mappings().all()
        return {"items": [_out(r) for r in rules]}

    @rules_blp.doc(security=WRITE)
    @rules_blp.arguments(schemas.RuleIn)
    @rules_blp.response(201, schemas.RuleOut)
    def post(self, rule):
        """Create an alert rule; it is evaluated from the next minute on"""
        with _engine().begin() as conn:
            return _out(_load(conn, _save(conn, None, rule)))


@rules_blp.route("/<int:rule_id>")
class RuleView(MethodView):
    @rules_blp.doc(security=READ)
    @rules_blp.response(200, schemas.RuleOut)
    def get(self, rule_id: int):
        """One alert rule"""
        with _engine().connect() as conn:
            return _out(_load(conn, rule_id))

    @rules_blp.doc(security=WRITE)
    @rules_blp.arguments(schemas.RuleIn)
    @rules_blp.response(200, schemas.RuleOut)
    def put(self, rule, rule_id: int):
        """Replace an alert rule; the next evaluation uses it"""
        with _engine().begin() as conn:
            _load(conn, rule_id)
            return _out(_load(conn, _save(conn, rule_id, rule)))

    @rules_blp.doc(security=WRITE)
    @rules_blp.arguments(schemas.RuleChanges(partial=True))
    @rules_blp.response(200, schemas.RuleOut)
    def patch(self, changes, rule_id: int):
        """Change some fields of an alert rule (channels are replaced whole)"""
        with _engine().begin() as conn:
            merged = _as_input(_load(conn, rule_id)) | changes
            return _out(_load(conn, _save(conn, rule_id, _validated(merged))))

    @rules_blp.doc(security=WRITE)
    @rules_blp.response(204)
    def delete(self, rule_id: int):
        """Delete an alert rule (its alerts stay in the history)"""
        with _engine().begin() as conn:
            _load(conn, rule_id)
            conn.execute(text("DELETE FROM alert_rules WHERE id = :id"), {"id": rule_id})


@rules_blp.route("/<int:rule_id>/test")
class TestView(MethodView):
    @rules_blp.doc(security=WRITE)
    @rules_blp.response(202, schemas.TestResult)
    def post(self, rule_id: int):
        """Send a test message through the rule's channels (delivered within seconds)"""
        now = datetime.now(UTC)
        with _engine().begin() as conn:
            rule = _load(conn, rule_id)
            found = Check(False, None, (now, now), {"test": True})
            event = alert_event(rule, found, "test", now, reminder=False)
            event["event_id"] += f":{now:%S%f}"  # each test is its own event
            alert_events.record(conn, [event], current_app.config["NOTIFICATIONS_TOPIC"])
        return {"event_id": event["event_id"], "channels": len(rule["channels"])}


def _deliveries(conn: Connection, event_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    rows = conn.execute(
        text(
            "SELECT event_id, channel, status, attempts, last_error, sent_at"
            " FROM notification_log WHERE event_id = ANY(:ids) ORDER BY id"
        ),
        {"ids": event_ids},
    ).mappings()
    found: dict[str, list[dict[str, Any]]] = {e: [] for e in event_ids}
    for row in rows:
        found[row["event_id"]].append(dict(row))
    return found


@alerts_blp.route("")
class AlertsView(MethodView):
    @alerts_blp.doc(security=READ)
    @alerts_blp.arguments(schemas.AlertQuery, location="query")
    @alerts_blp.response(200, schemas.AlertList)
    def get(self, query):
        """The alerts raised, newest first, with their deliveries"""
        where = ["TRUE"]
        query["rule"] = query.get("rule", query.get("rule_id"))
        for name, clause in (
            ("rule", "rule_id = :rule"),
            ("state", "state = :state"),
            ("from_", "occurred_at >= :from_"),
            ("to", "occurred_at < :to"),
            ("before", "id < :before"),
        ):
            if query.get(name) is not None:
                where.append(clause)
        limit = query["limit"]
        with _engine().connect() as conn:
            rows = (
                conn.execute(
                    text(
                        f"SELECT * FROM alert_events WHERE {' AND '.join(where)}"
                        " ORDER BY id DESC LIMIT :limit"
                    ),
                    query | {"limit": limit + 1},
                )
                .mappings()
                .all()
            )
            page = [dict(r) for r in rows[:limit]]
            deliveries = _deliveries(conn, [r["event_id"] for r in page])
        for row in page:
            row["deliveries"] = deliveries[row["event_id"]]
        return {"items": page, "next": page[-1]["id"] if len(rows) > limit else None}


@alerts_blp.route("/<int:alert_id>")
class AlertView(MethodView):
    @alerts_blp.doc(security=READ)
    @alerts_blp.response(200, schemas.AlertOut)
    def get(self, alert_id: int):
        """One alert, with the outcome of each of its deliveries"""
        with _engine().connect() as conn:
            row = None
            if 1 <= alert_id <= MAX_ID:
                row = (
                    conn.execute(
                        text("SELECT * FROM alert_events WHERE id = :id"), {"id": alert_id}
                    )
                    .mappings()
                    .first()
                )
            if row is None:
                abort(404, message=f"No alert {alert_id}; GET /api/v1/alerts lists them.")
            row = dict(row)
            row["deliveries"] = _deliveries(conn, [row["event_id"]])[row["event_id"]]
        return row
