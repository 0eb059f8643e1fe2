"""User accounts: platform admins create any; enterprise admins create their operators."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from trace.api.auth import current_actor
from trace.api.schemas.accounts import UserIn, UserOut
from trace.extensions import db
from trace.services import accounts

blp = Blueprint("users", __name__, description="Users and roles")


@blp.route("/users")
class Users(MethodView):
    @blp.response(200, UserOut(many=True))
    def get(self) -> Any:
        return accounts.list_users(db(), current_actor())

    @blp.arguments(UserIn)
    @blp.response(201, UserOut)
    def post(self, data: dict[str, Any]) -> Any:
        return accounts.create_user(db(), current_actor(), data)


@blp.route("/me")
class Me(MethodView):
    @blp.response(200, UserOut)
    def get(self) -> Any:
        from trace.api.auth import current_user

        current_actor()
        return current_user()
