"""Origin sites (产地/基地) of an enterprise."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from trace.api.auth import current_actor
from trace.api.schemas.records import SiteIn, SiteOut
from trace.extensions import db
from trace.services import records

blp = Blueprint("sites", __name__, description="Origin sites")


@blp.route("/sites")
class Sites(MethodView):
    @blp.response(200, SiteOut(many=True))
    def get(self) -> Any:
        return records.list_sites(db(), current_actor())

    @blp.arguments(SiteIn)
    @blp.response(201, SiteOut)
    def post(self, data: dict[str, Any]) -> Any:
        return records.create_site(db(), current_actor(), data)


@blp.route("/sites/<int:site_id>")
class SiteItem(MethodView):
    @blp.response(200, SiteOut)
    def get(self, site_id: int) -> Any:
        return records.get_site(db(), current_actor(), site_id)

    @blp.arguments(SiteIn(partial=True))
    @blp.response(200, SiteOut)
    def patch(self, changes: dict[str, Any], site_id: int) -> Any:
        return records.update_site(db(), current_actor(), site_id, changes)
