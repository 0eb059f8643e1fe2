"""Resolving codes: the public resolve API, device scans (kiosks, printer stations), and the
request glue the phone page and the kiosk page share.

Every resolve logs one scan event. On PostgreSQL (TRACE_SCAN_LOG_BUFFER=auto/on) the scan
goes to this worker's write-behind buffer (services.scanbuffer) and the request does not
write at all; otherwise it is written in the request's transaction and committed here: the
request owns the transaction (DESIGN.md §2), and a failed write must not cost the answer, so
the commit is caught, rolled back, counted and logged (``scanlog.note_failure``).

The JSON answer splices the per-scan part (verdict, count, recall, ...) into the batch's
public content serialised once per content version (kept with the content in the
resolve cache): encoding the whole timeline per request cost more than the query.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from flask import Response, current_app, request
from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy import Engine

from trace.api.auth import current_device
from trace.api.ratelimit import ClientRateLimit
from trace.api.schemas.scans import DeviceScanIn, DeviceScanOut, ResolveOut
from trace.crypto.keyring import Keyring
from trace.extensions import config, db, engine, per_app
from trace.models.enums import DeviceKind, ScanChannel
from trace.services import resolve as resolver
from trace.services import scanlog
from trace.services.codestates import CodeStateCache
from trace.services.keys import load_keyring
from trace.services.scanbuffer import ScanBuffer

blp = Blueprint("scans", __name__, description="Scans: resolve codes (扫码查询)")


# -- glue shared with trace.web.consumer and trace.web.kiosk ---------------------------------


def keyring() -> Keyring:
    return load_keyring(config())


def rules() -> scanlog.Rules:
    """The suspicion rules of this app's configuration (made once per app)."""

    def make() -> scanlog.Rules:
        cfg = config()
        return scanlog.Rules(
            max_scans=cfg.suspicious_scan_count, max_speed_kmh=cfg.suspicious_speed_kmh
        )

    return per_app("trace.scan_rules", make)


def resolve_cache() -> resolver.ContentCache:
    """One content cache per app: content of one database never answers for another."""
    return per_app("trace.resolve_cache", resolver.ContentCache)


def scan_buffer() -> ScanBuffer | None:
    """This app's write-behind scan buffer in this process, or None (synchronous writes)."""
    made = current_app.extensions.get("trace.scan_buffer")
    if made is not None:  # every scan asks twice: the quick answer first
        return cast(ScanBuffer, made)
    cfg = config()
    if not cfg.scan_log_buffered or engine().dialect.name != "postgresql":
        return None
    # On the verdict engine's pool: connections handed back without a reset; a flush
    # begins and commits its own transaction (trace.pq).
    return per_app(
        "trace.scan_buffer",
        lambda: ScanBuffer(
            verdict_engine(),
            interval=cfg.scan_log_flush_ms / 1000.0,
            cap=cfg.scan_log_buffer_cap,
            state_cache=CodeStateCache if cfg.code_states_cached else None,
        ),
    )


def verdict_engine() -> Engine:
    """The pool the verdict query reads on (PostgreSQL: autocommit connections, see
    create_app); the app's engine elsewhere."""
    return cast(Engine, current_app.extensions.get("trace.verdict_engine") or engine())


def flush_scan_log() -> None:
    """Write this worker's queued scans now (before reading one back, e.g. to locate it)."""
    buffer = scan_buffer()
    if buffer is not None:
        buffer.flush()


def scan_context(
    channel: str, user_agent: str | None, remote_addr: str | None, **extra: Any
) -> scanlog.ScanContext:
    """User-agent class and keyed IP hash of a client (never the raw IP)."""
    return scanlog.ScanContext(
        channel=channel,
        ua_class=scanlog.ua_class(user_agent),
        ip_hash=scanlog.ip_hash(keyring(), remote_addr),
        **extra,
    )


def client_context(channel: str, **extra: Any) -> scanlog.ScanContext:
    """scan_context of the current request."""
    return scan_context(channel, request.headers.get("User-Agent"), request.remote_addr, **extra)


@dataclass(frozen=True)
class Logged:
    resolution: resolver.Resolution
    #: None when writing the scan log failed (counted and logged).
    record: scanlog.ScanRecord | None


def resolve_code(
    text: str,
    ctx: scanlog.ScanContext,
    now: datetime | None = None,
    buffer: ScanBuffer | None = None,
) -> resolver.Resolution:
    """The verdict on a scanned text, nothing logged. On PostgreSQL the resolver reads on
    the verdict engine and, with the write-behind buffer, counts this worker's queued
    scans; the request session is opened only if needed (content not cached yet, distance
    rule, SQLite)."""
    return resolver.resolve(
        db,
        keyring(),
        text,
        ctx,
        rules(),
        resolve_cache(),
        now,
        buffer if buffer is not None else scan_buffer(),
        verdict_engine(),
    )


def resolve_and_log(text: str, ctx: scanlog.ScanContext) -> Logged:
    """Resolve and log the scan (queued, or written and committed). The answer survives a
    failed write."""
    now = datetime.now(UTC)
    buffer = scan_buffer()
    res = resolve_code(text, ctx, now, buffer)
    if buffer is not None:
        return Logged(res, buffer.add(res.facts, ctx, now))  # counts its own failures
    session = db()
    record: scanlog.ScanRecord | None = None
    try:
        record = scanlog.record(session, res.facts, ctx, now)
        session.commit()
    except Exception as exc:  # any failure of the log: the shopper still gets the answer
        session.rollback()
        scanlog.note_failure(exc, ctx.channel)
        record = None
    return Logged(res, record)


