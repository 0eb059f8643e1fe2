"""Enterprises (producers): platform admins register them; others read their own or region's."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from trace.api.auth import current_actor
from trace.api.schemas.accounts import EnterpriseIn, EnterpriseOut, EnterprisePatch
from trace.extensions import db
from trace.services import accounts

blp = Blueprint("enterprises", __name__, description="Enterprises and co-operatives")


@blp.route("/enterprises")
class Enterprises(MethodView):
    @blp.response(200, EnterpriseOut(many=True))
    def get(self) -> Any:
        return accounts.list_enterprises(db(), current_actor())

    @blp.arguments(EnterpriseIn)
    @blp.response(201, EnterpriseOut)
    def post(self, data: dict[str, Any]) -> Any:
        return accounts.create_enterprise(db(), current_actor(), data)


@blp.route("/enterprises/<int:enterprise_id>")
class EnterpriseItem(MethodView):
    @blp.response(200, EnterpriseOut)
    def get(self, enterprise_id: int) -> Any:
        return accounts.get_enterprise(db(), current_actor(), enterprise_id)

    @blp.arguments(EnterprisePatch(partial=True))
    @blp.response(200, EnterpriseOut)
    def patch(self, changes: dict[str, Any], enterprise_id: int) -> Any:
        return accounts.update_enterprise(db(), current_actor(), enterprise_id, changes)
