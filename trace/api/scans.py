"""Resolving codes: the public resolve API, device scans (kiosks, printer stations), and the
request glue the phone page and the kiosk page share.

Every resolve writes one scan event in the request's transaction and commits it here: the
request owns the transaction (DESIGN.md §2), and a failed write must not cost the answer,
so the commit is caught, rolled back, counted and logged (``scanlog.note_failure``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, cast

from flask import Response, current_app, request
from flask.views import MethodView
from flask_smorest import Blueprint

from trace.api.auth import current_device
from trace.api.schemas.scans import DeviceScanIn, DeviceScanOut, ResolveOut
from trace.crypto.keyring import Keyring
from trace.extensions import config, db, limiter
from trace.models.enums import DeviceKind, ScanChannel
from trace.services import resolve as resolver
from trace.services import scanlog
from trace.services.keys import load_keyring

blp = Blueprint("scans", __name__, description="Scans: resolve codes (扫码查询)")

#: TRACE_RESOLVE_RATE_LIMIT values that switch the limit off (benchmarks, trusted networks).
LIMIT_OFF = frozenset({"", "0", "off", "none", "unlimited"})


# -- glue shared with trace.web.consumer and trace.web.kiosk ---------------------------------


def keyring() -> Keyring:
    return load_keyring(config())


def rules() -> scanlog.Rules:
    cfg = config()
    return scanlog.Rules(
        max_scans=cfg.suspicious_scan_count, max_speed_kmh=cfg.suspicious_speed_kmh
    )


def resolve_cache() -> resolver.ContentCache:
    """One content cache per app: content of one database never answers for another."""
    cache = current_app.extensions.get("trace.resolve_cache")
    if cache is None:
        cache = current_app.extensions.setdefault("trace.resolve_cache", resolver.ContentCache())
    return cast(resolver.ContentCache, cache)


def client_context(channel: str, **extra: Any) -> scanlog.ScanContext:
    """User-agent class and keyed IP hash of the current request (never the raw IP)."""
    return scanlog.ScanContext(
        channel=channel,
        ua_class=scanlog.ua_class(request.headers.get("User-Agent")),
        ip_hash=scanlog.ip_hash(keyring(), request.remote_addr),
        **extra,
    )


@dataclass(frozen=True)
class Logged:
    resolution: resolver.Resolution
    #: None when writing the scan log failed (counted and logged).
    record: scanlog.ScanRecord | None


def resolve_and_log(text: str, ctx: scanlog.ScanContext) -> Logged:
    """Resolve, write the scan, commit. The answer survives a failed write."""
    session = db()
    now = datetime.now(UTC)
    res = resolver.resolve(session, keyring(), text, ctx, rules(), resolve_cache(), now)
    record: scanlog.ScanRecord | None = None
    try:
        record = scanlog.record(session, res.facts, ctx, now)
        session.commit()
    except Exception as exc:  # any failure of the log: the shopper still gets the answer
        session.rollback()
        scanlog.note_failure(exc, ctx.channel)
        record = None
    return Logged(res, record)


def _resolve_limit() -> str:
    value = config().resolve_rate_limit.strip()
    return "" if value.lower() in LIMIT_OFF else value


def _json(data: dict[str, Any]) -> Response:
    response = cast(Response, current_app.json.response(data))
    # Every call is a scan: never answer from a cache.
    response.headers["Cache-Control"] = "no-store"
    return response


# -- routes ---------------------------------------------------------------------------------


@blp.route("/resolve/<path:code>")
class Resolve(MethodView):
    # Per client address; the store is Redis when TRACE_REDIS_URL is set, so the limit holds
    # across gunicorn workers. TRACE_RESOLVE_RATE_LIMIT=off disables it.
    decorators: ClassVar[list[Any]] = [limiter.limit(_resolve_limit)]

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
        logged = resolve_and_log(code, client_context(ScanChannel.API.value))
        return _json(resolver.public_dict(logged.resolution))


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
        body = resolver.public_dict(logged.resolution)
        body.update(
            scan_id=logged.record.id if logged.record else None,
            channel=channel,
            region_code=device.region_code,
        )
        return _json(body)


@blp.route("/scans/log-health")
class ScanLogHealth(MethodView):
    @blp.doc(security=[])
    def get(self) -> Response:
        """Scan-log writes that failed in this worker process since it started."""
        return _json({"scan_log_failures": scanlog.failure_count()})
