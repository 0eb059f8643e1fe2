"""Server-rendered pages: one module per page family, each exposing a Flask `bp`."""

from __future__ import annotations

import importlib

from flask import Flask

WEB_MODULES = (
    "trace.web.home",
    "trace.web.consumer",
    "trace.web.kiosk",
    "trace.web.dashboard",
)


def register_web(app: Flask) -> None:
    from trace.web import i18n

    i18n.init_app(app)
    for name in WEB_MODULES:
        module = importlib.import_module(name)
        app.register_blueprint(module.bp)
