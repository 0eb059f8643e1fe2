"""Sign in for API clients: exchange a password for a bearer token; manage own tokens."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from trace.api.auth import current_actor
from trace.api.schemas.accounts import IssuedTokenOut, LoginIn, TokenIn, TokenOut
from trace.extensions import db
from trace.services import accounts, auth

blp = Blueprint("session", __name__, description="Authentication and API tokens")


def _issued(issued: auth.IssuedToken) -> dict[str, Any]:
    t = issued.token
    return {
        "id": t.id,
        "name": t.name,
        "prefix": t.prefix,
        "created_at": t.created_at,
        "revoked_at": None,
        "token": issued.secret,
    }


@blp.route("/auth/token")
class Login(MethodView):
    @blp.arguments(LoginIn)
    @blp.response(201, IssuedTokenOut)
    def post(self, data: dict[str, Any]) -> dict[str, Any]:
        """Sign in with username and password; returns a new API token (shown once)."""
        user = auth.authenticate_password(db(), data["username"], data["password"])
        return _issued(auth.issue_token(db(), user, data["token_name"]))


@blp.route("/tokens")
class Tokens(MethodView):
    @blp.response(200, TokenOut(many=True))
    def get(self) -> Any:
        """Your API tokens (hashes only; the secret is never shown again)."""
        return accounts.list_tokens(db(), current_actor())

    @blp.arguments(TokenIn)
    @blp.response(201, IssuedTokenOut)
    def post(self, data: dict[str, Any]) -> dict[str, Any]:
        return _issued(accounts.create_token_for(db(), current_actor(), data["name"]))


@blp.route("/tokens/<int:token_id>")
class TokenItem(MethodView):
    @blp.response(204)
    def delete(self, token_id: int) -> None:
        """Revoke one of your tokens."""
        accounts.revoke_token(db(), current_actor(), token_id)
