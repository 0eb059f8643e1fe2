"""Placeholder: filled in by its issue."""

from flask_smorest import Blueprint

blp = Blueprint("scans", __name__, description="scans")
