"""What both APIs share: the OpenAPI set-up with offline Swagger UI, the error shape,
API-key checks, JSON through orjson, health endpoints and Prometheus metrics."""

from __future__ import annotations

import contextlib
import hmac
import os
from collections.abc import Callable
from decimal import Decimal
from http import HTTPStatus

import flask_smorest
import orjson
from flask import Blueprint, Flask, current_app, jsonify, request
from flask.json.provider import JSONProvider
from flask_smorest import Api, abort
from prometheus_client import CollectorRegistry
from swagger_ui_bundle import swagger_ui_path
from webargs import core
from webargs.flaskparser import FlaskParser, is_json_request
from werkzeug.exceptions import HTTPException

import health

API_KEY_SCHEME = "ApiKeyAuth"
ADMIN_KEY_SCHEME = "AdminKeyAuth"
ANALYTICS_KEY_SCHEME = "AnalyticsKeyAuth"


class OrjsonProvider(JSONProvider):
    """Fast JSON; Decimal goes out as a number rounded the way it is stored."""

    def dumps(self, obj, **kwargs) -> str:
        # Non-string keys: marshmallow keys a list item's errors by its index.
        return orjson.dumps(obj, default=_default, option=orjson.OPT_NON_STR_KEYS).decode()

    def loads(self, s, **kwargs):
        return orjson.loads(s)


def _default(value):
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def parse_json_body(data: bytes):
    """Every JSON body of both APIs is read here, single items and batches alike: orjson
    refuses what cannot be represented (nesting deeper than 1024, numbers beyond a double,
    NaN, invalid UTF-8) with a message, and each refusal is a 422 naming the body."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        problem = f"The body is not valid JSON ({exc}); send one JSON object."
        abort(422, message=problem, errors={"json": {"_body": [problem]}})


class JsonBodyParser(FlaskParser):
    """webargs with the APIs' one JSON reader (webargs' own, the standard library's,
    fails with a server error on deep nesting and integers of thousands of digits)."""

    def _raw_load_json(self, req):
        data = req.get_data(cache=True)
        if not is_json_request(req) or not data:
            return core.missing
        return parse_json_body(data)


class ApiBlueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = JsonBodyParser()


def create_api(
    app: Flask, *, title: str, description: str, security_schemes: tuple[str, ...] = ()
) -> Api:
    """flask-smorest with OpenAPI at /openapi.json and Swagger UI at /docs, no CDN."""
    app.json = OrjsonProvider(app)
    app.config.update(
        API_TITLE=title,
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL="/docs/assets/",
        OPENAPI_SWAGGER_UI_CONFIG={"persistAuthorization": True, "tryItOutEnabled": True},
        API_SPEC_OPTIONS={
            "info": {"description": description},
            "components": {
                "securitySchemes": {
                    scheme: {"type": "apiKey", "in": "header", "name": "X-API-Key"}
                    for scheme in security_schemes
                }
            },
        },
    )
    # Swagger UI's files come from the swagger-ui-bundle package: /docs works offline.
    app.register_blueprint(
        Blueprint(
            "swagger_assets",
            __name__,
            static_folder=swagger_ui_path,
            static_url_path="/docs/assets",
        )
    )
    api = Api(app)

    for code in DEFAULT_MESSAGES:
        app.register_error_handler(code, client_error)
    return api


# What to tell a client whose request was refused without a more precise message.
DEFAULT_MESSAGES = {
    400: "The body is not valid JSON; send a JSON object with Content-Type: application/json.",
    404: "No such endpoint; the API is described at /docs.",
    405: "This endpoint does not take that method; see /docs.",
    413: "The request body is too large; send fewer items per request.",
    422: "The request has invalid fields; each is listed in errors with what to fix.",
}


def error_shape(code: int, message: str) -> dict:
    """The error shape of both APIs, before any `errors`."""
    return {"code": code, "status": HTTPStatus(code).phrase, "message": message}


def client_error(error: HTTPException):
    """One error shape for both APIs: code, status, message, and errors when there are any."""
    data = getattr(error, "data", None) or {}
    body = error_shape(error.code, data.get("message") or DEFAULT_MESSAGES[error.code])
    errors = data.get("messages") or data.get("errors")
    if errors:
        body["errors"] = errors
    # The error's own headers (Allow on a 405) and those given to abort().
    headers = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
    return jsonify(body), error.code, headers | (data.get("headers") or {})


def require_api_key(blueprint: Blueprint, config_key: str, *, optional: bool = False) -> None:
    """Every request to the blueprint needs one of the keys in app.config[config_key] in
    X-API-Key (with `optional`, only when any key is configured). Called once where the
    blueprint is defined; each app sets its own keys."""
    blueprint.before_request(lambda: check_api_key(config_key, optional=optional))


def check_api_key(config_key: str, *, optional: bool = False) -> None:
    """Aborts with 401 unless X-API-Key holds one of app.config[config_key]."""
    if optional and not current_app.config[config_key]:
        return
    given = request.headers.get("X-API-Key", "").encode()
    # Compare with every key, so that timing does not tell which one came close.
    matches = [hmac.compare_digest(given, key.encode()) for key in current_app.config[config_key]]
    if not any(matches):
        abort(401, message="Missing or invalid X-API-Key header; send one of the API keys.")


def register_database(app: Flask, url: str, service: str) -> None:
    """`app.extensions["db_engine"]()`: the engine, connected on first use."""
    from functools import lru_cache

    from db.session import make_engine

    app.extensions["db_engine"] = lru_cache(maxsize=1)(
        lambda: make_engine(url, application_name=service)
    )


def register_health(app: Flask, ready: Callable[[], tuple[bool, dict]]) -> None:
    @app.get("/health")
    def health():
        return {"status": "ok"}

    @app.get("/ready")
    def readiness():
        ok, checks = ready()
        return {"status": "ready" if ok else "not ready", "checks": checks}, 200 if ok else 503


def database_ready(app: Flask) -> Callable[[], tuple[bool, dict]]:
    """A readiness check for register_health: ready while the app's database answers."""

    def ready():
        answer = health.database(app.extensions["db_engine"]())
        return answer == "ok", {"database": answer}

    return ready


def _gunicorn_metrics_class():
    from prometheus_client import generate_latest
    from prometheus_flask_exporter.multiprocess import GunicornInternalPrometheusMetrics

    # CPU and memory of gunicorn's master and all its workers (each worker's parent).
    processes = CollectorRegistry()
    processes.register(health.ServiceProcesses(os.getppid))

    class GunicornMetrics(GunicornInternalPrometheusMetrics):
        """The workers' metrics added up, and the whole service's process_* figures, which
        multiprocess mode drops (it builds a registry of its own for every scrape)."""

        def generate_metrics(self, accept_header=None, names=None):
            # The text format: OpenMetrics would end before the appended families.
            content, content_type = super().generate_metrics(None, names)
            return content + generate_latest(processes).decode(), content_type

    return GunicornMetrics


def register_metrics(app: Flask, service: str):
    """/metrics; under gunicorn (PROMETHEUS_MULTIPROC_DIR set) the counts of all workers add up."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        metrics = _gunicorn_metrics_class()(app, group_by="endpoint")
    else:
        from prometheus_flask_exporter import PrometheusMetrics

        metrics = PrometheusMetrics(app, group_by="endpoint")
    # A second app in one process (the tests make several) shares the first one's metrics.
    with contextlib.suppress(ValueError):
        metrics.info("app_info", "Service identity", service=service)
    return metrics
