"""Kiosks and printer stations: register (token shown once), list, update, rotate token."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from trace.api.auth import current_actor
from trace.api.schemas.scans import DeviceIn, DeviceOut, DevicePatch, DeviceTokenOut
from trace.extensions import db
from trace.services import devices

blp = Blueprint("devices", __name__, description="Devices: kiosks and printer stations")


def _with_token(issued: devices.IssuedDevice) -> Any:
    device = issued.device
    device.token = issued.token  # type: ignore[attr-defined]  # for the response only
    return device


@blp.route("/devices")
class Devices(MethodView):
    @blp.response(200, DeviceOut(many=True))
    def get(self) -> Any:
        """Devices the caller may see (regulators: those in their jurisdiction)."""
        return devices.list_devices(db(), current_actor())

    @blp.arguments(DeviceIn)
    @blp.response(201, DeviceTokenOut)
    def post(self, data: dict[str, Any]) -> Any:
        """Register a kiosk or printer station (platform or enterprise administrator).

        The response carries the device's token once; only its hash is stored.
        """
        return _with_token(devices.register(db(), current_actor(), data))


@blp.route("/devices/<int:device_id>")
class DeviceItem(MethodView):
    @blp.response(200, DeviceOut)
    def get(self, device_id: int) -> Any:
        return devices.get_device(db(), current_actor(), device_id)

    @blp.arguments(DevicePatch(partial=True))
    @blp.response(200, DeviceOut)
    def patch(self, changes: dict[str, Any], device_id: int) -> Any:
        """Rename, move or (de)activate; a deactivated device's token stops working."""
        return devices.update(db(), current_actor(), device_id, changes)


@blp.route("/devices/<int:device_id>/token")
class DeviceToken(MethodView):
    @blp.response(201, DeviceTokenOut)
    def post(self, device_id: int) -> Any:
        """Issue a new token (shown once); the old one stops working."""
        return _with_token(devices.rotate_token(db(), current_actor(), device_id))
