"""Admin endpoint of the Analytics API: run the rollup job now."""

from __future__ import annotations

from flask import current_app
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields
from sqlalchemy.orm import Session

from db.reports.rollups import rollup
from web.common import ADMIN_KEY_SCHEME, require_api_key

blp = Blueprint(
    "admin",
    __name__,
    url_prefix="/api/v1/admin",
    description="Maintenance of the report tables. Needs an admin X-API-Key.",
)
require_api_key(blp, "ADMIN_API_KEYS")


class RollupResult(Schema):
    rows = fields.Integer(metadata={"description": "Transactions added to the rollups."})
    horizon = fields.Integer(metadata={"description": "The rollups' new horizon."})
    skipped = fields.Boolean(metadata={"description": "Another run was in progress."})


@blp.route("/rollups/refresh")
class RefreshView(MethodView):
    @blp.doc(security=[{ADMIN_KEY_SCHEME: []}])
    @blp.response(200, RollupResult)
    def post(self):
        """Roll up every transaction stored so far, now (the job beat runs every minute)"""
        with Session(current_app.extensions["db_engine"]()) as session, session.begin():
            return rollup(session, current_app.config["REPORT_TIMEZONE"])
