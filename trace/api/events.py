"""Trace events of a batch. After labelling, history is corrected, never edited."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from trace.api.auth import current_actor
from trace.api.schemas.records import EventIn, EventOut, EventPatch
from trace.extensions import db
from trace.services import events

blp = Blueprint("events", __name__, description="Trace events (农事操作、检测、认证、流通)")


def _with_corrections(items: list[Any]) -> list[Any]:
    corrected = events.corrected_ids(items)
    for item in items:
        item.corrected_by_id = corrected.get(item.id)
    return items


@blp.route("/batches/<int:batch_id>/events")
class BatchEvents(MethodView):
    @blp.response(200, EventOut(many=True))
    def get(self, batch_id: int) -> Any:
        """The whole history, corrected records included and marked (corrected_by_id)."""
        return _with_corrections(events.list_events(db(), current_actor(), batch_id))

    @blp.arguments(EventIn)
    @blp.response(201, EventOut)
    def post(self, data: dict[str, Any], batch_id: int) -> Any:
        """Record an event; with corrects_id and correction_reason it corrects an earlier one."""
        event: Any = events.record_event(db(), current_actor(), batch_id, data)
        event.corrected_by_id = None  # a new event has not been corrected yet
        return event


@blp.route("/events/<int:event_id>")
class EventItem(MethodView):
    @blp.response(200, EventOut)
    def get(self, event_id: int) -> Any:
        event = events.get_event(db(), current_actor(), event_id)
        return _with_corrections(events.events_of(db(), event.batch_id)) and event

    @blp.arguments(EventPatch(partial=True))
    @blp.response(200, EventOut)
    def patch(self, changes: dict[str, Any], event_id: int) -> Any:
        """Edit an event; refused with 409 once labels exist for the batch."""
        event = events.update_event(db(), current_actor(), event_id, changes)
        return _with_corrections(events.events_of(db(), event.batch_id)) and event

    @blp.response(204)
    def delete(self, event_id: int) -> None:
        events.delete_event(db(), current_actor(), event_id)
