"""trace — agricultural product traceability with encrypted QR labels.

Run from the checkout root: this package shadows the standard library's ``trace``
module only because the checkout comes first on ``sys.path`` (DESIGN.md §9).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from flask import Flask

IS_TRACE_PLATFORM = True


def create_app(config: object | None = None) -> Flask:
    """Application factory, imported lazily so pure modules load without Flask."""
    from trace.app import create_app as _create_app

    return _create_app(config)  # type: ignore[arg-type]
