"""JSON API under /api/v1: one module per resource, each exposing a flask-smorest `blp`."""

from __future__ import annotations

import importlib

from flask_smorest import Api

#: Modules with a `blp` Blueprint. Add a resource by adding its module here.
RESOURCE_MODULES = (
    "trace.api.session",
    "trace.api.enterprises",
    "trace.api.users",
    "trace.api.products",
    "trace.api.sites",
    "trace.api.batches",
    "trace.api.events",
    "trace.api.attachments",
    "trace.api.label_runs",
    "trace.api.scans",
    "trace.api.devices",
    "trace.api.analytics",
    "trace.api.alerts",
    "trace.api.recalls",
)


def register_blueprints(api: Api) -> None:
    for name in RESOURCE_MODULES:
        module = importlib.import_module(name)
        api.register_blueprint(module.blp, url_prefix="/api/v1")
