"""Per-request database session (the request owns the transaction, DESIGN.md §2) and
per-app objects made on first use."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar, cast

from flask import Flask, Response, current_app, g
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from trace.config import Config
from trace.services.storage import LocalStorage

T = TypeVar("T")


def per_app(key: str, make: Callable[[], T]) -> T:
    """The current app's ``key`` object, made on first use: one per app and process (a
    cache, a limiter, a signer), so two apps in one process (tests) never share one."""
    found = current_app.extensions.get(key)
    if found is None:
        found = current_app.extensions.setdefault(key, make())
    return cast(T, found)


def config() -> Config:
    return cast(Config, current_app.extensions["trace.config"])


def engine() -> Engine:
    return cast(Engine, current_app.extensions["trace.engine"])


def db() -> Session:
    """The request's session, opened on first use."""
    if "db" not in g:
        factory = cast(sessionmaker[Session], current_app.extensions["trace.sessions"])
        g.db = factory()
    return cast(Session, g.db)


def init_session_handling(app: Flask) -> None:
    @app.after_request
    def _commit(response: Response) -> Response:
        session: Session | None = g.pop("db", None)
        if session is not None:
            try:
                if response.status_code < 400:
                    session.commit()
                else:
                    session.rollback()
            finally:
                session.close()
        return response

    # The app context, not the request: CLI commands use db() too and have no request.
    @app.teardown_appcontext
    def _close(_exc: BaseException | None) -> None:
        session: Session | None = g.pop("db", None)
        if session is not None:
            session.rollback()
            session.close()


def storage() -> LocalStorage:
    return LocalStorage(config().media_dir)
