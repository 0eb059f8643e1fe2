"""Recalls (产品可召回): open on a batch, trace it forward, close with a note."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from trace.api.auth import current_actor
from trace.api.schemas.oversight import (
    RecallCloseIn,
    RecallIn,
    RecallOut,
    RecallQuery,
    RecallReportOut,
)
from trace.extensions import db
from trace.services import recalls

blp = Blueprint("recalls", __name__, description="Recalls (召回)")


@blp.route("/recalls")
class Recalls(MethodView):
    @blp.arguments(RecallQuery, location="query")
    @blp.response(200, RecallOut(many=True))
    def get(self, args: dict[str, Any]) -> Any:
        """Recalls of batches you can see, newest first."""
        return recalls.list_recalls(
            db(), current_actor(), status=args.get("status"), batch_id=args.get("batch_id")
        )

    @blp.arguments(RecallIn)
    @blp.response(201, RecallOut)
    def post(self, data: dict[str, Any]) -> Any:
        """Open a recall: the batch becomes "recalled" at once, for every scan of its codes."""
        return recalls.open_recall(
            db(),
            current_actor(),
            data["batch_id"],
            reason=data["reason"],
            level=data["level"],
            public_notice=data["public_notice"],
        )


@blp.route("/recalls/<int:recall_id>")
class RecallItem(MethodView):
    @blp.response(200, RecallOut)
    def get(self, recall_id: int) -> Any:
        return recalls.get_recall(db(), current_actor(), recall_id)


@blp.route("/recalls/<int:recall_id>/close")
class RecallClose(MethodView):
    @blp.arguments(RecallCloseIn)
    @blp.response(200, RecallOut)
    def post(self, data: dict[str, Any], recall_id: int) -> Any:
        """Close the recall with a note; the batch stays recalled."""
        return recalls.close_recall(db(), current_actor(), recall_id, data["note"])


@blp.route("/recalls/<int:recall_id>/report")
class RecallReport(MethodView):
    @blp.response(200, RecallReportOut)
    def get(self, recall_id: int) -> Any:
        """Trace-forward report: labels issued, where and when the codes were scanned
        (counties, kiosks, first and last), shipping and receiving records."""
        return recalls.trace_forward(db(), current_actor(), recall_id)
