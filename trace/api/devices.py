"""Placeholder: filled in by its issue."""

from flask_smorest import Blueprint

blp = Blueprint("devices", __name__, description="devices")
