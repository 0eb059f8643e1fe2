"""Placeholder: filled in by its issue."""

from flask_smorest import Blueprint

blp = Blueprint("recalls", __name__, description="recalls")
