"""Passwords, API tokens and device tokens. Secrets are hashed at rest and shown once."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from trace.errors import Unauthenticated, ValidationFailed
from trace.models import ApiToken, Device, User
from trace.models.enums import EnterpriseStatus, Role
from trace.services.actors import Actor
from trace.validation import is_storable_text

TOKEN_PREFIX = "trc_"
DEVICE_TOKEN_PREFIX = "dev_"
MIN_PASSWORD_LENGTH = 8


def token_digest(token: str) -> str:
    # Tokens are 256-bit random, so a fast unsalted hash is enough (no dictionary to attack).
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationFailed(
            "Password too short.",
            fields={"password": [f"At least {MIN_PASSWORD_LENGTH} characters."]},
        )
    return generate_password_hash(password)


def actor_for(user: User) -> Actor:
    return Actor(
        user_id=user.id,
        role=Role(user.role),
        enterprise_id=user.enterprise_id,
        region_prefix=user.region_prefix,
        enterprise_suspended=(
            user.enterprise is not None
            and user.enterprise.status == EnterpriseStatus.SUSPENDED.value
        ),
    )


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    secret: str  # shown to the user once, never stored


def issue_token(
    session: Session, user: User, name: str = "", secret: str | None = None
) -> IssuedToken:
    value = secret or TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(user_id=user.id, name=name, token_hash=token_digest(value), prefix=value[:10])
    session.add(token)
    session.flush()
    return IssuedToken(token, value)


def authenticate_token(session: Session, secret: str) -> User:
    stmt = (
        select(User)
        .join(ApiToken, ApiToken.user_id == User.id)
        .where(ApiToken.token_hash == token_digest(secret), ApiToken.revoked_at.is_(None))
    )
    user = session.scalars(stmt).one_or_none()
    if user is None or not user.is_active:
        raise Unauthenticated("Invalid or revoked API token.")
    return user


def authenticate_password(session: Session, username: str, password: str) -> User:
    # A username no row can hold is unknown, not a query error (the sign-in form is unchecked).
    user = (
        session.scalars(select(User).where(User.username == username)).one_or_none()
        if is_storable_text(username)
        else None
    )
    # Hash even when the user is unknown so timing does not reveal which usernames exist.
    stored = user.password_hash if user else generate_password_hash("timing-equaliser")
    if not check_password_hash(stored, password) or user is None or not user.is_active:
        raise Unauthenticated("Wrong username or password.")
    return user


def issue_device_token(session: Session, device: Device, secret: str | None = None) -> str:
    value = secret or DEVICE_TOKEN_PREFIX + secrets.token_urlsafe(32)
    device.token_hash = token_digest(value)
    session.flush()
    return value


def authenticate_device(session: Session, secret: str) -> Device:
    stmt = select(Device).where(Device.token_hash == token_digest(secret))
    device = session.scalars(stmt).one_or_none()
    if device is None or not device.is_active:
        raise Unauthenticated("Invalid or inactive device token.")
    return device
