"""Batches and their history."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from trace.api.auth import current_actor
from trace.api.schemas.records import BatchDetailOut, BatchIn, BatchOut, BatchPatch, BatchQuery
from trace.extensions import db
from trace.services import events, records

blp = Blueprint("batches", __name__, description="Batches (批次)")


def _detail(batch: Any) -> Any:
    batch.phi_findings = events.phi_findings(events.events_of(db(), batch.id), batch.harvest_date)
    return batch


@blp.route("/batches")
class Batches(MethodView):
    @blp.arguments(BatchQuery, location="query")
    @blp.response(200, BatchOut(many=True))
    def get(self, query: dict[str, Any]) -> Any:
        return records.list_batches(db(), current_actor(), **query)

    @blp.arguments(BatchIn)
    @blp.response(201, BatchDetailOut)
    def post(self, data: dict[str, Any]) -> Any:
        return _detail(records.create_batch(db(), current_actor(), data))


@blp.route("/batches/<int:batch_id>")
class BatchItem(MethodView):
    @blp.response(200, BatchDetailOut)
    def get(self, batch_id: int) -> Any:
        return _detail(records.get_batch(db(), current_actor(), batch_id))

    @blp.arguments(BatchPatch(partial=True))
    @blp.response(200, BatchDetailOut)
    def patch(self, changes: dict[str, Any], batch_id: int) -> Any:
        return _detail(records.update_batch(db(), current_actor(), batch_id, changes))
