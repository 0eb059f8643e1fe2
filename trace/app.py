"""create_app(config): the only place Flask is wired up."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

from apispec.ext.marshmallow import MarshmallowPlugin
from apispec.ext.marshmallow.common import resolve_schema_cls
from flask import Flask, Request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from flask_smorest import Api
from marshmallow import fields
from werkzeug.middleware.proxy_fix import ProxyFix

from trace import extensions
from trace.api import problems
from trace.config import Config
from trace.db import make_engine, make_session_factory

API_PREFIX = "/api/v1"


def _secret_key(config: Config) -> str:
    """The cookie-signing key: from TRACE_SECRET_KEY, else a file in instance/ (never the repo)."""
    if config.secret_key:
        return config.secret_key
    path = config.instance_dir / "secret_key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def _schema_name(schema: object) -> str:
    """Component names: partial (PATCH) variants get their own name instead of a warning."""
    resolved = resolve_schema_cls(schema)  # type: ignore[arg-type]
    # apispec may hand back a list for a nested many-schema; its element names the component.
    cls = resolved[0] if isinstance(resolved, list) else resolved
    name = cls.__name__.removesuffix("Schema")
    if getattr(schema, "partial", False):
        name += "Partial"
    return name


def _portable_schema(_converter: object, field: fields.Field, ret: dict[str, object]) -> dict:
    """Make apispec's output valid OpenAPI 3.0 where our Python validators do not map 1:1.

    * Decimal ranges: apispec writes bounds as the field serialises them, a string for our
      as-string decimals, and `"minimum": "0.00"` is not valid.
    * Patterns: ECMA-262 has no `\\Z`; ours end with it (Python's `$` also matches before a
      final newline). Without the multiline flag ECMA's `$` means what `\\Z` means here.
    """
    fixed: dict[str, object] = {}
    if isinstance(field, fields.Decimal):
        fixed |= {k: float(v) for k in ("minimum", "maximum") if isinstance(v := ret.get(k), str)}
    pattern = ret.get("pattern")
    if isinstance(pattern, str) and pattern.endswith("\\Z"):
        fixed["pattern"] = pattern[:-2] + "$"
    return fixed


class LazyCookieSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, without building a signer for requests that carry no
    session cookie -- every scan of a shopper or kiosk. A session written during such a
    request is still signed and set as usual (save_session)."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if self.get_cookie_name(app) not in request.cookies:
            return self.session_class()
        return super().open_session(app, request)


def create_app(config: Config | None = None) -> Flask:
    config = config or Config.from_env()
    app = Flask(
        __name__,
        template_folder=str(Path(__file__).parent / "web" / "templates"),
        static_folder=str(Path(__file__).parent / "web" / "static"),
    )
    config.instance_dir.mkdir(parents=True, exist_ok=True)
    app.session_interface = LazyCookieSessions()
    from trace.web.fastpath import ScanFastPath

    # Scans skip Flask's request pipeline (trace/web/fastpath.py); under ProxyFix, so they
    # see the client's address as Flask's routes do.
    app.wsgi_app = ScanFastPath(app, app.wsgi_app)  # type: ignore[method-assign]
    if config.proxy_hops:
        # Behind N proxies the client is the Nth address from the right of X-Forwarded-For;
        # anything further left was written by the client and is not trusted.
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=config.proxy_hops, x_proto=config.proxy_hops
        )
    app.config.update(
        SECRET_KEY=_secret_key(config),
        TESTING=config.testing,
        MAX_CONTENT_LENGTH=None,  # uploads are streamed and limited by services.media
        JSON_SORT_KEYS=False,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        API_TITLE="trace — agricultural product traceability API",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX=API_PREFIX,
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/",
        API_SPEC_OPTIONS={
            "components": {
                "securitySchemes": {
                    "bearer": {"type": "http", "scheme": "bearer"},
                }
            },
            "security": [{"bearer": []}],
        },
    )
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    engine = make_engine(config.database_url)
    app.extensions["trace.config"] = config
    app.extensions["trace.engine"] = engine
    app.extensions["trace.sessions"] = make_session_factory(engine)
    if engine.dialect.name == "postgresql":
        # The scan verdict's own pool (services.resolve.read_facts): connections opened in
        # autocommit and handed back without a reset, so a scan's read is one round trip
        # with no BEGIN, no autocommit switching and no ROLLBACK on return.
        app.extensions["trace.verdict_engine"] = make_engine(
            config.database_url, isolation_level="AUTOCOMMIT", pool_reset_on_return=None
        )
    extensions.init_session_handling(app)

    plugin = MarshmallowPlugin(schema_name_resolver=_schema_name)
    api = Api(app, spec_kwargs={"marshmallow_plugin": plugin})
    plugin.converter.add_attribute_function(_portable_schema)  # type: ignore[union-attr]
    from trace.api import register_blueprints

    register_blueprints(api)
    from trace.web import register_web

    register_web(app)
    problems.register(app)
    # Problems must win over flask-smorest's own JSON error handler.
    from werkzeug.exceptions import HTTPException

    app.register_error_handler(HTTPException, problems.handle_http_exception)

    from trace.cli import register_cli

    register_cli(app)
    logging.getLogger("trace").setLevel(logging.INFO)
    return app


def close_app(app: Flask) -> None:
    """Release what an app holds in this process: stop its scan buffer's thread (writing
    what is queued) before closing the pool. Disposing the engine alone leaves that thread
    free to write into a database its owner is about to drop or migrate."""
    buffer = app.extensions.pop("trace.scan_buffer", None)
    try:
        if buffer is not None:
            buffer.close()
    finally:
        verdict_engine = app.extensions.get("trace.verdict_engine")
        if verdict_engine is not None:
            verdict_engine.dispose()
        app.extensions["trace.engine"].dispose()
