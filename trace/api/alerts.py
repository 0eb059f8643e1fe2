"""Alerts (问题发现): listed for the regulator of the region, acknowledged or closed with a
note. Listing first looks for new problems, so the list is current."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from trace.api.auth import current_actor
from trace.api.schemas.oversight import AcknowledgeIn, AlertOut, AlertQuery, CloseIn, RefreshOut
from trace.errors import Forbidden
from trace.extensions import db
from trace.models import Alert
from trace.services import alerts, analytics, rollups
from trace.services.analytics import region_full_name

blp = Blueprint("alerts", __name__, description="Alerts for regulators (预警)")


def alert_dict(alert: Alert) -> dict[str, Any]:
    out = {c.key: getattr(alert, c.key) for c in Alert.__table__.columns}
    out["region_name"] = region_full_name(alert.region_code)
    return out


def refresh_all() -> str:
    """Rollups first (scan-based alerts read them), then detection."""
    analytics.plan_per_query(db())
    result = rollups.refresh_for_request(db())
    alerts.refresh_if_due(db())
    return result.status


@blp.route("/alerts")
class Alerts(MethodView):
    @blp.arguments(AlertQuery, location="query")
    @blp.response(200, AlertOut(many=True))
    def get(self, args: dict[str, Any]) -> Any:
        """Alerts you can see, newest first; default: open and acknowledged ones."""
        actor = current_actor()
        refresh_all()
        found = alerts.list_alerts(
            db(),
            actor,
            status=args.get("status"),
            kind=args.get("kind"),
            region=args.get("region"),
            limit=args["limit"],
        )
        return [alert_dict(a) for a in found]


@blp.route("/alerts/refresh")
class AlertRefresh(MethodView):
    @blp.response(200, RefreshOut)
    def post(self) -> Any:
        """Look for new problems now (the dashboard and the list do so at most once a minute)."""
        actor = current_actor()
        if not (actor.is_regulator or actor.is_platform_admin):
            raise Forbidden("Only regulators and platform administrators refresh alerts.")
        status = rollups.refresh_for_request(db()).status
        return {"new_alerts": alerts.refresh(db()), "rollup": status}


@blp.route("/alerts/<int:alert_id>")
class AlertItem(MethodView):
    @blp.response(200, AlertOut)
    def get(self, alert_id: int) -> Any:
        return alert_dict(alerts.get_alert(db(), current_actor(), alert_id))


@blp.route("/alerts/<int:alert_id>/acknowledge")
class AlertAcknowledge(MethodView):
    @blp.arguments(AcknowledgeIn)
    @blp.response(200, AlertOut)
    def post(self, data: dict[str, Any], alert_id: int) -> Any:
        """Acknowledge an open alert (you, now, and an optional note are kept)."""
        alert = alerts.acknowledge(db(), current_actor(), alert_id, data.get("note"))
        return alert_dict(alert)


@blp.route("/alerts/<int:alert_id>/close")
class AlertClose(MethodView):
    @blp.arguments(CloseIn)
    @blp.response(200, AlertOut)
    def post(self, data: dict[str, Any], alert_id: int) -> Any:
        """Close an alert with a note saying what was done."""
        return alert_dict(alerts.close(db(), current_actor(), alert_id, data["note"]))
