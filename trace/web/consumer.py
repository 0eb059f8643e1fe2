"""Placeholder: filled in by its issue."""

from flask import Blueprint

bp = Blueprint("consumer", __name__)
