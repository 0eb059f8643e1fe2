"""Placeholder: filled in by its issue."""

from flask import Blueprint

bp = Blueprint("kiosk", __name__)