#: PublicContent.rendered key of the content's JSON (the web layer uses language codes).
JSON_KEY = "json"


def _dumps(data: dict[str, Any], plain: bool = False) -> str:
    """As Flask's provider answers (sorted keys, compact, UTF-8 as is), minus its overhead.
    ``plain``: only JSON's own types inside (the per-scan head), so no fallback encoder."""
    default = None if plain else current_app.json.default  # type: ignore[attr-defined]
    return json.dumps(
        data, ensure_ascii=False, separators=(",", ":"), sort_keys=True, default=default
    )


#: Headers of every scan answer besides its type and length. Every call is a scan: never
#: answered from a cache.
SCAN_HEADERS: tuple[tuple[str, str], ...] = (("Cache-Control", "no-store"),)
JSON_TYPE = "application/json"


def resolution_body(res: resolver.Resolution, **extra: Any) -> str:
    """The resolve answer's JSON: the per-scan head spliced into the cached content JSON."""
    head = resolver.public_head(res)
    head.update(extra)
    body = _dumps(head, plain=True)
    content = res.content
    if content is not None and content.data:
        cached = content.rendered.get(JSON_KEY)
        if cached is None:
            cached = content.rendered[JSON_KEY] = _dumps(content.data)
        body = body[:-1] + "," + cached[1:]
    return body + "\n"


def scan_json(body: str) -> Response:
    """A scan's JSON answer as a Flask response (the fast path writes the same headers)."""
    return Response(body, mimetype=JSON_TYPE, headers=SCAN_HEADERS)


def resolution_json(res: resolver.Resolution, **extra: Any) -> Response:
    """The resolve answer as a response."""
    return scan_json(resolution_body(res, **extra))


def resolve_limit() -> ClientRateLimit:
    """The resolve API's per-client limit, one per app (its store is per app too)."""
    return per_app("trace.resolve_limit", _make_resolve_limit)


def _make_resolve_limit() -> ClientRateLimit:
    cfg = config()
    return ClientRateLimit("resolve", cfg.resolve_rate_limit, cfg.redis_url or "memory://")


def resolve_api(code: str, user_agent: str | None, remote_addr: str | None) -> str:
    """The public resolve API's JSON for one client: rate limit, resolve, log. The route
    below and the scan fast path (trace.web.fastpath) both answer with it."""
    # Per client address; Redis when TRACE_REDIS_URL is set, so the limit holds across
    # gunicorn workers. TRACE_RESOLVE_RATE_LIMIT=off disables it.
    resolve_limit().check(remote_addr)
    logged = resolve_and_log(code, scan_context(ScanChannel.API.value, user_agent, remote_addr))
    return resolution_body(logged.resolution)


def _json(data: dict[str, Any]) -> Response:
    response = cast(Response, current_app.json.response(data))
    response.headers.update(SCAN_HEADERS)  # every call is a scan
    return response


# -- routes ---------------------------------------------------------------------------------


@blp.route("/resolve/<path:code>")
class Resolve(MethodView):
    @blp.doc(
        security=[],
        responses={
            "200": {
                "description": "The verdict and the public information behind the code.",
                "content": {"application/json": {"schema": ResolveOut}},
            },
            "429": {"description": "Too many requests from this client."},
        },
    )
    def get(self, code: str) -> Response:
        """Resolve a code (public). Records one scan (channel `api`).

        `code` is the code text or the label's whole QR URL. A code that is not ours is
        answered with exactly `{"verdict": "counterfeit"}`, whatever was wrong with it.
        """
        return scan_json(resolve_api(code, request.headers.get("User-Agent"), request.remote_addr))


@blp.route("/scans")
class DeviceScans(MethodView):
    @blp.arguments(DeviceScanIn)
    @blp.doc(
        responses={
            "200": {
                "description": "The verdict, as the resolve API gives it, plus the scan.",
                "content": {"application/json": {"schema": DeviceScanOut}},
            }
        }
    )
    def post(self, data: dict[str, Any]) -> Response:
        """A scan by a kiosk or a printer station (device token: `Bearer dev_…`).

        The device's region is recorded as the scan's county. Printer stations' checks are
        logged as `printer_check` and do not count as the code's scans.
        """
        device = current_device()
        channel = (
            ScanChannel.KIOSK.value
            if device.kind == DeviceKind.KIOSK.value
            else ScanChannel.PRINTER_CHECK.value
        )
        ctx = client_context(
            channel,
            device_id=device.id,
            region_code=device.region_code,
            latitude=data.get("latitude"),
            longitude=data.get("longitude"),
        )
        logged = resolve_and_log(data["code"], ctx)
        return resolution_json(
            logged.resolution,
            scan_id=logged.record.id if logged.record else None,
            channel=channel,
            region_code=device.region_code,
        )


@blp.route("/scans/log-health")
class ScanLogHealth(MethodView):
    @blp.doc(security=[])
    def get(self) -> Response:
        """Scans the log lost in this worker process since it started (failed writes, or
        dropped because the write-behind queue was full), and scans queued right now."""
        buffer = scan_buffer()
        return _json(
            {
                "scan_log_failures": scanlog.failure_count(),
                "scan_log_queued": len(buffer) if buffer is not None else 0,
            }
        )
