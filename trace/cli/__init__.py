"""Flask CLI command groups (`flask --app trace <group> <command>`); each calls services."""

from __future__ import annotations

import importlib

from flask import Flask

CLI_MODULES = (
    "trace.cli.db",
    "trace.cli.demo",
    "trace.cli.keys",
    "trace.cli.labels",
    "trace.cli.demo_scans",
    "trace.cli.analytics",
    "trace.cli.audit",
    "trace.cli.media",
)


def register_cli(app: Flask) -> None:
    for name in CLI_MODULES:
        module = importlib.import_module(name)
        app.cli.add_command(module.group)
