"""Placeholder: filled in by its issue."""

from flask_smorest import Blueprint

blp = Blueprint("label_runs", __name__, description="label_runs")
