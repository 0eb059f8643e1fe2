"""Placeholder: filled in by its issue."""

from flask_smorest import Blueprint

blp = Blueprint("analytics", __name__, description="analytics")
