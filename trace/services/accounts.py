"""Enterprises, users and their tokens."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from trace.errors import Conflict, Forbidden, NotFound, ValidationFailed
from trace.models import ApiToken, Enterprise, User
from trace.models.enums import Role
from trace.regions import lookup as regions
from trace.services import audit, auth
from trace.services.actors import Actor
from trace.services.scope import enterprise_filter, is_storable_id
from trace.validation import is_valid_uscc


def _check_region(code: str, field: str = "region_code") -> None:
    if not regions.is_valid_code(code):
        raise ValidationFailed(
            "Unknown region code.", fields={field: [f"{code} is not a known 6-digit region code."]}
        )


def create_enterprise(session: Session, actor: Actor, data: dict[str, Any]) -> Enterprise:
    actor.require_platform_admin()
    if not is_valid_uscc(data["uscc"]):
        raise ValidationFailed(
            "Invalid unified social credit code.",
            fields={"uscc": ["Wrong shape or check character."]},
        )
    _check_region(data["region_code"])
    if session.scalar(select(Enterprise.id).where(Enterprise.uscc == data["uscc"])):
        raise Conflict("Enterprise already registered.", fields={"uscc": ["Already registered."]})
    enterprise = Enterprise(**data)
    session.add(enterprise)
    try:
        session.flush()
    except IntegrityError as exc:  # a concurrent request registered it a moment ago
        raise Conflict(
            "Enterprise already registered.", fields={"uscc": ["Already registered."]}
        ) from exc
    audit.record(
        session,
        actor,
        "create",
        "enterprise",
        enterprise.id,
        {"uscc": enterprise.uscc, "name": enterprise.name},
        enterprise.id,
    )
    return enterprise


def list_enterprises(session: Session, actor: Actor) -> list[Enterprise]:
    stmt = select(Enterprise).where(enterprise_filter(actor, Enterprise.id)).order_by(Enterprise.id)
    return list(session.scalars(stmt))


def get_enterprise(session: Session, actor: Actor, enterprise_id: int) -> Enterprise:
    if not is_storable_id(enterprise_id):
        raise NotFound(f"Enterprise {enterprise_id} not found.")
    stmt = select(Enterprise).where(
        Enterprise.id == enterprise_id, enterprise_filter(actor, Enterprise.id)
    )
    enterprise = session.scalars(stmt).one_or_none()
    if enterprise is None:
        raise NotFound(f"Enterprise {enterprise_id} not found.")
    return enterprise


def update_enterprise(
    session: Session, actor: Actor, enterprise_id: int, changes: dict[str, Any]
) -> Enterprise:
    enterprise = get_enterprise(session, actor, enterprise_id)
    if "status" in changes and not actor.is_platform_admin:
        raise Forbidden("Only a platform administrator admits or suspends enterprises.")
    if not actor.is_platform_admin and actor.enterprise_id != enterprise.id:
        raise Forbidden("Regulators read enterprises; they do not change them.")
    if actor.is_enterprise:
        actor.require_enterprise_admin()
    if "region_code" in changes:
        _check_region(changes["region_code"])
    for key, value in changes.items():
        setattr(enterprise, key, value)
    session.flush()
    audit.record(
        session,
        actor,
        "update",
        "enterprise",
        enterprise.id,
        {"fields": sorted(changes)},
        enterprise.id,
    )
    return enterprise


def create_user(session: Session, actor: Actor, data: dict[str, Any]) -> User:
    role = Role(data["role"])
    enterprise_id = data.get("enterprise_id")
    region_prefix = data.get("region_prefix")
    if actor.is_platform_admin:
        pass
    elif actor.role is Role.ENTERPRISE_ADMIN and role is Role.ENTERPRISE_OPERATOR:
        actor.require_not_suspended()
        if enterprise_id not in (None, actor.enterprise_id):
            # Refused rather than silently moved, so the admin learns the account is theirs.
            raise Forbidden("You can create accounts only in your own enterprise.")
        enterprise_id = actor.enterprise_id
    else:
        raise Forbidden("You cannot create this kind of account.")
    problems: dict[str, list[str]] = {}
    if role in (Role.ENTERPRISE_ADMIN, Role.ENTERPRISE_OPERATOR):
        if enterprise_id is None or session.get(Enterprise, enterprise_id) is None:
            problems["enterprise_id"] = ["An enterprise account needs an existing enterprise."]
        region_prefix = None
    elif role is Role.REGULATOR:
        if (
            not region_prefix
            or not (region_prefix.isascii() and region_prefix.isdigit())
            or len(region_prefix) not in (2, 4, 6)
        ):
            problems["region_prefix"] = ["2, 4 or 6 digits (province, city or county)."]
        enterprise_id = None
    else:
        enterprise_id, region_prefix = None, None
    if session.scalar(select(User.id).where(User.username == data["username"])):
        problems["username"] = ["Already taken."]
    if problems:
        raise ValidationFailed("Cannot create the account.", fields=problems)
    user = User(
        username=data["username"],
        display_name=data.get("display_name", ""),
        password_hash=auth.hash_password(data["password"]),
        role=role.value,
        enterprise_id=enterprise_id,
        region_prefix=region_prefix,
    )
    session.add(user)
    try:
        session.flush()
    except IntegrityError as exc:  # a concurrent request took the name a moment ago
        raise ValidationFailed(
            "Cannot create the account.", fields={"username": ["Already taken."]}
        ) from exc
    audit.record(
        session,
        actor,
        "create",
        "user",
        user.id,
        {"username": user.username, "role": user.role},
        enterprise_id,
    )
    return user


def list_users(session: Session, actor: Actor) -> list[User]:
    stmt = select(User).order_by(User.id)
    if actor.is_platform_admin:
        pass
    elif actor.is_enterprise:
        stmt = stmt.where(User.enterprise_id == actor.enterprise_id)
    else:
        stmt = stmt.where(User.id == actor.user_id)
    return list(session.scalars(stmt))


def create_token_for(session: Session, actor: Actor, name: str) -> auth.IssuedToken:
    user = session.get(User, actor.user_id)
    if user is None:
        raise NotFound("User not found.")
    issued = auth.issue_token(session, user, name)
    audit.record(
        session, actor, "create", "api_token", issued.token.id, {"name": name}, user.enterprise_id
    )
    return issued


def list_tokens(session: Session, actor: Actor) -> list[ApiToken]:
    stmt = select(ApiToken).where(ApiToken.user_id == actor.user_id).order_by(ApiToken.id)
    return list(session.scalars(stmt))


def revoke_token(session: Session, actor: Actor, token_id: int) -> None:
    token = session.get(ApiToken, token_id) if is_storable_id(token_id) else None
    if token is None or token.user_id != actor.user_id:
        raise NotFound(f"Token {token_id} not found.")
    from trace.db import utcnow

    token.revoked_at = utcnow()
    session.flush()
    audit.record(session, actor, "revoke", "api_token", token.id, {}, None)
