"""Placeholder: filled in by its issue."""

from flask_smorest import Blueprint

blp = Blueprint("alerts", __name__, description="alerts")
