"""Kiosks (溯源一体机) and printer stations: registration and their tokens.

A device authenticates with its own token (``dev_...``, see services.auth), shown once at
registration or rotation and stored only as a hash. Who may register:

* a platform administrator: any device, for any enterprise or none (a county's e-commerce
  service station kiosk belongs to no enterprise);
* an enterprise administrator: devices of their own enterprise (a shop's kiosk, the
  packing shed's printer station).

Regulators can list the devices in their jurisdiction (by the device's region).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from trace.errors import Forbidden, NotFound, ValidationFailed
from trace.models import Device, Enterprise
from trace.models.enums import DeviceKind
from trace.regions import lookup as regions
from trace.services import audit, auth
from trace.services.actors import Actor
from trace.services.scope import is_storable_id


@dataclass(frozen=True)
class IssuedDevice:
    device: Device
    token: str  # shown once, never stored


def _owner(session: Session, actor: Actor, enterprise_id: int | None) -> int | None:
    if actor.is_platform_admin:
        if enterprise_id is not None and session.get(Enterprise, enterprise_id) is None:
            raise ValidationFailed(
                "Unknown enterprise.", fields={"enterprise_id": ["No such enterprise."]}
            )
        return enterprise_id
    own = actor.require_enterprise_admin()
    if enterprise_id not in (None, own):
        raise Forbidden("An enterprise administrator registers devices of their own enterprise.")
    return own


def _check(kind: str | None, region_code: str | None) -> None:
    problems: dict[str, list[str]] = {}
    if kind is not None and kind not in {k.value for k in DeviceKind}:
        problems["kind"] = [f"One of {', '.join(k.value for k in DeviceKind)}."]
    if region_code is not None and not regions.is_valid_code(region_code):
        problems["region_code"] = [f"{region_code} is not a known 6-digit region code."]
    if problems:
        raise ValidationFailed("Invalid device.", fields=problems)


def register(session: Session, actor: Actor, data: dict[str, Any]) -> IssuedDevice:
    """Register a device and issue its token (returned once)."""
    if not (actor.is_platform_admin or actor.is_enterprise):
        raise Forbidden("Only administrators register devices.")
    owner = _owner(session, actor, data.get("enterprise_id"))
    _check(data["kind"], data["region_code"])
    device = Device(
        kind=data["kind"],
        name=data["name"],
        region_code=data["region_code"],
        enterprise_id=owner,
        token_hash="pending",
        is_active=True,
    )
    session.add(device)
    session.flush()
    token = auth.issue_device_token(session, device)
    audit.record(
        session,
        actor,
        "create",
        "device",
        device.id,
        {"kind": device.kind, "name": device.name, "region_code": device.region_code},
        owner,
    )
    return IssuedDevice(device, token)


def _visible(actor: Actor) -> Any:
    if actor.is_platform_admin:
        return None
    if actor.is_regulator:
        return Device.region_code.startswith(actor.region_prefix or "")
    if actor.is_enterprise:
        return Device.enterprise_id == actor.enterprise_id
    raise Forbidden("Not allowed to list devices.")


def list_devices(session: Session, actor: Actor) -> list[Device]:
    stmt = select(Device).order_by(Device.id)
    where = _visible(actor)
    if where is not None:
        stmt = stmt.where(where)
    return list(session.scalars(stmt))


def get_device(session: Session, actor: Actor, device_id: int) -> Device:
    if not is_storable_id(device_id):  # from a URL: binding it would overflow the driver
        raise NotFound(f"Device {device_id} not found.")
    stmt = select(Device).where(Device.id == device_id)
    where = _visible(actor)
    if where is not None:
        stmt = stmt.where(where)
    device = session.scalars(stmt).one_or_none()
    if device is None:
        raise NotFound(f"Device {device_id} not found.")
    return device


def _manageable(session: Session, actor: Actor, device_id: int) -> Device:
    device = session.get(Device, device_id) if is_storable_id(device_id) else None
    if device is not None and (
        actor.is_platform_admin
        or (
            actor.role.value == "enterprise_admin"
            and actor.enterprise_id is not None
            and device.enterprise_id == actor.enterprise_id
        )
    ):
        return device
    raise NotFound(f"Device {device_id} not found.")


def update(session: Session, actor: Actor, device_id: int, changes: dict[str, Any]) -> Device:
    """Rename, move (region) or (de)activate a device. A deactivated device's token stops
    working at once (services.auth.authenticate_device checks is_active)."""
    device = _manageable(session, actor, device_id)
    if changes != {"is_active": False}:
        actor.require_not_suspended()  # switching a device off stays possible
    _check(None, changes.get("region_code"))
    for key in ("name", "region_code", "is_active"):
        if key in changes:
            setattr(device, key, changes[key])
    session.flush()
    audit.record(
        session,
        actor,
        "update",
        "device",
        device.id,
        {k: changes[k] for k in sorted(changes)},
        device.enterprise_id,
    )
    return device


def rotate_token(session: Session, actor: Actor, device_id: int) -> IssuedDevice:
    """A new token for a device; the old one stops working."""
    device = _manageable(session, actor, device_id)
    token = auth.issue_device_token(session, device)
    audit.record(session, actor, "rotate_token", "device", device.id, {}, device.enterprise_id)
    return IssuedDevice(device, token)
