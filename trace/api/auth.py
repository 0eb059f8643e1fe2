"""Turn a request's credentials into an Actor (API: bearer token; web: session cookie)."""

from __future__ import annotations

from flask import g, request, session

from trace.errors import Unauthenticated
from trace.extensions import db
from trace.models import Device, User
from trace.services import auth
from trace.services.actors import Actor


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def current_user() -> User | None:
    if "trace_user" in g:
        cached: User | None = g.trace_user
        return cached
    user: User | None = None
    secret = _bearer()
    if secret is not None and not secret.startswith(auth.DEVICE_TOKEN_PREFIX):
        user = auth.authenticate_token(db(), secret)
    elif "user_id" in session:
        candidate = db().get(User, session["user_id"])
        user = candidate if candidate is not None and candidate.is_active else None
    g.trace_user = user
    return user


def current_actor() -> Actor:
    user = current_user()
    if user is None:
        raise Unauthenticated("Send 'Authorization: Bearer <token>' or sign in.")
    return auth.actor_for(user)


def current_device() -> Device:
    secret = _bearer()
    if secret is None or not secret.startswith(auth.DEVICE_TOKEN_PREFIX):
        raise Unauthenticated("A device token is required: 'Authorization: Bearer dev_…'.")
    return auth.authenticate_device(db(), secret)
